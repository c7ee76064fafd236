"""A rate sliced by group of people: per group, the share of True among its decisions with the 95% interval that
resamples its people (as every rate of the suite is), and the differential between the groups with the highest
and the lowest rate (their difference and ratio, with intervals from resampling people within each of the two).
Groups smaller than the minimum, and the people without the attribute ('unknown'), are shown but take no part in
the differential: a group of three people says little, and 'unknown' is no group."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from facesec.data.attributes import MIXED, UNKNOWN
from facesec.measures.rates import BOOTSTRAP_DRAWS, cluster_interval, wilson_interval
from facesec.record import Differential, GroupRate


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
    return rates, differential(outcomes, clusterings, groups, rates)


def differential(outcomes: np.ndarray, clusterings: list[np.ndarray], groups: np.ndarray, rates: list[GroupRate],
                 draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> Differential | None:
    """The highest minus the lowest group rate, and their ratio, among groups that are not `small`, with 95%
    intervals from resampling the people of each of the two groups (for each of `clusterings`, the widest),
    widened to hold what their decisions alone allow (Newcombe's interval of the difference from the two Wilson
    intervals; the ratio of their ends); a group of one person leaves them wide open ([-1, 1], [0, unbounded]).
    None with fewer than two such groups."""
    eligible = sorted((r for r in rates if not r.small), key=lambda r: (r.rate, r.group))
    if len(eligible) < 2:
        return None
    low, high = eligible[0], eligible[-1]
    d = high.rate - low.rate
    w_high, w_low = (wilson_interval(round(r.rate * r.decisions), r.decisions) for r in (high, low))
    gap_ends = [d - math.hypot(high.rate - w_high[0], w_low[1] - low.rate),
                d + math.hypot(w_high[1] - high.rate, low.rate - w_low[0])]
    ratio_ends = [w_high[0] / w_low[1], w_high[1] / w_low[0] if w_low[0] > 0 else math.inf]
    if any(len(set(way[groups == r.group].tolist())) < 2 for way in clusterings for r in (high, low)):
        return Differential(highest=high.group, lowest=low.group, difference=d, difference_ci95=[-1.0, 1.0],
                            ratio=high.rate / low.rate if low.rate > 0 else None,
                            ratio_ci95=[0.0, None] if low.rate > 0 else None)  # one person: no spread to resample
    for way in clusterings:
        gaps, ratios = _boot(outcomes, way, groups, high.group, low.group, draws, seed)
        gap_ends = [min(gap_ends[0], float(np.quantile(gaps, 0.025))),
                    max(gap_ends[1], float(np.quantile(gaps, 0.975)))]
        ratio_ends = [min(ratio_ends[0], float(np.nanquantile(ratios, 0.025, method="lower"))),
                      max(ratio_ends[1], float(np.nanquantile(ratios, 0.975, method="higher")))]
    gap_ci = [max(-1.0, gap_ends[0]), min(1.0, gap_ends[1])]
    if low.rate == 0:
        return Differential(highest=high.group, lowest=low.group, difference=d, difference_ci95=gap_ci,
                            ratio=None, ratio_ci95=None)
    return Differential(highest=high.group, lowest=low.group, difference=d, difference_ci95=gap_ci,
                        ratio=high.rate / low.rate, ratio_ci95=[max(0.0, ratio_ends[0]), _finite(ratio_ends[1])])


def _boot(outcomes: np.ndarray, way: np.ndarray, groups: np.ndarray, high: str, low: str, draws: int,
          seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The difference and ratio of the two groups' rates in resamples of their clusters (`way`)."""
    rng = np.random.default_rng(seed)
    boot = {g: _resampled(outcomes[groups == g], way[groups == g], draws, rng) for g in (high, low)}
    with np.errstate(divide="ignore", invalid="ignore"):
        return boot[high] - boot[low], boot[high] / boot[low]


def _resampled(outcomes: np.ndarray, people: np.ndarray, draws: int, rng: np.random.Generator) -> np.ndarray:
    """The group's rate in `draws` resamples of its people (with replacement, each person with all decisions)."""
    labels, inverse = np.unique(people, return_inverse=True)
    sums = np.bincount(inverse, weights=outcomes.astype(float), minlength=len(labels))
    sizes = np.bincount(inverse, minlength=len(labels)).astype(float)
    picks = rng.multinomial(len(labels), np.full(len(labels), 1 / len(labels)), size=draws)
    result: np.ndarray = (picks @ sums) / (picks @ sizes)
    return result


def _finite(value: float) -> float | None:
    """An interval's upper end, None where it is unbounded (more than 2.5% of resamples give the lowest group a
    rate of 0, or its Wilson interval reaches 0)."""
    return float(value) if math.isfinite(value) else None


def pair_rates(errors: np.ndarray, first: np.ndarray, groups: np.ndarray, minimum: int,
               second: np.ndarray | None = None) -> tuple[list[GroupRate], Differential | None]:
    """Per group, the error rate of pairs with the interval resampling the first person of each pair (and the
    second, for impostor pairs: the widest), and the differential between groups."""
    clusterings = [first] if second is None else [first, second]
    people = [(a,) for a in first] if second is None else list(zip(first, second, strict=True))
    return sliced(errors, clusterings, groups, minimum, people)


def at_threshold(scores: Any, threshold: float, group_of: dict[str, str], minimum: int
                 ) -> dict[str, tuple[list[GroupRate], Differential | None]]:
    """A run's clean FNMR (its genuine pairs rejected) and FMR (its impostor pairs of two people of the same group
    accepted) by group, at the run's own threshold (`scores`: `measures.operating.Scores` with names)."""
    names = scores.names
    who = names[scores.genuine_people]
    a, b = names[scores.people[:, 0]], names[scores.people[:, 1]]
    ga = np.array([group_of.get(p, UNKNOWN) for p in a], dtype=object)
    gb = np.array([group_of.get(p, UNKNOWN) for p in b], dtype=object)
    within = ga == gb
    genuine_groups = np.array([group_of.get(p, UNKNOWN) for p in who], dtype=object)
    return {"clean_fnmr": pair_rates(scores.genuine <= threshold, who, genuine_groups, minimum),
            "clean_fmr": pair_rates(scores.impostor[within] > threshold, a[within], ga[within], minimum, b[within])}
