"""A rate sliced by group of people: per group, the share of True among its decisions with the 95% interval that
resamples its people (as every rate of the suite is), and the differential between the groups with the highest
and the lowest rate (their difference and ratio, with intervals from resampling people within each of the two).
Groups smaller than the minimum, and the people without the attribute ('unknown'), are shown but take no part in
the differential: a group of three people says little, and 'unknown' is no group."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from facesec.data.attributes import UNKNOWN
from facesec.measures.rates import BOOTSTRAP_DRAWS, cluster_interval, wilson_interval
from facesec.record import Differential, GroupRate

MIXED = "mixed"
"""A decision about several people (a morph's two contributors) in different groups."""


def row_groups(people: Sequence[Sequence[str]], group_of: dict[str, str]) -> np.ndarray:
    """Each decision's group: that of the people it is about when they share one, else 'mixed' ('unknown' when
    one of them has none)."""
    out = []
    for who in people:
        values = {group_of.get(p, UNKNOWN) for p in who}
        out.append(UNKNOWN if UNKNOWN in values else values.pop() if len(values) == 1 else MIXED)
    return np.array(out, dtype=object)


def sliced(outcomes: np.ndarray, clusterings: list[np.ndarray], groups: np.ndarray, minimum: int,
           people: Sequence[Sequence[str]] | None = None) -> tuple[list[GroupRate], Differential | None]:
    """Per group, its rate of `outcomes` (True/False per decision) with the widest of the intervals that resample
    each of `clusterings` (labels per decision: the person, or a morph's pair and each contributor), and its size
    in people (`people`: whom each decision is about; default the first clustering's labels); then the
    differential between the extreme groups of at least `minimum` people, resampling the first clustering."""
    outcomes = np.asarray(outcomes, dtype=bool)
    whom = people if people is not None else [(str(c),) for c in clusterings[0]]
    rates = []
    for group in sorted(set(groups.tolist())):
        chosen = groups == group
        n_people = len({p for i in np.flatnonzero(chosen).tolist() for p in whom[i]})
        ends = [cluster_interval(outcomes[chosen], c[chosen]) for c in clusterings]
        rates.append(GroupRate(group=str(group), identities=n_people, decisions=int(chosen.sum()),
                               rate=float(outcomes[chosen].mean()),
                               ci95_cluster=[min(lo for lo, _ in ends), max(hi for _, hi in ends)],
                               small=n_people < minimum or group in (UNKNOWN, MIXED)))
    return rates, differential(outcomes, clusterings[0], groups, rates)


def differential(outcomes: np.ndarray, people: np.ndarray, groups: np.ndarray, rates: list[GroupRate],
                 draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> Differential | None:
    """The highest minus the lowest group rate, and their ratio, among groups that are not `small`, with 95%
    intervals from resampling people within each of the two groups, widened to hold what their decisions alone
    allow (Newcombe's interval of the difference from the two Wilson intervals; the ratio of their ends). None
    with fewer than two such groups."""
    eligible = sorted((r for r in rates if not r.small), key=lambda r: (r.rate, r.group))
    if len(eligible) < 2:
        return None
    low, high = eligible[0], eligible[-1]
    rng = np.random.default_rng(seed)
    boot = {r.group: _resampled(outcomes[groups == r.group], people[groups == r.group], draws, rng)
            for r in (low, high)}
    gaps = boot[high.group] - boot[low.group]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = boot[high.group] / boot[low.group]
    w_high, w_low = (wilson_interval(round(r.rate * r.decisions), r.decisions) for r in (high, low))
    d = high.rate - low.rate
    newcombe = (d - math.hypot(high.rate - w_high[0], w_low[1] - low.rate),
                d + math.hypot(w_high[1] - high.rate, low.rate - w_low[0]))
    gap_ci = [max(-1.0, min(float(np.quantile(gaps, 0.025)), newcombe[0])),
              min(1.0, max(float(np.quantile(gaps, 0.975)), newcombe[1]))]
    if low.rate == 0:
        return Differential(highest=high.group, lowest=low.group, difference=d, difference_ci95=gap_ci,
                            ratio=None, ratio_ci95=None)
    top = w_high[1] / w_low[0] if w_low[0] > 0 else math.inf
    ratio_ci = [min(float(np.nanquantile(ratios, 0.025, method="lower")), w_high[0] / w_low[1]),
                _finite(max(float(np.nanquantile(ratios, 0.975, method="higher")), top))]
    return Differential(highest=high.group, lowest=low.group, difference=d, difference_ci95=gap_ci,
                        ratio=high.rate / low.rate, ratio_ci95=ratio_ci)


def _resampled(outcomes: np.ndarray, people: np.ndarray, draws: int, rng: np.random.Generator) -> np.ndarray:
    """The group's rate in `draws` resamples of its people (with replacement, each person with all decisions)."""
    labels, inverse = np.unique(people, return_inverse=True)
    sums = np.bincount(inverse, weights=outcomes.astype(float), minlength=len(labels))
    sizes = np.bincount(inverse, minlength=len(labels)).astype(float)
    picks = rng.multinomial(len(labels), np.full(len(labels), 1 / len(labels)), size=draws)
    result: np.ndarray = (picks @ sums) / (picks @ sizes)
    return result


def _finite(value: float) -> float | None:
    """An interval's end, None where it is unbounded (a resample in which the lowest group's rate is 0)."""
    return float(value) if math.isfinite(value) else None
