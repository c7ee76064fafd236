"""A recognizer's clean error rates by group (`facesec eval --by`), as NIST FRVT Part 3 reports demographic
effects: one threshold for everyone, set at the FMR on the impostor pairs of people drawn apart (half of the
dataset's identities, by seed), then on the other half each group's FNMR (its people's genuine pairs) and FMR
(impostor pairs of two people of that same group), with intervals that resample people, and the differential."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from facesec import protocols
from facesec.data.attributes import Table
from facesec.errors import ConfigError
from facesec.groups.slices import pair_rates
from facesec.recognizers.base import Recognizer

MAX_FACES = 12_000
"""Faces `--by` takes at most: each half's pairs are compared at once (6,000 faces: 18 million pairs, about 0.5 GB)."""
MAX_IMPOSTOR = 2_000_000
"""Impostor pairs of one group kept at most (a random subset beyond it): their FMR still resolves 1e-5."""


def by_group(model: Recognizer, emb: torch.Tensor, labels: np.ndarray, table: Table, attributes: list[str],
             fmr: float, minimum: int, seed: int = 0) -> dict[str, Any]:
    """The threshold from the calibration half and, per attribute, each group's FNMR and FMR on the other half."""
    if len(labels) > MAX_FACES:
        raise ConfigError(f"--by compares every pair of faces: {len(labels):,} faces is more than {MAX_FACES:,}; "
                          "evaluate a subset of the dataset (`facesec data import` a CSV of some of its photos)")
    people = sorted(set(labels.tolist()))
    rng = np.random.default_rng(seed)
    apart = set(rng.permutation(people)[: len(people) // 2].tolist())
    calibrate = np.flatnonzero([label in apart for label in labels])
    evaluate = np.flatnonzero([label not in apart for label in labels])
    threshold = protocols.threshold_at_fmr(_impostor_scores(model, emb, labels, calibrate, rng), fmr)
    who = labels[evaluate]
    upper = np.triu_indices(len(evaluate), k=1)
    scores = model.similarity_matrix(emb[evaluate], emb[evaluate]).cpu().numpy()[upper]
    same = who[upper[0]] == who[upper[1]]
    out: dict[str, Any] = {"fmr": fmr, "threshold": threshold, "calibration_identities": len(apart),
                           "evaluation_identities": len(people) - len(apart), "by": {}}
    for attribute in attributes:
        group_of = table.groups(attribute, people)
        ga, gb = (np.array([group_of[p] for p in who[i]], dtype=object) for i in upper)
        keep = _capped(np.flatnonzero(~same & (ga == gb)), rng)
        out["by"][attribute] = {
            "fnmr": _rates(scores[same] <= threshold, who[upper[0]][same], ga[same], minimum),
            "fmr": _rates(scores[keep] > threshold, who[upper[0]][keep], ga[keep], minimum, who[upper[1]][keep])}
    return out


def _impostor_scores(model: Recognizer, emb: torch.Tensor, labels: np.ndarray, rows: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """Every impostor pair among `rows` (a random MAX_IMPOSTOR of them when more)."""
    sims = model.similarity_matrix(emb[rows], emb[rows]).cpu().numpy()
    upper = np.triu_indices(len(rows), k=1)
    impostor = labels[rows][upper[0]] != labels[rows][upper[1]]
    keep = _capped(np.flatnonzero(impostor), rng)
    return np.asarray(sims[upper][keep])


def _capped(index: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(index, MAX_IMPOSTOR, replace=False)) if len(index) > MAX_IMPOSTOR else index


def _rates(errors: np.ndarray, first: np.ndarray, groups: np.ndarray, minimum: int,
           second: np.ndarray | None = None) -> dict[str, Any]:
    """`pair_rates` as JSON."""
    rates, gap = pair_rates(errors, first, groups, minimum, second)
    return {"groups": [r.model_dump() for r in rates], "differential": gap.model_dump() if gap else None}
