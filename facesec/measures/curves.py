"""Robustness curves: the runs of a suite that differ only in their budget (`perturbation.eps`) are one attack at
several strengths; the budget at which it fools half of the attempts (linear between the budgets measured) sums
the curve up, with a 95% interval from resampling the attacked people (the same people at every budget)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from facesec.measures.differences import samples
from facesec.measures.rates import BOOTSTRAP_DRAWS
from facesec.record import Curve, Pairing, RunRecord

LEVEL = 0.5
SETTING = "perturbation.eps"


def crossing(budgets: Sequence[float], rates: Sequence[float], level: float = LEVEL) -> float | None:
    """The smallest budget at which success reaches `level`, linear between the budgets measured (the first
    budget when success is there already); None when no budget measured reaches it."""
    points = sorted(zip(budgets, rates, strict=True))
    if not points:
        return None
    if points[0][1] >= level:
        return float(points[0][0])
    for (e0, r0), (e1, r1) in zip(points, points[1:], strict=False):
        if r1 >= level:
            return float(e0 + (level - r0) * (e1 - e0) / (r1 - r0))
    return None


def budget_at(budgets: Sequence[float], decisions: np.ndarray, people: np.ndarray, level: float = LEVEL,
              draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> tuple[float | None, list[float | None], list[float]]:
    """The crossing of the success rates (`decisions`: budgets x attempts, 1 / 0, NaN where none was made), its
    95% interval when people are resampled (None for an end beyond the largest budget), and the rates."""
    decided = ~np.isnan(decisions)
    rates = [float(np.nanmean(row)) if decided[i].any() else 0.0 for i, row in enumerate(decisions)]
    labels, inverse = np.unique(people, return_inverse=True)
    sums = np.stack([np.bincount(inverse, weights=np.nan_to_num(row), minlength=len(labels)) for row in decisions])
    counts = np.stack([np.bincount(inverse, weights=d.astype(float), minlength=len(labels)) for d in decided])
    picks = np.random.default_rng(seed).multinomial(len(labels), np.full(len(labels), 1 / len(labels)), size=draws)
    with np.errstate(invalid="ignore", divide="ignore"):
        drawn = np.nan_to_num((picks @ sums.T) / (picks @ counts.T))  # draws x budgets
    found = np.array([crossing(budgets, list(r), level) for r in drawn], dtype=object)
    ends = np.array([np.inf if f is None else f for f in found], dtype=float)
    lo, hi = np.quantile(ends, [0.025, 0.975], method="inverted_cdf") if len(labels) > 1 else (np.inf, np.inf)
    interval = [None if not np.isfinite(v) else float(v) for v in (lo, hi)]
    return crossing(budgets, rates, level), interval, rates


def curves(records: Sequence[RunRecord], pairs: Sequence[Pairing], suite_dir: Path,
           column: Callable[[RunRecord], str | None]) -> list[Curve]:
    """A curve per group of finished runs joined by pairs that differ only in the budget (pairs join runs of one
    family), on the samples column `column` names for the group's family."""
    parent = list(range(len(records)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for p in pairs:
        if p.setting == SETTING and p.difference is not None:
            parent[root(p.second)] = root(p.first)
    groups: dict[int, list[RunRecord]] = {}
    for i, record in enumerate(records):
        groups.setdefault(root(i), []).append(record)
    found = [(g, column(g[0])) for g in groups.values() if len(g) > 1]
    return [c for g, name in found if name is not None if (c := _curve(g, suite_dir, name))]


def _curve(runs: list[RunRecord], suite_dir: Path, column: str) -> Curve | None:
    found = [samples(r, suite_dir) for r in runs]
    tables = [t for t in found if t is not None and column in t and "identity" in t]
    budgets = [b for b in (_budget(r) for r in runs) if b is not None]
    if len(tables) < len(runs) or len(budgets) < len(runs) or len({len(t) for t in tables}) != 1 \
            or any(not t["identity"].equals(tables[0]["identity"]) for t in tables):
        return None  # not the same attempts of the same people at every budget
    people = tables[0]["identity"].to_numpy()
    decisions = np.stack([_decisions(t[column].tolist()) for t in tables])
    at, interval, rates = budget_at(budgets, decisions, people)
    order = np.argsort(budgets)
    return Curve(runs=[runs[i].name for i in order], setting=SETTING, decision=column, level=LEVEL,
                 budgets=[budgets[i] for i in order], rates=[rates[i] for i in order],
                 budget_at_level=at, ci95=interval, people=len(set(people)))


def _budget(record: RunRecord) -> float | None:
    section = (record.threat_model or {}).get("perturbation")
    value = section.get("eps") if isinstance(section, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _decisions(cells: list[str]) -> np.ndarray:
    return np.array([1.0 if c in ("True", "true", "1") else 0.0 if c in ("False", "false", "0") else np.nan
                     for c in cells])
