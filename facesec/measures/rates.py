"""Rates of decisions with their 95% intervals: Wilson's (Wilson 1927), which treats every decision as
independent, and the cluster bootstrap's, which resamples whole people (or whatever a family's decisions
cluster by), so that ten photos of one person count as one person's worth of evidence."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion ((0, 1) when n is 0)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def rate_with_ci(successes: int | float, n: int) -> dict[str, Any]:
    """Rate successes / n with its 95% Wilson interval (Wilson 1927)."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    if isinstance(successes, bool) or not isinstance(successes, int | float | np.integer | np.floating) \
            or not 0 <= successes <= n:  # also refuses nan
        raise ValueError(f"successes must be a number in [0, n={n}], got {successes!r}")
    k = int(math.floor(float(successes) + 0.5))  # nearest int, halves rounded up
    lo, hi = wilson_interval(k, int(n))
    return {"rate": float(successes) / int(n) if n else math.nan, "ci95": [float(lo), float(hi)]}


CLUSTER = "resampling {who} (cluster bootstrap, widened to hold Wilson's interval)"
"""How a cluster interval is described, `who` naming what is resampled."""
BOOTSTRAP_DRAWS = 2000
"""Resamples of the clusters behind a cluster interval (its 2.5% and 97.5% quantiles move by well under a point
between seeds at this count for the populations facesec draws)."""


def cluster_interval(outcomes: np.ndarray, clusters: np.ndarray, draws: int = BOOTSTRAP_DRAWS,
                     seed: int = 0) -> tuple[float, float]:
    """95% interval of the rate of `outcomes` (0/1 per decision) when whole clusters (`clusters`: a label per
    decision) are resampled with replacement, widened to hold the Wilson interval: resampling people shows the
    spread between them, never less than the decisions themselves carry. (0, 1) with fewer than two clusters."""
    outcomes = np.asarray(outcomes, dtype=float)
    if outcomes.shape != np.shape(clusters) or outcomes.ndim != 1:
        raise ValueError("outcomes and clusters must be two 1-d arrays of the same length")
    labels, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    if len(labels) < 2:
        return 0.0, 1.0
    sums = np.bincount(inverse, weights=outcomes, minlength=len(labels))
    sizes = np.bincount(inverse, minlength=len(labels)).astype(float)
    picks = np.random.default_rng(seed).multinomial(len(labels), np.full(len(labels), 1 / len(labels)), size=draws)
    rates = (picks @ sums) / (picks @ sizes)
    lo, hi = np.quantile(rates, [0.025, 0.975])
    w_lo, w_hi = wilson_interval(int(round(outcomes.sum())), len(outcomes))
    return float(min(lo, w_lo)), float(max(hi, w_hi))


def rate_with_intervals(outcomes: np.ndarray, clusters: np.ndarray) -> dict[str, Any]:
    """The share of True in `outcomes` with its Wilson interval (`ci95`) and its cluster interval
    (`ci95_cluster`, `clusters` labelling who or what each decision belongs to)."""
    hits = np.asarray(outcomes, dtype=bool)
    return {**rate_with_ci(int(hits.sum()), int(hits.size)), "ci95_cluster": list(cluster_interval(hits, clusters))}


def multiway_interval(outcomes: np.ndarray, clusterings: list[np.ndarray]) -> tuple[float, float]:
    """The widest of the cluster intervals over several ways the decisions cluster (each at least Wilson's)."""
    ends = [cluster_interval(outcomes, clusters) for clusters in clusterings]
    return min(lo for lo, _ in ends), max(hi for _, hi in ends)


def paired_difference(first: np.ndarray, second: np.ndarray, clusters: np.ndarray,
                      draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> dict[str, Any]:
    """The share of True in `first` minus that in `second`, two decisions on the same units (the same genuine
    pairs under two models, the same faces under two attacks), with the 95% interval of the difference when whole
    clusters are resampled with replacement and both rates recomputed on the same draw (a paired cluster
    bootstrap: what the two share cancels, what differs between people shows), widened to hold the difference of
    the Wilson intervals of the two discordant shares."""
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if a.shape != b.shape or a.shape != np.shape(clusters) or a.ndim != 1 or a.size == 0:
        raise ValueError("first, second and clusters must be three non-empty 1-d arrays of the same length")
    labels, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    sums = np.bincount(inverse, weights=a - b, minlength=len(labels))
    sizes = np.bincount(inverse, minlength=len(labels)).astype(float)
    picks = np.random.default_rng(seed).multinomial(len(labels), np.full(len(labels), 1 / len(labels)), size=draws)
    spread = (picks @ sums) / (picks @ sizes)
    lo, hi = np.quantile(spread, [0.025, 0.975]) if len(labels) > 1 else (-1.0, 1.0)
    # never narrower than the discordant shares allow: units where only `first` holds (b of n) and where only
    # `second` does (c of n) bound the difference by Wilson's intervals of b/n and c/n (two models that agree on
    # every unit still leave room for a difference under about 4/n)
    n = a.size
    b_lo, b_hi = wilson_interval(int(((a > 0) & (b == 0)).sum()), n)
    c_lo, c_hi = wilson_interval(int(((a == 0) & (b > 0)).sum()), n)
    return {"difference": float(a.mean() - b.mean()),
            "ci95_cluster": [float(min(lo, b_lo - c_hi)), float(max(hi, b_hi - c_lo))]}
