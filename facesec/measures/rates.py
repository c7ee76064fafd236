"""Rates of decisions with their 95% Wilson score intervals (Wilson 1927): the interval every family reports."""

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
