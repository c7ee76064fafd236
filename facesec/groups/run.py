"""A finished run's rates by group (`report.by`): the family names its rates and their decision columns
(`Family.sliced_rates`) and whom its decisions are about (`decision_clusters`); the dataset's attribute table
gives each person's group. Checked before any run (`check`), computed by the engine when the run ends."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from facesec.data import attributes
from facesec.data.dataset import load_dataset
from facesec.errors import ConfigError, NotFetched
from facesec.families.base import Family
from facesec.groups.slices import at_threshold, row_groups, sliced
from facesec.record import MAX_GROUPS, OperatingPoint, Sliced
from facesec.threat_model import ThreatModel

_TRUE, _FALSE = {"True", "true", "1"}, {"False", "false", "0"}


def check(tm: ThreatModel, family: Family) -> None:
    """ConfigError (one line, naming the field and the fix) when the run cannot be sliced as `report.by` asks."""
    if not tm.report.by:
        return
    if not family.sliced_rates():
        raise ConfigError(f"field 'report.by': perturbation.kind {family.name} records no decision per attempt to "
                          "slice by group; remove report.by")
    table = attributes.load(tm.data.dataset)
    if table is None:
        raise NotFetched(f"field 'report.by': dataset {tm.data.dataset!r} has no attribute table; run `facesec "
                         f"data annotate {tm.data.dataset}` or put an attributes.csv (identity, then your columns) "
                         "in its folder")
    usable = table.categorical()
    people = load_dataset(tm.data.dataset).identities
    for name in tm.report.by:
        if name not in usable:
            numeric = " (a number: slice by a band of it, such as age_band)" if name in table.columns else ""
            raise ConfigError(f"field 'report.by': {name!r} is not a category of {table.source}{numeric}; it has "
                              f"{', '.join(usable) or 'none'}")
        if len(table.sizes(name, people)) > MAX_GROUPS:
            raise ConfigError(f"field 'report.by': {name!r} has more than {MAX_GROUPS} values in {table.source}; "
                              "slice by a coarser attribute")


CLEAN = {"clean_fnmr": "genuine pairs", "clean_fmr": "impostor pairs within the group"}
"""The clean rates of a run's own people at its threshold, sliced where the family hands over its pair scores."""


def slice_run(tm: ThreatModel, family: Family, samples: Mapping[str, Any],
              points: Sequence[OperatingPoint] = ()) -> dict[str, Any]:
    """The record's entries for `report.by`: `groups` (each of the family's sliced rates by each attribute, and
    the clean FNMR and FMR at the run's threshold where its operating point carries the run's pair scores) and
    the attribute table's provenance, from one reading of the table."""
    table = attributes.load(tm.data.dataset)
    if not tm.report.by or table is None:
        return {}
    return {"groups": _sliced(tm, family, samples, table) + _clean(tm, points, table),
            "attributes": {"table": table.source, "sha256": table.sha256,
                           "how": " / ".join(table.provenance) or "given by its owner"}}


def _sliced(tm: ThreatModel, family: Family, samples: Mapping[str, Any], table: attributes.Table) -> list[Sliced]:
    clusterings = family.decision_clusters
    columns = sorted({c for way in clusterings for c in way})
    out = []
    for metric, column in family.sliced_rates().items():
        decided = _decisions(samples.get(column, []))
        rows = np.flatnonzero(decided >= 0)
        if not len(rows):
            continue
        people = [tuple(str(samples[c][i]) for c in columns) for i in rows.tolist()]
        labels = [np.array(["+".join(sorted(str(samples[c][i]) for c in way)) for i in rows.tolist()], dtype=object)
                  for way in clusterings]
        for attribute in tm.report.by:
            groups = row_groups(people, table.groups(attribute, {p for who in people for p in who}))
            if len(set(groups.tolist())) > MAX_GROUPS:
                raise ConfigError(f"report.by: {attribute!r} has more than {MAX_GROUPS} groups among the attacked "
                                  "people; slice by a coarser attribute")
            rates, gap = sliced(decided[rows] == 1, labels, groups, tm.report.min_group, people)
            out.append(Sliced(attribute=attribute, metric=metric, decision=column, minimum=tm.report.min_group,
                              groups=rates, differential=gap))
    return out


def _clean(tm: ThreatModel, points: Sequence[OperatingPoint], table: attributes.Table) -> list[Sliced]:
    """The clean baseline by group at the first operating point (the target's), when it carries named scores."""
    scores = points[0].run_scores if points else None
    if scores is None or getattr(scores, "names", None) is None:
        return []
    out = []
    for attribute in tm.report.by:
        found = at_threshold(scores, points[0].threshold, table.groups(attribute, scores.names.tolist()),
                             tm.report.min_group)
        out += [Sliced(attribute=attribute, metric=metric, decision=CLEAN[metric], minimum=tm.report.min_group,
                       groups=rates, differential=gap) for metric, (rates, gap) in found.items()]
    return out


def _decisions(values: Any) -> np.ndarray:
    """1 for True, 0 for False, -1 where the row made no decision (empty, None, NaN)."""
    out = []
    for v in values:
        if isinstance(v, bool | np.bool_):
            out.append(int(bool(v)))
        elif isinstance(v, str) and v in _TRUE | _FALSE:
            out.append(int(v in _TRUE))
        else:
            out.append(-1)
    return np.array(out, dtype=int)
