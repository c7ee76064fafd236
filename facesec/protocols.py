"""Evaluation protocols: verification pairs, thresholds at a false match rate, gallery/probe splits."""

from __future__ import annotations

from collections.abc import Sequence

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
