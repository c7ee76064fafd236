"""Face-morphing attack measures, pure numpy over similarity scores.

Conventions: a score is accepted when score > t (strictly, as in `facesec.protocols.threshold_at_fmr`); a morph
that could not be enrolled has every score at -inf (never accepted); NaN scores or thresholds are refused.

Definitions (M morphs; S(m, x) = similarity of morph m to probe x; [.] = 1 if true else 0):

- MMPMR(t) = (1/M) sum_m [min(S(m, A_m), S(m, B_m)) > t], one probe per contributor (Scherhag et al. 2017,
  "Biometric systems under morphing attacks: assessment of morphing techniques and vulnerability reporting",
  BIOSIG).
- FMMPMR(t) = (1/M) sum_m 1/(|A_m| |B_m|) sum_{i,j} [S(m, A_i) > t and S(m, B_j) > t]
  = mean over morphs of (share of A's probes accepted) x (share of B's probes accepted) (Venkatesh et al. 2020,
  "Can GAN generated morphs threaten face recognition systems equally as landmark based morphs?", IWBF).
- RMMR(t) = 1 + (MMPMR(t) - (1 - FNMR(t))) = MMPMR(t) + FNMR(t) (Scherhag et al. 2017); not clipped, so it can
  exceed 1.
- FNMR(t) = share of genuine scores <= t; FMR(t) = share of impostor scores > t.
- A threshold at FMR f is supported by n impostor scores when n >= 10 / f (about 10 impostor scores above it).
- MAP[r-1, c-1] (Ferrara, Franco, Maltoni, Busch 2022, "Morphing Attack Potential", IWBF; ISO/IEC 20059) =
  share of morphs that fool at least c recognizers with at least r attempts each, where a morph fools recognizer
  k with r attempts when both contributors have at least r accepted attempts (of R) on k. Non-increasing in r
  and in c.
- Duplicate-enrolment search (NIST IR 8430, FRTE MORPH): the morph is searched against a gallery of one entry
  per identity; "both top-2" = both contributors are ranks 1 and 2; "one rank-1" = a contributor is rank 1.
  Ties are resolved against the morph: a contributor only holds a rank when its score is strictly above every
  non-contributor score, and a -inf entry is never returned.
- Rates come with a 95% Wilson score interval (`facesec.measures.rates`).
"""

from __future__ import annotations

import math

import numpy as np


def mmpmr(first_a: np.ndarray, first_b: np.ndarray, threshold: float) -> float:
    """MMPMR: share of morphs with min(S(m, A), S(m, B)) > t, one probe each (Scherhag et al. 2017, BIOSIG)."""
    t = _threshold(threshold)
    a = _scores(first_a, "first_a")
    b = _scores(first_b, "first_b")
    if a.shape != b.shape:
        raise ValueError(f"first_a and first_b must have the same shape, got {a.shape} and {b.shape}")
    if a.size == 0:
        return math.nan
    return float(np.mean(np.minimum(a, b) > t))


def fmmpmr(scores_a: list[np.ndarray], scores_b: list[np.ndarray], threshold: float) -> float:
    """FMMPMR: mean over morphs of share(A probes > t) x share(B probes > t) (Venkatesh et al. 2020, IWBF)."""
    t = _threshold(threshold)
    if len(scores_a) != len(scores_b):
        raise ValueError(f"scores_a and scores_b must list the same morphs, got {len(scores_a)} and {len(scores_b)}")
    if not scores_a:
        return math.nan
    total = 0.0
    for m, (sa, sb) in enumerate(zip(scores_a, scores_b, strict=True)):
        a = _scores(sa, f"scores_a[{m}]")
        b = _scores(sb, f"scores_b[{m}]")
        if a.size == 0 or b.size == 0:
            raise ValueError(f"morph {m} has no probe for contributor {'A' if a.size == 0 else 'B'}")
        total += float(np.mean(a > t)) * float(np.mean(b > t))
    return total / len(scores_a)


def rmmr(mmpmr_value: float, fnmr: float) -> float:
    """RMMR = 1 + (MMPMR - (1 - FNMR)) = MMPMR + FNMR at one threshold (Scherhag et al. 2017, BIOSIG)."""
    for name, value in (("mmpmr_value", mmpmr_value), ("fnmr", fnmr)):
        if not math.isnan(value) and not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a rate in [0, 1] (or nan), got {value!r}")
    return float(mmpmr_value) + float(fnmr)  # = 1 + (MMPMR - (1 - FNMR)), without the cancellation error


def fnmr(genuine: np.ndarray, threshold: float) -> float:
    """False non-match rate: share of genuine scores <= t (ISO/IEC 19795-1; nan when there are none)."""
    t = _threshold(threshold)
    g = _scores(genuine, "genuine", flat=True)
    return math.nan if g.size == 0 else float(np.mean(g <= t))


def fmr(impostor: np.ndarray, threshold: float) -> float:
    """False match rate: share of impostor scores > t (ISO/IEC 19795-1; nan when there are none)."""
    t = _threshold(threshold)
    i = _scores(impostor, "impostor", flat=True)
    return math.nan if i.size == 0 else float(np.mean(i > t))




