"""Paired differences between the runs of a suite: two runs that make the same decisions about the same people
and differ in one setting of their threat model (white-box against transfer, one eps against another) are
compared decision by decision, the difference of their rates with the interval that resamples people
(`rates.paired_difference`), so what the two runs share cancels instead of adding up."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facesec.measures.rates import paired_difference
from facesec.record import Difference, RunRecord

MAX_PAIRS = 100
"""Differences recorded at most per suite (a matrix of many runs has many pairs; the first are kept)."""
MAX_CSV_BYTES = 64 * 1024 * 1024
"""A samples.csv larger than this is not read (it is facesec's own output, but the folder may hold anything)."""
ROWS = ("identity", "target", "probe_path", "photo", "index")
"""Columns that say what each decision is about: those both runs have must agree row by row."""
IGNORED = {"name", "description", "gates"}
"""Threat-model fields that change nothing measured."""
_SAMPLES = re.compile(r"runs/([A-Za-z0-9._-]{1,200})/samples\.csv")
_TRUE, _FALSE = {"True", "true", "1"}, {"False", "false", "0"}


def setting_apart(first: Mapping[str, Any], second: Mapping[str, Any]) -> str | None:
    """The one setting (a dotted path such as `knowledge` or `perturbation.eps`) two resolved threat models differ
    in, ignoring their names and gates; None when they differ in none, in several, or in their data (other
    people: nothing to pair)."""
    a, b = _flat({k: v for k, v in first.items() if k not in IGNORED}), \
        _flat({k: v for k, v in second.items() if k not in IGNORED})
    roots = sorted({".".join(k.split(".")[:2]) for k in a.keys() | b.keys() if a.get(k, a) != b.get(k, b)}, key=len)
    if not roots or roots[0].startswith("data"):
        return None
    if all(r == roots[0] or r.startswith(roots[0] + ".") for r in roots):
        return roots[0]
    top = roots[0].split(".")[0]
    return top if top in ("knowledge", "attack") and all(r.split(".")[0] == top for r in roots) else None


def _flat(value: Any, prefix: str = "") -> dict[str, str]:
    """Every leaf of a JSON value by its dotted path (list items by index), as canonical JSON."""
    if isinstance(value, Mapping):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _flat(item, f"{prefix}.{i}").items()} or \
            {prefix: "[]"}
    return {prefix: json.dumps(value, sort_keys=True, default=str)}


def paired(first: pd.DataFrame, second: pd.DataFrame, column: str) -> dict[str, Any] | None:
    """The difference of `column`'s rate (first minus second) over the rows both runs decided, clustered by
    `identity`; None when the two tables are not the same decisions (other rows, no such column)."""
    if len(first) != len(second) or not len(first) or column not in first or column not in second \
            or "identity" not in first or "identity" not in second:
        return None
    for key in ROWS:
        if key in first and key in second and not first[key].astype(str).equals(second[key].astype(str)):
            return None
    a, b = _decisions(first[column]), _decisions(second[column])
    if a is None or b is None:
        return None
    both = ~np.isnan(a) & ~np.isnan(b)
    if not both.any():
        return None
    people = first["identity"].astype(str).to_numpy()[both]
    diff = paired_difference(a[both] > 0, b[both] > 0, people)
    return {**diff, "first_rate": float(a[both].mean()), "second_rate": float(b[both].mean()),
            "n": int(both.sum()), "people": len(set(people))}


def _decisions(values: pd.Series) -> np.ndarray | None:
    """1 / 0 per row, NaN where the run made no decision (an empty cell); None when a cell is anything else."""
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values.astype(str).str.strip()):
        if v in _TRUE:
            out[i] = 1.0
        elif v in _FALSE:
            out[i] = 0.0
        elif v not in ("", "nan", "None"):
            return None
    return out


def compare(records: Sequence[RunRecord], suite_dir: Path, decisions: Mapping[str, str]) -> list[Difference]:
    """Every pair of finished runs of one family (`decisions`: family -> its samples column of headline
    decisions) that differ in one setting and decided about the same rows, first to last."""
    tables: dict[str, pd.DataFrame | None] = {}
    out: list[Difference] = []
    runs = [r for r in records if r.error is None and r.threat_model is not None and r.family in decisions]
    for i, first in enumerate(runs):
        for second in runs[i + 1:]:
            if len(out) == MAX_PAIRS:
                return out
            found = _difference(first, second, suite_dir, decisions, tables)
            if found is not None:
                out.append(found)
    return out


def _difference(first: RunRecord, second: RunRecord, suite_dir: Path, decisions: Mapping[str, str],
                tables: dict[str, pd.DataFrame | None]) -> Difference | None:
    assert first.threat_model is not None and second.threat_model is not None
    if first.family != second.family:
        return None
    setting = setting_apart(first.threat_model, second.threat_model)
    if setting is None:
        return None
    a, b = (tables.setdefault(r.name, _samples(r, suite_dir)) for r in (first, second))
    result = None if a is None or b is None else paired(a, b, decisions[str(first.family)])
    if result is None:
        return None
    values = [_value(r.threat_model, setting) for r in (first, second)]
    return Difference(first=first.name, second=second.name, setting=setting, values=values,
                      decision=decisions[str(first.family)], first_rate=result["first_rate"],
                      second_rate=result["second_rate"], difference=result["difference"],
                      ci95_cluster=result["ci95_cluster"], n=result["n"], people=result["people"])


def _value(tm: Mapping[str, Any] | None, path: str) -> str:
    """The setting's value in a threat model, as short JSON."""
    value: Any = tm
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


def _samples(record: RunRecord, suite_dir: Path) -> pd.DataFrame | None:
    """The run's samples.csv when it is a plain file of the form facesec writes, within the size limit."""
    found = _SAMPLES.fullmatch(str(record.samples_csv))
    if found is None:
        return None
    path = suite_dir / "runs" / found.group(1) / "samples.csv"
    try:
        mode = os.lstat(path)
        if not stat.S_ISREG(mode.st_mode) or mode.st_size > MAX_CSV_BYTES:
            return None
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError):
        return None
