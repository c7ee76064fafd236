"""Paired differences between the runs of a suite: two runs that make the same decisions about the same people
and differ in one setting of their threat model (white-box against transfer, one eps against another) are
compared decision by decision, the difference of their rates with the interval that resamples people
(`rates.paired_difference`), so what the two runs share cancels instead of adding up."""

from __future__ import annotations

import json
import os
import re
import stat
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facesec.measures.rates import paired_difference
from facesec.record import Difference, Pairing, RunRecord

MAX_PAIRS = 100
"""Differences recorded at most per suite (a matrix of many runs has many pairs; the first are kept)."""
MAX_CSV_BYTES = 64 * 1024 * 1024
MAX_ROWS = 200_000
MAX_PEOPLE = 5_000
"""A samples.csv larger than this, or with more rows, is not read, and a pair of more people is not compared:
it is facesec's own output, but a resumed folder may hold anything, and the bootstrap holds draws x people."""
CACHED_TABLES = 8
"""Samples tables kept in memory at once while pairing (the first run of a pair is read once for all its
partners)."""
ROWS = ("identity", "target", "probe_path", "photo", "index", "contributor_a", "contributor_b")
"""Columns that say what each decision is about: those both runs have must agree row by row."""
IGNORED = {"name", "description", "gates", "report"}
"""Threat-model fields that change nothing measured."""
UNPAIRED = ("goal", "setting.kind")
"""Settings whose values make other decisions, not the same ones judged apart: never compared."""
TRUNCATED = f"not compared: the suite has more than {MAX_PAIRS} pairs of runs"
UNPAIRABLE = ("not compared: the two runs decided about other rows, or a samples file is missing, a link, too large "
              f"or holds more than {MAX_PEOPLE} people")
_SAMPLES = re.compile(r"runs/([A-Za-z0-9_-][A-Za-z0-9._-]{0,199})/samples\.csv")
_TRUE, _FALSE = {"True", "true", "1"}, {"False", "false", "0"}


def setting_apart(first: Mapping[str, Any], second: Mapping[str, Any], ignored: Sequence[str] = ()) -> str | None:
    """The one setting (a dotted path such as `knowledge` or `perturbation.eps`) two resolved threat models differ
    in, ignoring their names, gates and the `ignored` settings (which change no decision); None when they differ
    in none, in several, in their data (other people: nothing to pair) or their goal (other decisions)."""
    return apart(flat(first), flat(second), ignored)


def flat(tm: Mapping[str, Any]) -> dict[str, str]:
    """A resolved threat model's leaves by dotted path, without the fields that change nothing measured."""
    return _flat({k: v for k, v in tm.items() if k not in IGNORED})


def apart(a: dict[str, str], b: dict[str, str], ignored: Sequence[str] = ()) -> str | None:
    """`setting_apart` on two flattened threat models."""
    keys = {k for k in a.keys() | b.keys() if a.get(k, a) != b.get(k, b)
            and not any(k == i or k.startswith(i + ".") for i in ignored)}
    roots = sorted({".".join(k.split(".")[:2]) for k in keys}, key=len)
    if not roots or roots[0].startswith("data") or any(r.startswith(UNPAIRED) for r in roots) \
            or len(roots[0]) > 200:
        return None
    if all(r == roots[0] or r.startswith(roots[0] + ".") for r in roots):
        return roots[0]
    top = roots[0].split(".")[0]
    return top if top in ("knowledge", "attack", "defence") and all(r.split(".")[0] == top for r in roots) else None


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


def paired(first: pd.DataFrame, second: pd.DataFrame, column: str,
           clusters: Sequence[Sequence[str]] = (("identity",),)) -> dict[str, Any] | None:
    """The difference of `column`'s rate (first minus second) over the rows both runs decided, with the widest
    paired interval over the ways the rows cluster (`clusters`: tuples of columns); None when the two tables are
    not the same decisions (other rows, a missing column) or hold more clusters than the bootstrap may."""
    if not clusters or any(isinstance(way, str) or not way for way in clusters):
        return None
    columns = sorted({c for way in clusters for c in way})
    if not 0 < len(first) == len(second) <= MAX_ROWS \
            or any(c not in t for c in (column, *columns) for t in (first, second)):
        return None
    for key in ROWS:
        if key in first and key in second and not _text(first[key]).equals(_text(second[key])):
            return None
    a, b = _decisions(first[column]), _decisions(second[column])
    if a is None or b is None:
        return None
    both = ~np.isnan(a) & ~np.isnan(b)
    ways = [_labels(first[both], way) for way in clusters]
    people = set(np.concatenate([_text(first[c]).to_numpy()[both] for c in columns])) - {""}
    if not both.any() or len(people) > MAX_PEOPLE or any(len(set(w)) > MAX_PEOPLE for w in ways):
        return None
    ends = [paired_difference(a[both] > 0, b[both] > 0, labels)["ci95_cluster"] for labels in ways]
    return {"difference": float(a[both].mean() - b[both].mean()),
            "ci95_cluster": [min(lo for lo, _ in ends), max(hi for _, hi in ends)],
            "first_rate": float(a[both].mean()), "second_rate": float(b[both].mean()),
            "n": int(both.sum()), "people": len(people)}


def _text(values: pd.Series) -> pd.Series:
    """A column as text, an empty cell as ''."""
    return values.fillna("").astype(str)


