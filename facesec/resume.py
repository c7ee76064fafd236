"""What makes a finished run reusable by `facesec run --resume`: the same resolved threat model, the same
facesec code and the same dataset files; a run recorded with that key is not run again."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import facesec
from facesec.data.dataset import load_dataset
from facesec.suite_files import made_by_facesec
from facesec.threat_model import ThreatModel


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


def finished(results: dict[str, Any] | None, out_dir: Path) -> tuple[dict[tuple[str, str], dict[str, Any]], list[str]]:
    """The finished runs of an earlier results.json in `out_dir` that can be reused, by (name, resume_key), and
    for each record that cannot, a line saying why (it is run again). Failed runs are never reused."""
    runs = (results or {}).get("runs")
    reusable: dict[tuple[str, str], dict[str, Any]] = {}
    problems: list[str] = []
    for index, record in enumerate(runs if isinstance(runs, list) else []):
        if isinstance(record, dict) and "error" in record:
            continue
        why = _not_reusable(record, out_dir)
        if why is None:
            reusable[(record["name"], record["resume_key"])] = record
        else:
            problems.append(f"results.json run {index + 1}: {why}; it is run again if still in the suite")
    return reusable, problems


_KEY = re.compile(r"[0-9a-f]{64}")
_SAMPLES = re.compile(r"runs/([A-Za-z0-9_-][A-Za-z0-9._-]*)/samples\.csv")


def _not_reusable(record: Any, out_dir: Path) -> str | None:
    """Why an earlier run record cannot be reused (None: it can): it must have the shape facesec writes, and its
    samples must be a regular file in a run folder facesec made inside `out_dir`."""
    if not isinstance(record, dict):
        return "not a run record"
    if not isinstance(record.get("name"), str) or not _KEY.fullmatch(str(record.get("resume_key"))):
        return "no name or resume_key of the form facesec writes"
    if not isinstance(record.get("metrics"), dict) or not isinstance(record.get("validity"), dict):
        return "metrics or validity missing or not a mapping"
    ci = record["metrics"].get("attack_success_ci95")
    if ci is not None and not (isinstance(ci, list) and len(ci) == 2 and all(_fraction(v) for v in ci)):
        return "attack_success_ci95 is not two numbers between 0 and 1"
    found = _SAMPLES.fullmatch(str(record.get("samples_csv")))
    if found is None or not isinstance(record.get("samples_csv"), str):
        return "samples_csv is not runs/<run>/samples.csv"
    run_dir = out_dir / "runs" / found.group(1)
    if not made_by_facesec(run_dir) or not stat.S_ISREG(_lstat_mode(run_dir / "samples.csv")):
        return f"{record['samples_csv']} is not a file in a run folder facesec wrote"
    return None


def _fraction(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1


def _lstat_mode(path: Path) -> int:
    try:
        return os.lstat(path).st_mode
    except OSError:
        return 0
