"""Seeded, bounded fuzzing of what users hand facesec: mutated threat models through `validate` (exit 0 or
2 with one line, never an internal error or traceback) and hostile dataset entries through the face
pipeline (each file aligned or skipped with a reason, nothing raised)."""

from __future__ import annotations

import contextlib
import copy
import io
import os
import random
from pathlib import Path
from typing import Any

import yaml

from facesec.cli import main
from facesec.data.align import DLIB_150
from facesec.data.dataset import load_dataset
from facesec.data.pipeline import align_faces

BASE: dict[str, Any] = {
    "name": "f", "target": "dlib-resnet",
    "data": {"dataset": "celeba-mini", "identities": 3, "images_per_identity": 2, "seed": 0},
    "perturbation": {"kind": "pixel", "norm": "linf", "eps": "8/255"},
    "knowledge": "white-box", "goal": "dodging", "capability": "individual",
    "setting": {"kind": "open-set", "fmr": 0.001},
    "attack": {"method": "pgd", "library": "native", "steps": 2, "params": {}},
    "gates": [{"metric": "attack_success_rate", "op": "<=", "value": 0.5}],
}
HOSTILE: list[Any] = [None, True, -1, 0, 2**70, 1e308, float("nan"), float("inf"), "", "..", "../../etc/passwd",
                      "os:system", "8/0", "1/255", [], [1, 2], {}, {"kind": "morph"}, "\u202e\u0000x", "é" * 300,
                      {"name": "os:system", "command": "touch pwned"}, {"kind": "query"}, "nope", 3.5, "=1+1"]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(rng: random.Random) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(_paths(doc))
        parent: Any = doc
        for key in path[:-1]:
            parent = parent[key]
        if rng.random() < 0.15 and isinstance(parent, dict):
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(HOSTILE))
    return doc


def test_mutated_threat_models_validate_or_fail_in_one_line(tmp_path: Path, celeba: Path) -> None:
    rng = random.Random(0)
    codes = {0: 0, 2: 0}
    for i in range(120):
        path = tmp_path / f"m{i}.yaml"
        path.write_text(yaml.safe_dump(_mutate(rng), allow_unicode=True))
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["validate", str(path)])
        message = err.getvalue()
        assert code in codes, (i, code, message)
        assert "internal error" not in message and "Traceback" not in message, (i, message)
        assert code == 0 or len(message.strip().splitlines()) == 1, (i, message)
        codes[code] += 1
    assert codes[2] > 60 and not (tmp_path / "pwned").exists()


def test_hostile_dataset_entries_are_aligned_or_skipped(tmp_path: Path, face_files: list[Path]) -> None:
    rng = random.Random(1)
    root = tmp_path / "hostile" / "who"
    root.mkdir(parents=True)
    made = []
    for i in range(24):
        path = root / f"{i}.{rng.choice(['jpg', 'png', 'gif', 'bmp'])}"
        kind = i % 6
        if kind == 0:
            path.write_bytes(face_files[i % len(face_files)].read_bytes())
        elif kind == 1:
            path.write_bytes(bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 4000))))
        elif kind == 2:
            data = face_files[0].read_bytes()
            path.write_bytes(data[: rng.randint(0, len(data))])  # truncated
        elif kind == 3:
            os.mkfifo(path)
        elif kind == 4:
            path.symlink_to(root / f"missing-{i}")
        else:
            path.mkdir()
        made.append(path)
    ds = load_dataset(tmp_path / "hostile")
    faces = align_faces([p for p, _ in ds.items], DLIB_150, progress=False, workers=2)
    accounted = {p.name for p in faces.paths} | {p.name for p, _ in faces.skipped} | {p.name for p, _ in ds.skipped}
    assert accounted == {p.name for p in made}
    assert all(reason for _, reason in faces.skipped + list(ds.skipped))
