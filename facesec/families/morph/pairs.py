"""Who is morphed with whom: each subject with its closest look-alike (as the attacker's recognizer sees
them), or with a random other subject; one morph per subject, hosted in that subject's photo."""

from __future__ import annotations

import numpy as np


def lookalike(similarity: np.ndarray, n_pairs: int) -> list[tuple[int, int]]:
    """The first `n_pairs` subjects, each with the other subject most similar to it.

    `similarity` is the subjects' square similarity matrix as the attacker computes it (its references only).
    The subject is contributor A, whose photo hosts the morph, and the look-alike is B. When two subjects
    are each other's closest, both morphs are made: they are different photos (each hosted by its own A).
    """
    sim = np.array(similarity, dtype=np.float64)
    np.fill_diagonal(sim, -np.inf)
    return [(a, int(np.argmax(sim[a]))) for a in range(min(n_pairs, len(sim)))] if len(sim) > 1 else []


def random_pairs(n_subjects: int, n_pairs: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """The first `n_pairs` subjects, each with a seeded random other subject (contributor B)."""
    return [(a, int((a + rng.integers(1, n_subjects)) % n_subjects)) for a in range(min(n_pairs, n_subjects))] \
        if n_subjects > 1 else []
