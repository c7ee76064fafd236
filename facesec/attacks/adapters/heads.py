"""Stateless logits heads that turn a recognizer into a classifier for attack libraries.

Libraries call the model on sub-batches, so nothing per-sample lives in a module: a head holds
only what all the samples it is used on share, and each sample's claim travels as its label.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from facesec.attacks.objectives import Criterion, Objective
from facesec.errors import ConfigError
from facesec.recognizers.base import Recognizer

LOGIT_SCALE = 20.0
"""Similarity differences are ~0.1-0.5; this puts softmax in a useful range for CE losses."""


class LogitsHead(nn.Module):
    """Closed-set: K logits `s * similarity` to the gallery. Verification (threshold given, one
    template): 2 logits `[0, s * (similarity - threshold)]`, class 1 = accepted as that identity,
    so the libraries' cross-entropy is a monotone function of facesec's open-set margin."""

    gallery: torch.Tensor

    def __init__(self, recognizer: Recognizer, gallery: torch.Tensor, threshold: float | None = None) -> None:
        super().__init__()
        self.recognizer = recognizer
        self.register_buffer("gallery", gallery.detach().clone())
        self.threshold = threshold

    @property
    def n_classes(self) -> int:
        return len(self.gallery) if self.threshold is None else 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sims = self.recognizer.similarity_matrix(self.recognizer(x), self.gallery)
        if self.threshold is None:
            return LOGIT_SCALE * sims
        accept = LOGIT_SCALE * (sims[:, :1] - self.threshold)
        return torch.cat([torch.zeros_like(accept), accept], dim=1)


@dataclass
class Task:
    """One library call: a head, the samples it applies to, their labels, and whether to target them."""

    head: LogitsHead
    index: torch.Tensor
    labels: torch.Tensor
    targeted: bool


def tasks(objective: Criterion) -> list[Task]:
    """Library calls that realise `objective`.

    closed-set: one K-class head; dodging is untargeted away from the true identity,
    impersonation targeted to the target. open-set: one verification head per claimed identity;
    dodging is targeted to 'reject', impersonation to 'accept'.
    """
    if not isinstance(objective, Objective):
        raise ConfigError("torchattacks and ART attack one model on its own crops: use library: native for an "
                          "ensemble of surrogates, or a surrogate that aligns faces differently from the target")
    model, labels = objective.recognizer, objective.labels
    if objective.setting == "closed-set":
        head = LogitsHead(model, objective.gallery).eval()
        index = torch.arange(len(labels), device=labels.device)
        return [Task(head, index, labels.clone(), objective.goal == "impersonation")]
    wanted = 1 if objective.goal == "impersonation" else 0
    out = []
    for claim in torch.unique(labels).tolist():
        index = torch.nonzero(labels == claim).flatten()
        head = LogitsHead(model, objective.gallery[claim:claim + 1], objective.threshold).eval()
        out.append(Task(head, index, torch.full_like(index, wanted), True))
    return out
