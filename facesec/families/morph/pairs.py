"""Who is morphed with whom: each subject with its closest look-alike (as the attacker's recognizer sees
them), or at random; at most one morph per pair of identities."""

from __future__ import annotations

import numpy as np


def lookalike(similarity: np.ndarray, n_pairs: int) -> list[tuple[int, int]]:
    """Each subject (in order) with the other subject most similar to it; repeats of a pair are dropped.

    `similarity` is the subjects' square similarity matrix as the attacker computes it (its references only).
    The subject is contributor A (the morph sits in A's photo), the look-alike is B.
    """
    sim = np.array(similarity, dtype=np.float64)
    np.fill_diagonal(sim, -np.inf)
    pairs: list[tuple[int, int]] = []
    seen: set[frozenset[int]] = set()
    for a in range(len(sim)):
        b = int(np.argmax(sim[a]))
        if len(sim) > 1 and frozenset((a, b)) not in seen:
            seen.add(frozenset((a, b)))
            pairs.append((a, b))
        if len(pairs) == n_pairs:
            break
    return pairs


def random_pairs(n_subjects: int, n_pairs: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Each subject (in order) with a seeded random other subject; repeats of a pair are drawn again."""
    pairs: list[tuple[int, int]] = []
    seen: set[frozenset[int]] = set()
    most = n_subjects * (n_subjects - 1) // 2
    for a in range(n_subjects):
        if len(pairs) == min(n_pairs, most):
            break
        others = [b for b in rng.permutation(n_subjects).tolist() if b != a and frozenset((a, b)) not in seen]
        if others:
            seen.add(frozenset((a, others[0])))
            pairs.append((a, int(others[0])))
    return pairs