def _labels(table: pd.DataFrame, way: Sequence[str]) -> np.ndarray:
    """One cluster label per row: the unordered set of the row's values in `way`'s columns."""
    values = zip(*(_text(table[c]) for c in way), strict=True)
    return np.array(["\x1f".join(sorted(v)) for v in values])


def _decisions(values: pd.Series) -> np.ndarray | None:
    """1 / 0 per row, NaN where the run made no decision (an empty cell); None when a cell is anything else."""
    out = np.full(len(values), np.nan)
    for i, v in enumerate(_text(values).str.strip()):
        if v in _TRUE:
            out[i] = 1.0
        elif v in _FALSE:
            out[i] = 0.0
        elif v not in ("", "nan", "None"):
            return None
    return out


@dataclass(frozen=True)
class Decision:
    """What a family's runs are compared on: the samples column of headline decisions, the settings that change
    none of them (a backdoor's defences run after its decisions are made) and the ways the decisions cluster."""

    column: str
    ignored: tuple[str, ...] = ()
    clusters: tuple[tuple[str, ...], ...] = (("identity",),)
    beside: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Other columns compared too when runs differ in a setting (its top key): a defence's clean cost on the clean
    decisions, beside its effect on the attack."""


def compare(records: Sequence[RunRecord], suite_dir: Path, decisions: Mapping[str, Decision]) -> list[Difference]:
    """Every pair of finished runs of one family (`decisions`: family -> what its runs are compared on) that
    differ in one setting and decided about the same rows, first to last. Runs whose samples file is another's
    are left out."""
    return [p.difference for p in pairings(records, suite_dir, decisions) if p.difference is not None]


def pairings(records: Sequence[RunRecord], suite_dir: Path, decisions: Mapping[str, Decision]) -> list[Pairing]:
    """Every pair of finished runs of one family that differ in one setting, by position in `records`, with their
    difference where it was computed (at most MAX_PAIRS are) and otherwise why not: what a gate on a difference
    needs, so that a pair not compared is a failed gate rather than no verdict."""
    paths = Counter(str(r.samples_csv) for r in records)
    runs = [(i, r) for i, r in enumerate(records) if r.error is None and r.threat_model is not None
            and r.family in decisions and paths[str(r.samples_csv)] == 1]
    flats = [flat(r.threat_model or {}) for _, r in runs]
    tables: OrderedDict[str, pd.DataFrame | None] = OrderedDict()
    out: list[Pairing] = []
    found = 0
    for a, (i, first) in enumerate(runs):
        how = decisions[str(first.family)]
        for b in range(a + 1, len(runs)):
            j, second = runs[b]
            setting = apart(flats[a], flats[b], how.ignored) if second.family == first.family else None
            if setting is None:
                continue
            difference = _difference(first, second, setting, how.column, how, suite_dir, tables) \
                if found < MAX_PAIRS else None
            found += difference is not None
            why = "" if difference is not None else TRUNCATED if found >= MAX_PAIRS else UNPAIRABLE
            beside = [_difference(first, second, setting, c, how, suite_dir, tables)
                      for c in how.beside.get(setting.split(".")[0], ()) if difference is not None]
            out.append(Pairing(i, j, setting, difference, why, tuple(d for d in beside if d is not None)))
    return out


def _difference(first: RunRecord, second: RunRecord, setting: str, column: str, how: Decision, suite_dir: Path,
                tables: OrderedDict[str, pd.DataFrame | None]) -> Difference | None:
    a, b = (_cached(r, suite_dir, tables) for r in (first, second))
    result = None if a is None or b is None else paired(a, b, column, how.clusters)
    if result is None:
        return None
    values = [_value(r.threat_model, setting) for r in (first, second)]
    return Difference(first=first.name, second=second.name, setting=setting, values=values, decision=column,
                      first_rate=result["first_rate"], second_rate=result["second_rate"],
                      difference=result["difference"], ci95_cluster=result["ci95_cluster"], n=result["n"],
                      people=result["people"])


def _cached(record: RunRecord, suite_dir: Path, tables: OrderedDict[str, pd.DataFrame | None]) \
        -> pd.DataFrame | None:
    """The run's samples, read once while it is among the last CACHED_TABLES used."""
    key = str(record.samples_csv)
    if key not in tables:
        tables[key] = samples(record, suite_dir)
        if len(tables) > CACHED_TABLES:
            tables.popitem(last=False)
    tables.move_to_end(key)
    return tables[key]


def _value(tm: Mapping[str, Any] | None, path: str) -> str:
    """The setting's value in a threat model, as short JSON."""
    value: Any = tm
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


def samples(record: RunRecord, suite_dir: Path) -> pd.DataFrame | None:
    """The run's samples.csv when it is a plain file of the form facesec writes, within the size limit."""
    found = _SAMPLES.fullmatch(str(record.samples_csv))
    if found is None:
        return None
    path = suite_dir / "runs" / found.group(1) / "samples.csv"
    try:
        if any(os.path.islink(p) for p in (path.parent.parent, path.parent)):
            return None
        mode = os.lstat(path)
        if not stat.S_ISREG(mode.st_mode) or mode.st_size > MAX_CSV_BYTES:
            return None
        return pd.read_csv(path, dtype=str, keep_default_na=False, nrows=MAX_ROWS + 1)
    except (OSError, ValueError, pd.errors.ParserError):
        return None
