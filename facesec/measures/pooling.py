"""One rate measured on several draws of people, pooled: a random-effects estimate (DerSimonian and Laird 1986)
whose interval holds the spread between draws as well as within them, with the Hartung-Knapp t interval
(Hartung and Knapp 2001) for the few draws a suite runs, never narrower than the plain random-effects one."""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

Z95 = 1.959964


@dataclass(frozen=True)
class Pooled:
    """The pooled rate, its 95% interval, and the between-draw standard deviation (tau)."""

    rate: float
    ci95: tuple[float, float]
    tau: float
    draws: int


def pooled_rate(rates: list[float], intervals: list[tuple[float, float]]) -> Pooled:
    """Pool per-draw rates, each with its 95% interval (its standard error read as a quarter of its width over
    1.96, the interval's half-width, or 1e-6 when the interval is a point); at least two draws."""
    if len(rates) != len(intervals) or len(rates) < 2:
        raise ValueError("pooling needs a rate and an interval for each of at least two draws")
    se2 = [max((hi - lo) / (2 * Z95), 1e-6) ** 2 for lo, hi in intervals]
    w = [1 / s for s in se2]
    fixed = sum(wi * r for wi, r in zip(w, rates, strict=True)) / sum(w)
    q = sum(wi * (r - fixed) ** 2 for wi, r in zip(w, rates, strict=True))
    k = len(rates)
    tau2 = max(0.0, (q - (k - 1)) / (sum(w) - sum(wi * wi for wi in w) / sum(w)))
    w_star = [1 / (s + tau2) for s in se2]
    centre = sum(wi * r for wi, r in zip(w_star, rates, strict=True)) / sum(w_star)
    se_re = math.sqrt(1 / sum(w_star))
    se_hk = math.sqrt(sum(wi * (r - centre) ** 2 for wi, r in zip(w_star, rates, strict=True))
                      / ((k - 1) * sum(w_star)))
    half = max(stats.t.ppf(0.975, k - 1) * se_hk, Z95 * se_re)
    return Pooled(centre, (max(0.0, centre - half), min(1.0, centre + half)), math.sqrt(tau2), k)
