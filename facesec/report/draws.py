"""The report's draws: runs of one threat model that differ only in `data.seed` (a list of seeds expands into
them) shown side by side, with their headline pooled over the draws (`measures.pooling`)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from facesec.measures.pooling import pooled_rate
from facesec.record import RunRecord
from facesec.report.fields import DASH, as_dict, as_list, interval, number

_SEED = re.compile(r",?seed=\d+(?=[,\]])")
MAX_GROUPS = 200
"""Threat models pooled at most (a page from a file with more shows the first)."""


@dataclass
class Draw:
    """One draw's run: its seed and headline with the interval the report shows."""

    seed: str
    anchor: str
    value: str


@dataclass
class DrawGroup:
    """A threat model measured on several draws: each draw's headline and the pooled one."""

    name: str
    metric: str
    draws: list[Draw] = field(default_factory=list)
    pooled: str = DASH
    spread: str = DASH


def groups(records: list[RunRecord], anchors: list[str]) -> list[DrawGroup]:
    """Every set of two or more finished runs identical but for `data.seed`, in the order their first run comes."""
    found: dict[str, dict[int, tuple[RunRecord, str]]] = {}
    for record, anchor in zip(records, anchors, strict=True):
        seed = _seed(record)
        if record.error is None and record.threat_model is not None and seed is not None:
            found.setdefault(_key(record), {}).setdefault(seed, (record, anchor))  # a seed twice counts once
    return [_group(list(runs.values())) for runs in found.values() if len(runs) > 1][:MAX_GROUPS]


def _key(record: RunRecord) -> str:
    """What the runs of one threat model share: everything but the seed (and the seed in the name)."""
    tm = dict(as_dict(record.threat_model))
    tm["data"] = {k: v for k, v in as_dict(tm.get("data")).items() if k != "seed"}
    tm["name"] = _SEED.sub("", str(tm.get("name", ""))).replace("[]", "")
    return json.dumps([record.source, record.family, tm], sort_keys=True, default=str)


def _seed(record: RunRecord) -> int | None:
    """The run's `data.seed` when it is a whole number (a file from elsewhere may hold anything there)."""
    seed = as_dict(as_dict(record.threat_model).get("data")).get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def _group(runs: list[tuple[RunRecord, str]]) -> DrawGroup:
    first = runs[0][0]
    metric = first.headline_metric()
    label = first.headline.label if first.headline is not None and first.headline.label else metric
    group = DrawGroup(_SEED.sub("", first.name).replace("[]", ""), label)
    rates: list[float] = []
    bounds: list[tuple[float, float]] = []
    for record, anchor in runs:
        value = number(record.metrics.get(metric))
        ends = [number(b) for b in as_list(interval(record.metrics, metric))]
        shown = DASH if value is None else f"{value:.2f}"
        if value is not None and len(ends) == 2 and ends[0] is not None and ends[1] is not None \
                and 0 <= ends[0] <= value <= ends[1] <= 1:
            shown += f" [{ends[0]:.2f}, {ends[1]:.2f}]"
            rates.append(value)
            bounds.append((ends[0], ends[1]))
        group.draws.append(Draw(str(_seed(record)), anchor, shown))
    if len(rates) == len(runs) and len(rates) >= 2:
        pooled = pooled_rate(rates, bounds)
        group.pooled = f"{pooled.rate:.2f} [{pooled.ci95[0]:.2f}, {pooled.ci95[1]:.2f}]"
        group.spread = f"{pooled.tau:.3f}"
    return group
