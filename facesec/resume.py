"""What makes a finished run reusable by `facesec run --resume`: the same resolved threat model, the same
facesec code and the same dataset files; a run recorded with that key is not run again."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import facesec
from facesec.data.dataset import load_dataset
from facesec.spec import ThreatModel


@functools.cache
def code_sha256() -> str:
    """A hash of facesec's own source files: any change to the code invalidates resumed runs."""
    root = Path(facesec.__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".j2"):
            h.update(path.relative_to(root).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def dataset_fingerprint(name: str) -> str:
    """The dataset's files as listed (path, size, modification time): a changed or added image changes it."""
    ds = load_dataset(name)
    h = hashlib.sha256()
    for path, identity in ds.items:
        info = path.stat()
        h.update(f"{path.relative_to(ds.root).as_posix()}\0{identity}\0{info.st_size}\0{info.st_mtime_ns}\n"
                 .encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def resume_key(tm: ThreatModel, fingerprint: str) -> str:
    """The key a finished run is recorded under (results.json `resume_key`); `fingerprint` is its dataset's
    `dataset_fingerprint` (taken once per dataset by the caller: listing a dataset costs a stat per file)."""
    spec = json.dumps(tm.model_dump(mode="json"), sort_keys=True)
    parts = [spec, facesec.__version__, code_sha256(), fingerprint]
    return hashlib.sha256("\n".join(parts).encode("utf-8", "surrogateescape")).hexdigest()


def finished(results: dict[str, Any] | None) -> dict[tuple[str, str], dict[str, Any]]:
    """The finished runs of an earlier results.json, by (name, resume_key); failed runs are not reused."""
    runs = (results or {}).get("runs") or []
    return {(r["name"], r["resume_key"]): r for r in runs
            if isinstance(r, dict) and "resume_key" in r and "name" in r and "error" not in r}
