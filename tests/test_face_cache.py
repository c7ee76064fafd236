"""The face cache is read from many threads at once (data/pipeline.align_faces)."""

from __future__ import annotations

import gc
import sys
import threading
from pathlib import Path

import numpy as np

from facesec.data.cache import FaceCache


class _Cyclic:
    """Garbage whose finalizer runs Python code, so a collection can hand the GIL to another thread."""

    def __init__(self) -> None:
        self.me = self

    def __del__(self) -> None:
        sum(range(50))


def _read(cache: FaceCache, depth: int, n: int, failures: list[BaseException]) -> None:
    if depth:  # threads at different stack depths start the AST builder from different counts
        return _read(cache, depth - 1, n, failures)
    for _ in range(n):
        junk = [_Cyclic() for _ in range(3)]
        del junk
        try:
            hit = cache.get("d" * 64, "t", "det")
            assert hit is not None and hit["crop"].shape == (150, 150, 3)
        except BaseException as exc:  # noqa: BLE001 - any failure in a thread is the finding
            failures.append(exc)
            return


def test_threads_read_the_cache_at_once(tmp_path: Path) -> None:
    """CPython 3.11 shares the AST builder's recursion counter between threads, and np.load parses
    headers with it: unserialised reads raised "AST constructor recursion depth mismatch" in CI."""
    cache = FaceCache(tmp_path)
    cache.put("d" * 64, "t", "det", crop=np.zeros((150, 150, 3), np.uint8), landmarks=np.zeros((68, 2)))
    failures: list[BaseException] = []
    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    sys.setswitchinterval(1e-6)
    gc.set_threshold(50, 1, 1)
    try:
        threads = [threading.Thread(target=_read, args=(cache, d, 3000, failures)) for d in (0, 40, 80, 120)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
        gc.set_threshold(*thresholds)
    assert not failures, failures[0]
