"""The versioned results record: results.json, a per-sample CSV per run, and each family's files."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import JsonValue, ValidationError

from facesec import __version__
from facesec.csv_cells import safe_cell
from facesec.errors import ConfigError
from facesec.record import Results, RunRecord, first_problem, plain
from facesec.redaction import Pseudonyms, blur_images
from facesec.suite_files import RUN_MARKER, as_umask_allows, made_by_facesec, refuse_links, write_atomic

if TYPE_CHECKING:
    from facesec.engine import FinishedRun

SCHEMA_VERSION = 1
"""The results.json layout this code writes and reads (docs/results-schema.md); the report refuses others."""
VOLATILE = frozenset({"created", "started", "finished", "attack_time_s", "wall_time_s", "processes"})
"""Keys of clock readings and the process count: what may differ between two runs of the same suite."""


def slug(name: str) -> str:
    """A file-system-safe folder name for a suite or run: letters, digits, `._-`, never starting with a dot
    (so never `.` or `..`, which would leave the reports folder)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).lstrip(".-").strip("-")[:120] or "run"


def csv_safe(table: pd.DataFrame) -> pd.DataFrame:
    """The table with text cells that a spreadsheet would run as formulas (identity names from a dataset
    someone else made) prefixed with an apostrophe, and file names that are not UTF-8 made printable;
    numbers are left alone."""
    safe = table.copy()
    for column in safe.columns:
        if pd.api.types.is_object_dtype(safe[column]) or pd.api.types.is_string_dtype(safe[column]):
            safe[column] = [safe_cell(v) if isinstance(v, str) else v for v in safe[column]]
    return safe


def write_run(run: FinishedRun, out_dir: Path, used: set[str], pseudonyms: Pseudonyms | None = None) -> RunRecord:
    """The run's record for results.json: its samples as a CSV, its family's files beside it. A folder of that
    name that facesec did not make (no marker, or a link) is left alone: the run takes another name. With
    `pseudonyms` (`--redact`), faces are blurred before the folder is moved in and names become pseudonyms."""
    runs = out_dir / "runs"
    refuse_links(out_dir, runs)
    name = slug(run.record.name)
    while name in used or (os.path.lexists(runs / name) and not made_by_facesec(runs / name)):
        name += "_"
    used.add(name)
    run_dir = runs / name
    building = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=_made(runs)))
    as_umask_allows(building)
    try:  # written beside its place, moved in whole: a crash never leaves half a run folder
        (building / RUN_MARKER).write_text("written by facesec; a run folder without this file is never replaced\n")
        table = pd.DataFrame(dict(run.samples()))
        csv_safe(table if pseudonyms is None else pseudonyms.table(table)).to_csv(building / "samples.csv",
                                                                                  index=False)
        added: dict[str, JsonValue] = {"samples_csv": f"runs/{name}/samples.csv"}
        if run.output is not None:
            written = run.output.write_artefacts(building, f"runs/{name}", table)
            added.update({key: plain(value) for key, value in written.items()})
            if pseudonyms is not None:
                blur_images(building, run.output.faceless(building))
        old = building.with_name(building.name + ".old")  # a fresh name: nothing else is ever removed
        if made_by_facesec(run_dir):
            run_dir.rename(old)
        building.rename(run_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    record = {**run.record.to_json(), **added}
    return RunRecord.model_validate(record if pseudonyms is None else {**pseudonyms.deep(record), "redacted": True})


def _made(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def document(suite: str, runs: list[RunRecord]) -> Results:
    """The results document around run records already written."""
    return Results(schema_version=SCHEMA_VERSION, suite=suite, created=datetime.now(UTC).isoformat(timespec="seconds"),
                   facesec_version=__version__, runs=runs, baseline=None)


def save(results: Results, out_dir: Path) -> Path:
    """results.json, replaced whole (a crash leaves the previous one intact)."""
    path = out_dir / "results.json"
    write_atomic(path, json.dumps(results.to_json(), indent=2) + "\n")
    return path


def read_results(doc: JsonValue, source: str) -> Results:
    """A results document read from JSON; ConfigError naming `source` and the entry when it is not one."""
    if not isinstance(doc, dict) or not isinstance(doc.get("runs"), list):
        raise ConfigError(f"{source}: not a facesec results.json (needs 'runs', a list of runs with a 'name')")
    try:
        return Results.model_validate({"schema_version": 1, **doc})
    except ValidationError as exc:
        raise ConfigError(f"{source}: not a facesec results.json: {first_problem(exc)}") from None


def comparable(value: Any) -> Any:
    """A results document (or part of one) without its VOLATILE keys: equal for any two runs of the same suite,
    same seed, code and data, however many torchrun processes shared them."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value
