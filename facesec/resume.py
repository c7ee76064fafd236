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

from pydantic import JsonValue, ValidationError

import facesec
from facesec.data.dataset import load_dataset
from facesec.record import SIGNED_INTERVALS, RunRecord, first_problem
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
    """The dataset's files as listed, by content (path, identity, SHA-256 of the bytes): a changed or added image
    changes it, a copy of the same files elsewhere or with new times (restored, synced, unpacked) does not."""
    ds = load_dataset(name)
    h = hashlib.sha256()
    for path, identity in ds.items:
        with path.open("rb") as f:
            content = hashlib.file_digest(f, "sha256").hexdigest()
        h.update(f"{path.relative_to(ds.root).as_posix()}\0{identity}\0{content}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def resume_key(tm: ThreatModel, fingerprint: str) -> str:
    """The key a finished run is recorded under (results.json `resume_key`); `fingerprint` is its dataset's
    `dataset_fingerprint` (taken once per dataset by the caller: it reads every file)."""
    spec = json.dumps(tm.model_dump(mode="json"), sort_keys=True)
    parts = [spec, facesec.__version__, code_sha256(), fingerprint]
    return hashlib.sha256("\n".join(parts).encode("utf-8", "surrogateescape")).hexdigest()


def finished(results: JsonValue, out_dir: Path) -> tuple[dict[tuple[str, str], RunRecord], list[str]]:
    """The finished runs of an earlier results.json in `out_dir` that can be reused, by (name, resume_key), and
    for each record that cannot, a line saying why (it is run again). Failed runs are never reused."""
    runs = results.get("runs") if isinstance(results, dict) else None
    reusable: dict[tuple[str, str], RunRecord] = {}
    problems: list[str] = []
    for index, raw in enumerate(runs if isinstance(runs, list) else []):
        if isinstance(raw, dict) and "error" in raw:
            continue
        record, why = _reusable(raw, out_dir)
        if record is not None and record.resume_key is not None:
            reusable[(record.name, record.resume_key)] = record
        else:
            problems.append(f"results.json run {index + 1}: {why}; it is run again if still in the suite")
    return reusable, problems


_KEY = re.compile(r"[0-9a-f]{64}")
_SAMPLES = re.compile(r"runs/([A-Za-z0-9_-][A-Za-z0-9._-]*)/samples\.csv")


def _reusable(raw: JsonValue, out_dir: Path) -> tuple[RunRecord | None, str]:
    """The earlier run record, or None and why it cannot be reused: it must have the shape facesec writes, and
    its samples must be a regular file in a run folder facesec made inside `out_dir`."""
    try:
        record = RunRecord.model_validate(raw)
    except ValidationError as exc:
        return None, f"not a run record ({first_problem(exc)})"
    if not _KEY.fullmatch(str(record.resume_key)):
        return None, "no resume_key of the form facesec writes"
    if record.validity is None or record.provenance is None or record.headline is None:
        return None, "validity, provenance or headline missing"
    for key, ci in record.metrics.items():
        low = -1.0 if key.endswith(SIGNED_INTERVALS) else 0.0  # a difference of two rates may be negative
        if key.endswith(("_ci95", "_ci95_cluster")) and ci is not None and not _interval(ci, low):
            return None, f"{key} is not two ordered numbers between {low:g} and 1"
    found = _SAMPLES.fullmatch(str(record.samples_csv))
    if found is None:
        return None, "samples_csv is not runs/<run>/samples.csv"
    run_dir = out_dir / "runs" / found.group(1)
    if not made_by_facesec(run_dir) or not stat.S_ISREG(_lstat_mode(run_dir / "samples.csv")):
        return None, f"{record.samples_csv} is not a file in a run folder facesec wrote"
    return record, ""


def _interval(ci: JsonValue, low: float) -> bool:
    """Two numbers between `low` and 1, the first not above the second."""
    if not (isinstance(ci, list) and len(ci) == 2 and all(_fraction(v, low) for v in ci)):
        return False
    first, second = (float(v) for v in ci if isinstance(v, int | float))
    return first <= second


def _fraction(value: JsonValue, low: float = 0.0) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= 1


def _lstat_mode(path: Path) -> int:
    try:
        return os.lstat(path).st_mode
    except OSError:
        return 0
