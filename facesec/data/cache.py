"""Disk cache of aligned crops and landmarks, keyed by image content, template and detector."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path

import numpy as np

CACHE_ENV = "FACESEC_CACHE"


def cache_root() -> Path:
    """$FACESEC_CACHE, else ~/.cache/facesec."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "facesec")


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_LOAD_LOCK = threading.Lock()
"""np.load parses each array header with ast.literal_eval, and CPython 3.11 keeps the AST builder's
recursion counter per interpreter, not per thread: two threads loading at once can raise
"SystemError: AST constructor recursion depth mismatch" (seen in CI, cpython gh-106905). Reads are
serialised; they are a small part of a thread's work beside detection."""

CACHE_VERSION = 2
"""Bumped whenever what an entry holds changes (2: 68 landmarks in crop pixels)."""


class FaceCache:
    """One `.npz` per (image content, template, detector): the crop, or why there is none."""

    def __init__(self, root: Path | None = None, enabled: bool = True) -> None:
        self.root = (root or cache_root()) / "faces"
        self.enabled = enabled

    def _path(self, digest: str, template: str, detector: str) -> Path:
        key = hashlib.sha256(f"v{CACHE_VERSION}|{digest}|{template}|{detector}".encode()).hexdigest()
        return self.root / key[:2] / f"{key}.npz"

    def get(self, digest: str, template: str, detector: str) -> dict[str, np.ndarray] | None:
        if not self.enabled:
            return None
        path = self._path(digest, template, detector)
        try:
            with _LOAD_LOCK, np.load(path) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError):
            return None

    def put(self, digest: str, template: str, detector: str, **arrays: np.ndarray) -> None:
        if not self.enabled:
            return
        path = self._path(digest, template, detector)
        path.parent.mkdir(parents=True, exist_ok=True)
        # a unique temporary name: threads may store the same content (datasets hold duplicate files)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
