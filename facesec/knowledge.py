"""What the attacker works on: the target itself (white-box), surrogates of it (transfer), or the
target's answers alone (query, every query counted).

Surrogates see the same faces through their own eyes: their own gallery templates and their own
threshold at the threat model's FMR. Several surrogates form an ensemble (mean margin).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from facesec import trial
from facesec.attacks import Criterion, Ensemble
from facesec.attacks.query import Oracle
from facesec.errors import ConfigError
from facesec.population import Population
from facesec.recognizers import Recognizer, load
from facesec.spec import Query, ThreatModel, Transfer


@dataclass
class AttackerView:
    """The objectives an attack optimises, and how the report names the attacker's knowledge."""

    objective: Criterion
    train: Criterion | None
    description: str
    transfer: bool


def attacker_view(tm: ThreatModel, target_model: Recognizer, target: trial.Judges, pop: Population,
                  enrol: np.ndarray, att: trial.Attempts, x_all: torch.Tensor, device: torch.device) -> AttackerView:
    """White-box: the target's own objectives. Transfer: each surrogate's, or their ensemble."""
    if isinstance(tm.knowledge, Query):
        oracle = Oracle(target.objective, tm.knowledge.output, tm.knowledge.budget)
        return AttackerView(oracle, None, f"query ({tm.knowledge.output}, {tm.knowledge.budget} queries)",
                            transfer=False)
    if not isinstance(tm.knowledge, Transfer):
        if not target_model.info.differentiable:
            raise ConfigError(f"field 'knowledge': {target_model.info.name} gives no gradients; "
                              "use knowledge: {kind: transfer, surrogates: [...]}")
        return AttackerView(target.objective, target.train, "white-box", transfer=False)
    members = [trial.judges(surrogate(spec, target_model, device), tm, pop, enrol, att, x_all, device)
               for spec in tm.knowledge.surrogates]
    names = " + ".join(m.objective.recognizer.info.name for m in members)
    if len(members) == 1:
        return AttackerView(members[0].objective, members[0].train, f"transfer from {names}", transfer=True)
    train = None if att.train_index is None else Ensemble([m.train for m in members if m.train is not None])
    return AttackerView(Ensemble([m.objective for m in members]), train, f"transfer from {names}", transfer=True)


def surrogate(spec: str | dict[str, Any], target: Recognizer, device: torch.device) -> Recognizer:
    """Load a surrogate; it must see the target's aligned crops (same template and size) and give gradients."""
    model = load(spec, device)
    info = model.info
    if info.template.name != target.info.template.name or info.input_size != target.info.input_size:
        raise ConfigError(f"field 'knowledge.surrogates': {info.name} works on {info.template.name} crops, the "
                          f"target {target.info.name} on {target.info.template.name}; a surrogate must share the "
                          "target's template")
    if not info.differentiable:
        raise ConfigError(f"field 'knowledge.surrogates': {info.name} gives no gradients and cannot be a surrogate")
    return model