def map_matrix(accepted_a: np.ndarray, accepted_b: np.ndarray, n_attempts: int) -> np.ndarray:
    """MAP (R, C): share of morphs fooling >= c recognizers with >= r attempts (Ferrara et al. 2022; ISO/IEC 20059)."""
    r_max = _positive_int(n_attempts, "n_attempts")
    a = _counts(accepted_a, "accepted_a", r_max)
    b = _counts(accepted_b, "accepted_b", r_max)
    if a.shape != b.shape:
        raise ValueError(f"accepted_a and accepted_b must have the same shape, got {a.shape} and {b.shape}")
    n_morphs, n_recognizers = a.shape
    if n_morphs == 0:
        return np.full((r_max, n_recognizers), np.nan)
    both = np.minimum(a, b)  # attempts accepted for both contributors, per morph and recognizer
    r = np.arange(1, r_max + 1)
    c = np.arange(1, n_recognizers + 1)
    fooled = (both[None, :, :] >= r[:, None, None]).sum(axis=2)  # (R, M): recognizers fooled with >= r attempts
    return (fooled[:, :, None] >= c[None, None, :]).mean(axis=1).astype(np.float64)


def accepted_counts(scores: list[np.ndarray], threshold: float, n_attempts: int) -> np.ndarray:
    """Per morph, how many of its first n_attempts scores are > t (MAP's attempts, Ferrara et al. 2022, IWBF)."""
    t = _threshold(threshold)
    n = _positive_int(n_attempts, "n_attempts")
    out = np.zeros(len(scores), dtype=np.int64)
    for m, s in enumerate(scores):
        x = _scores(s, f"scores[{m}]")
        if x.size < n:
            raise ValueError(f"morph {m} has {x.size} scores, fewer than n_attempts={n}")
        out[m] = np.count_nonzero(x[:n] > t)
    return out


def dedup_search(morph_vs_gallery: np.ndarray, contributor_a: np.ndarray,
                 contributor_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per morph: (both contributors are ranks 1-2, a contributor is rank 1) in a 1:N search (NIST IR 8430)."""
    s = np.asarray(morph_vs_gallery, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"morph_vs_gallery must be 2-D (morphs, gallery), got shape {s.shape}")
    if np.isnan(s).any():
        raise ValueError("morph_vs_gallery contains NaN")
    n_morphs, n_gallery = s.shape
    ia = _indices(contributor_a, "contributor_a", n_morphs, n_gallery)
    ib = _indices(contributor_b, "contributor_b", n_morphs, n_gallery)
    if np.any(ia == ib):
        raise ValueError("contributor_a and contributor_b must be different gallery entries")
    rows = np.arange(n_morphs)
    sa, sb = s[rows, ia], s[rows, ib]
    others = s.copy()
    others[rows, ia] = -np.inf
    others[rows, ib] = -np.inf
    best_other = others.max(axis=1) if n_gallery else np.full(n_morphs, -np.inf)
    both_top2 = np.minimum(sa, sb) > best_other
    one_rank1 = np.maximum(sa, sb) > best_other
    return both_top2, one_rank1


def contributor_clusterings(pairs: list[tuple[int, int]]) -> list[np.ndarray]:
    """The ways a morph's outcome clusters, one label per morph each: by its unordered pair (reciprocal morphs
    together), by contributor A, by contributor B. A morph depends on both people, and with random pairing every
    subject is in two morphs, so no single partition holds the dependence; the interval takes the widest (after
    Cameron, Gelbach and Miller 2011's multiway clustering; a person's morphs as A and as B are never resampled
    together, so it is not an upper bound in general)."""
    unordered = np.array([min(a, b) * (1 << 32) + max(a, b) for a, b in pairs], dtype=np.int64)
    return [unordered, np.array([a for a, _ in pairs], dtype=np.int64), np.array([b for _, b in pairs], dtype=np.int64)]


def _threshold(threshold: float) -> float:
    if not isinstance(threshold, int | float | np.integer | np.floating) or math.isnan(threshold):
        raise ValueError(f"threshold must be a number, got {threshold!r}")
    return float(threshold)


def _scores(x: np.ndarray, name: str, flat: bool = False) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if flat:
        arr = arr.ravel()
    elif arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN (a morph that was not enrolled scores -inf)")
    return arr


def _positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _counts(x: np.ndarray, name: str, r_max: int) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (morphs, recognizers), got shape {arr.shape}")
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer counts, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() > r_max):
        raise ValueError(f"{name} counts must lie in [0, n_attempts={r_max}], got [{arr.min()}, {arr.max()}]")
    return arr.astype(np.int64)


def _indices(x: np.ndarray, name: str, n_morphs: int, n_gallery: int) -> np.ndarray:
    arr = np.asarray(x)
    if arr.shape != (n_morphs,):
        raise ValueError(f"{name} must have shape ({n_morphs},), got {arr.shape}")
    if arr.size and (arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must hold integer gallery indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= n_gallery):
        raise ValueError(f"{name} indices must lie in [0, {n_gallery}), got [{arr.min()}, {arr.max()}]")
    return arr
