"""What the attacker works on: the target itself (white-box), surrogates of it (transfer), or the
target's answers alone (query, every query counted).

Surrogates see the same faces through their own eyes: their own alignment, gallery templates and
threshold at the threat model's FMR. A surrogate with another template than the target's sees the
perturbation carried into its own crops (`attacks.reframe`). Several surrogates form an ensemble.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facesec.attacks import Criterion, Ensemble, Objective
from facesec.attacks.query import Oracle
from facesec.attacks.reframe import Reframed, crop_grid
from facesec.data.dataset import resolve
from facesec.errors import ConfigError, DataError
from facesec.families.evasion import trial
from facesec.population import Population, realign
from facesec.recognizers.base import Recognizer, load
from facesec.threat_model import Query, ThreatModel, Transfer


@dataclass
class AttackerView:
    """The objectives an attack optimises, and how the report names the attacker's knowledge."""

    objective: Criterion
    train: Criterion | None
    description: str
    transfer: bool
    noisy: bool = False
    """Its objective is a random draw of a randomised defence: a success seen during the attack is no reason to
    stop, since the deployed pipeline judges the face on a fresh draw."""


def surrogates(tm: ThreatModel, device: torch.device) -> list[Recognizer]:
    """The transfer attacker's surrogates, loaded (none for other knowledge)."""
    if not isinstance(tm.knowledge, Transfer):
        return []
    return [surrogate(spec, device) for spec in tm.knowledge.surrogates]


def learnt_from(models: list[Recognizer], dataset: str) -> tuple[frozenset[str], list[str]]:
    """The people the surrogates learnt from in `dataset` (left out of the attacked ones), and the names of those
    that may have trained on it without saying whom on, or on a dataset not found here to tell (flagged: the
    attacked people may include theirs). Datasets are the same when their folders are, however named."""
    attacked = _folder(dataset)
    people: set[str] = set()
    unknown: list[str] = []
    for m in models:
        trained = m.info.trained_on
        if trained is None:
            continue
        folder = _folder(trained.dataset)
        if folder is not None and folder != attacked:
            continue
        if trained.identities is None or folder is None:
            unknown.append(m.info.name)
        else:
            people |= trained.identities
    return frozenset(people), unknown


def _folder(dataset: str) -> Path | None:
    """A dataset's folder, resolved; None when it is not found on this machine."""
    try:
        return resolve(dataset).resolve()
    except (DataError, OSError):
        return None


def attacker_view(tm: ThreatModel, target_model: Recognizer, target: trial.Judges, pop: Population,
                  enrol: np.ndarray, att: trial.Attempts, x_all: torch.Tensor, device: torch.device,
                  models: list[Recognizer]) -> AttackerView:
    """White-box: the target's own objectives. Transfer: each surrogate's (`models`), or their ensemble."""
    if isinstance(tm.knowledge, Query):
        oracle = Oracle(target.objective, tm.knowledge.output, tm.knowledge.budget)
        return AttackerView(oracle, None, f"query ({tm.knowledge.output}, {tm.knowledge.budget} queries)",
                            transfer=False)
    if not isinstance(tm.knowledge, Transfer):
        if not target_model.info.differentiable:
            raise ConfigError(f"field 'knowledge': {target_model.info.name} gives no gradients; "
                              "use knowledge: {kind: transfer, surrogates: [...]}")
        return AttackerView(target.objective, target.train, "white-box", transfer=False)
    members = [_objectives(m, tm, pop, enrol, att, x_all, device) for m in models]
    names = " + ".join(m.info.name for m in models)
    if len(members) == 1:
        objective, train = members[0]
    else:
        objective = Ensemble([o for o, _ in members])
        train = None if att.train_index is None else Ensemble([t for _, t in members if t is not None])
    return AttackerView(objective, train, f"transfer from {names}", transfer=True)


def _objectives(model: Recognizer, tm: ThreatModel, pop: Population, enrol: np.ndarray, att: trial.Attempts,
                x_all: torch.Tensor, device: torch.device) -> tuple[Criterion, Criterion | None]:
    """A surrogate's objectives (attempts, universal training probes), with its gallery and threshold
    computed from its own crops; reframed onto the target's crops when it aligns faces its own way."""
    template = model.info.template
    if template == pop.template:
        judges = trial.judges(model, tm, pop, enrol, att, x_all, device)
        return judges.objective, judges.train
    own = realign(pop, template)
    own_all = own.faces.to(device)
    judges = trial.judges(model, tm, own, enrol, att, own_all, device)

    def reframe(objective: Objective, index: np.ndarray) -> Reframed:
        grid = crop_grid(pop.landmarks[index], own.landmarks[index], pop.template.size, template.size)
        return Reframed(objective, x_all[index], own_all[index], grid.to(device))

    train = None if judges.train is None or att.train_index is None else reframe(judges.train, att.train_index)
    return reframe(judges.objective, att.index), train


def surrogate(spec: str | dict[str, Any], device: torch.device) -> Recognizer:
    """Load a surrogate; it must give gradients (it may align faces its own way)."""
    model = load(spec, device)
    if not model.info.differentiable:
        raise ConfigError(f"field 'knowledge.surrogates': {model.info.name} gives no gradients and cannot be a "
                          "surrogate")
    return model
