"""Evaluation protocols: verification pairs, thresholds at a false match rate, gallery/probe splits."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np


def verification_pairs(labels: Sequence[str], max_genuine_per_identity: int = 20,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Genuine pairs (up to N per identity, sampled from all its pairs) and as many random impostor pairs.

    Returns two int arrays of shape (n, 2) holding indices into `labels`.
    """
    rng = np.random.default_rng(seed)
    labels_arr = np.asarray(labels)
    genuine: list[tuple[int, int]] = []
    for ident in sorted(set(labels_arr.tolist())):
        idx = np.flatnonzero(labels_arr == ident)
        pairs = [(int(a), int(b)) for i, a in enumerate(idx) for b in idx[i + 1:]]
        if len(pairs) > max_genuine_per_identity:
            pairs = [pairs[j] for j in sorted(rng.choice(len(pairs), max_genuine_per_identity, replace=False))]
        genuine += pairs
    impostor: list[tuple[int, int]] = []
    if len(set(labels_arr.tolist())) > 1:
        while len(impostor) < len(genuine):
            a, b = rng.integers(0, len(labels_arr), size=2)
            if labels_arr[a] != labels_arr[b]:
                impostor.append((int(a), int(b)))
    return np.array(genuine, dtype=np.int64).reshape(-1, 2), np.array(impostor, dtype=np.int64).reshape(-1, 2)


def threshold_at_fmr(impostor_scores: np.ndarray, fmr: float) -> float:
    """Smallest threshold t such that at most `fmr` of impostor scores are > t (accept = score > t)."""
    scores = np.sort(np.asarray(impostor_scores, dtype=np.float64))[::-1]
    if scores.size == 0:
        raise ValueError("no impostor scores to calibrate a threshold on")
    allowed = int(np.floor(fmr * scores.size))
    return float(scores[min(allowed, scores.size - 1)])


def first_image_gallery(labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Closed-set split: each identity's first image is its gallery entry, the rest are probes."""
    seen: set[str] = set()
    gallery: list[int] = []
    probes: list[int] = []
    for i, ident in enumerate(labels):
        (probes if ident in seen else gallery).append(i)
        seen.add(ident)
    return np.array(gallery, dtype=np.int64), np.array(probes, dtype=np.int64)


SUPPORT_COUNT = 10
"""Impostor scores wanted above a threshold for its FMR to be supported by the sample (n >= 10 / FMR)."""


def supported_fmr(n_impostor: int, fmr: float) -> bool:
    """Whether n impostor scores support a threshold at this FMR: n >= 10 / FMR (about 10 scores above it)."""
    if isinstance(n_impostor, bool) or not isinstance(n_impostor, int | np.integer) or n_impostor < 0:
        raise ValueError(f"n_impostor must be a non-negative int, got {n_impostor!r}")
    if not isinstance(fmr, int | float | np.floating) or not 0.0 < fmr <= 1.0:  # also refuses nan
        raise ValueError(f"fmr must be in (0, 1], got {fmr!r}")
    # exact on the FMR as written (repr), so that 10 / 1e-3 is 10000, not 9999.999... or 10000.000...1
    return int(n_impostor) * Fraction(repr(float(fmr))) >= SUPPORT_COUNT


def identity_pairs(n_identities: int) -> int:
    """Pairs of distinct people among `n_identities`: what impostor image pairs come from."""
    return max(int(n_identities), 0) * (max(int(n_identities), 0) - 1) // 2


def people_flag(n_identities: int, fmr: float, fix: str) -> str | None:
    """A validity flag when the impostor pairs come from fewer pairs of people than 1 / FMR: image pairs of the
    same few people are not independent, so the threshold's FMR then rests on less than one expected false
    match between people (None when enough); `fix` says what to raise."""
    pairs = identity_pairs(n_identities)
    if pairs * Fraction(repr(float(fmr))) >= 1:
        return None
    return (f"FMR {fmr:g} rests on {pairs} pairs of people ({n_identities} identities; needs {1 / fmr:.0f} pairs of "
            f"people for one false match between people to be expected): raise {fix}")


def pair_counts(counts: list[int]) -> tuple[int, int]:
    """(genuine, impostor) image pairs for identities with these image counts."""
    n = np.asarray(counts, dtype=np.int64)
    total = int(n.sum())
    genuine = int((n * (n - 1) // 2).sum())
    return genuine, total * (total - 1) // 2 - genuine
