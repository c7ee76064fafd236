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

import pytest
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
    "setting": {"kind": "open-set", "fmr": 0.001, "calibration": "in-sample"},
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


VARIANTS: list[dict[str, Any]] = [
    {"goal": "impersonation"}, {"capability": "universal"}, {"perturbation.eps": 0},
    {"perturbation": {"kind": "pixel", "norm": "l2", "eps": 0.5}},
    {"perturbation": {"kind": "accessory", "shape": "sticker"}, "attack.steps": 2},
    {"perturbation": {"kind": "morph", "method": "landmark"}, "goal": "impersonation", "gates": []},
    {"setting": {"kind": "closed-set", "gallery_images": 1}}, {"setting.fmr": 0.5}, {"attack.steps": 0},
    {"attack.method": "mi-fgsm", "attack.params": {"momentum": 2}},
    {"knowledge": {"kind": "query", "output": "scores", "budget": 8}, "attack.method": "square"},
    {"data.images_per_identity": 3}, {"data.identities": 2}, {"data.seed": 5}, {"photo_round_trip": True},
    {"name": "../../escape"}, {"name": "=cmd|' /C calc'!A0"}, {"name": "\u202e\u00e9" * 40},
    {"gates": [{"metric": "noise_success_rate", "op": ">=", "value": 2}]},
]
"""Valid neighbours of BASE, so that runs really happen."""
HOSTILE_VARIANTS: list[dict[str, Any]] = [
    {"target": {"name": "os:system", "command": "touch pwned"}}, {"data.dataset": "../../etc"},
    {"data.dataset": "nope"}, {"attack.params": {"kappa": "x"}}, {"perturbation.eps": float("inf")},
    {"data.dataset": "/dev/zero"}, {"knowledge": {"kind": "transfer", "surrogates": ["os:system"]}},
]
"""Each must end in exit 2 with one line, before anything runs or is written."""


def _vary(rng: random.Random, hostile: bool) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    chosen = rng.sample(VARIANTS, rng.randint(1, 2)) + ([rng.choice(HOSTILE_VARIANTS)] if hostile else [])
    for variant in chosen:
        for path, value in variant.items():
            *parents, leaf = path.split(".")
            node = doc
            for key in parents:
                node = node[key] if isinstance(node.get(key), dict) else node.setdefault(key, {})
            node[leaf] = copy.deepcopy(value)
    return doc


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


def test_mutated_threat_models_run_or_fail_cleanly(tmp_path: Path, celeba: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`run` itself on mutated small specs: exit 0, 1 or 2, never a traceback, nothing written outside --out."""
    monkeypatch.setenv("FACESEC_DATA", str(celeba.parent.resolve()))  # CI gives a relative path
    monkeypatch.chdir(tmp_path)
    rng = random.Random(7)
    codes: dict[int, int] = {0: 0, 1: 0, 2: 0}
    for i in range(15):
        doc = _vary(rng, hostile=i % 3 == 2)
        path = tmp_path / "specs" / f"m{i}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(yaml.safe_dump(doc, allow_unicode=True))
        before = _files(tmp_path)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["run", str(path), "--out", str(tmp_path / "out" / str(i))])
        message = err.getvalue()
        assert code in codes, (i, code, message)
        assert "internal error" not in message and "Traceback" not in message, (i, message)
        written = {p for p in _files(tmp_path) - before if p.parts[0] != "out"}
        assert not written, (i, written)
        assert code == 2 or i % 3 != 2, (i, message)
        codes[code] += 1
    assert codes[2] >= 5 and codes[0] + codes[1] >= 5, codes
