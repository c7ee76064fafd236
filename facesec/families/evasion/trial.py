"""One run's trial: who is enrolled, who is attacked and against whom, and the objectives that judge it.

The same trial is set up for the target and, in transfer runs, for each surrogate the attacker
uses (its own galleries and thresholds, computed the way the attacker would).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from facesec.attacks import Objective
from facesec.calibration import CalibrationDraw
from facesec.errors import DataError
from facesec.measures.operating import operating_point, pair_scores
from facesec.population import Population
from facesec.recognizers.base import Recognizer
from facesec.record import OperatingPoint
from facesec.threat_model import ClosedSet, ThreatModel


@dataclass
class Attempts:
    """The probes attacked, the gallery index each is judged against, and the identity it belongs to."""

    index: np.ndarray
    labels: np.ndarray
    own: np.ndarray
    train_index: np.ndarray | None = None
    """Universal runs: the probes the perturbation is optimised on, of people none of `index` belongs to."""


def split(pop: Population, tm: ThreatModel) -> tuple[np.ndarray, np.ndarray]:
    """Enrolment faces (the first `g` of each identity) and probes (the rest)."""
    g = tm.setting.gallery_images if isinstance(tm.setting, ClosedSet) else 1
    position = np.concatenate([np.arange(np.sum(pop.identity == i)) for i in range(len(pop.names))])
    return np.flatnonzero(position < g), np.flatnonzero(position >= g)


def gallery(model: Recognizer, emb: torch.Tensor, pop: Population, enrol: np.ndarray) -> torch.Tensor:
    """One template per identity: the mean of its enrolment embeddings (normalised first for cosine)."""
    e = emb[enrol]
    if model.info.comparison == "cosine":
        e = torch.nn.functional.normalize(e, dim=-1)
    ids = torch.from_numpy(pop.identity[enrol])
    return torch.stack([e[ids == i].mean(0) for i in range(len(pop.names))])


def attempts(tm: ThreatModel, pop: Population, probes: np.ndarray, rng: np.random.Generator) -> Attempts:
    own = pop.identity[probes]
    k = len(pop.names)
    if tm.goal == "dodging":
        labels = own.copy()
        index = probes
    elif tm.capability == "universal":  # one target for everyone: probes of other identities
        target = int(rng.integers(k))
        keep = own != target
        index, own = probes[keep], own[keep]
        labels = np.full(len(index), target)
    else:  # a seeded random other identity per probe
        labels = (own + rng.integers(1, k, size=len(own))) % k
        index = probes
    if tm.capability == "universal":  # optimised on half of the people, measured on the others
        people = rng.permutation(np.unique(own))
        if len(people) < 2:
            raise DataError(f"capability universal: {len(people)} attacked identities leave none to optimise on "
                            "apart from those it is measured on; raise data.identities")
        train = np.isin(own, people[: len(people) // 2])
        return Attempts(index[~train], labels[~train], own[~train], train_index=index[train])
    return Attempts(index, labels, own)


def train_labels(tm: ThreatModel, pop: Population, attempts: Attempts) -> np.ndarray:
    assert attempts.train_index is not None
    if tm.goal == "dodging":
        return pop.identity[attempts.train_index]
    return np.full(len(attempts.train_index), attempts.labels[0])


def objective(model: Recognizer, tm: ThreatModel, gallery: torch.Tensor, labels: np.ndarray,
               threshold: float, device: torch.device) -> Objective:
    return Objective(model, tm.setting.kind, tm.goal, gallery.to(device),
                     torch.from_numpy(labels).long().to(device), threshold)


def threshold(model: Recognizer, emb: torch.Tensor, pop: Population, fmr: float,
              draw: CalibrationDraw | None) -> OperatingPoint:
    """The operating point at `fmr`: from the calibration draw, or in sample from all clean impostor pairs of the
    population; either way with the FMR it gives on the population's impostor pairs."""
    return operating_point(model, fmr, pair_scores(model, emb, pop.identity, pop.names), draw)


@dataclass
class Judges:
    """A recognizer's objectives for the attempts (and, universal runs, for the training probes)."""

    objective: Objective
    train: Objective | None
    embeddings: torch.Tensor
    point: OperatingPoint | None = None
    """Where the open-set threshold comes from (None in a closed set)."""


def judges(model: Recognizer, tm: ThreatModel, pop: Population, enrol: np.ndarray, att: Attempts,
           x_all: torch.Tensor, device: torch.device, draw: CalibrationDraw | None = None) -> Judges:
    """Gallery templates and the open-set threshold at the FMR, as `model` sees the population (calibrated on
    `draw` when given, else in sample)."""
    emb = model.embed(x_all)
    templates = gallery(model, emb, pop, enrol)
    point = threshold(model, emb, pop, tm.setting.fmr, draw) if tm.setting.kind == "open-set" else None
    t = point.threshold if point is not None else 0.0
    train = None
    if att.train_index is not None:
        train = objective(model, tm, templates, train_labels(tm, pop, att), t, device)
    return Judges(objective(model, tm, templates, att.labels, t, device), train, emb, point)
