"""Stateless logits heads that turn a recognizer plus a gallery into a classifier for attack libraries.

Libraries call the model on sub-batches, so nothing per-sample lives in the module: the gallery
and threshold are shared buffers, and each sample's claim travels as its label.
"""

from __future__ import annotations

import torch
from torch import nn

from facesec.attacks.objectives import Objective

LOGIT_SCALE = 20.0
"""Similarity differences are ~0.1-0.5; this puts softmax in a useful range for CE losses."""


class LogitsHead(nn.Module):
    """closed-set: K logits `s * similarity`; open-set: K logits `s * (similarity - threshold)` + reject (0)."""

    gallery: torch.Tensor

    def __init__(self, objective: Objective) -> None:
        super().__init__()
        self.recognizer = objective.recognizer
        self.register_buffer("gallery", objective.gallery.detach().clone())
        self.open_set = objective.setting == "open-set"
        self.threshold = objective.threshold

    @property
    def n_classes(self) -> int:
        return len(self.gallery) + (1 if self.open_set else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sims = self.recognizer.similarity_matrix(self.recognizer(x), self.gallery)
        if not self.open_set:
            return LOGIT_SCALE * sims
        reject = torch.zeros(len(x), 1, dtype=sims.dtype, device=sims.device)
        return torch.cat([LOGIT_SCALE * (sims - self.threshold), reject], dim=1)


def library_labels(objective: Objective) -> tuple[torch.Tensor, bool]:
    """Labels to give a library and whether the attack is targeted.

    closed-set dodging: untargeted away from the true identity; impersonation: targeted to the
    target; open-set dodging: targeted to the reject class; open-set impersonation: to the target.
    """
    if objective.setting == "open-set" and objective.goal == "dodging":
        return torch.full_like(objective.labels, len(objective.gallery)), True
    return objective.labels.clone(), objective.goal == "impersonation"
