"""Attack objectives on embeddings: a per-sample margin that is positive exactly on success.

Foolbox-style criteria: the objective knows the protocol (open-set verification at a threshold,
or closed-set identification over a gallery) and the goal (dodging or impersonation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import torch

from facesec.recognizers.base import Recognizer

Goal = Literal["dodging", "impersonation"]
Setting = Literal["open-set", "closed-set"]


@dataclass
class Objective:
    """Margin of each sample against its reference in the gallery.

    `gallery` holds one enrolled template per identity (K x D); `labels[i]` is sample i's gallery
    index: its own identity for dodging, the target's for impersonation.
    open-set: a sample is accepted as `labels[i]` when similarity > threshold.
    closed-set: identified as the most similar gallery entry.
    """

    recognizer: Recognizer
    setting: Setting
    goal: Goal
    gallery: torch.Tensor
    labels: torch.Tensor
    threshold: float = 0.0

    def similarity(self, emb: torch.Tensor, index: torch.Tensor | slice) -> torch.Tensor:
        """Similarity of each embedding to its sample's reference template."""
        return self.recognizer.similarity(emb, self.gallery[self.labels[index]])

    def margin(self, emb: torch.Tensor, index: torch.Tensor | slice) -> torch.Tensor:
        """Per-sample margin for embeddings `emb` of the samples at `index`; success when positive."""
        if self.setting == "open-set":
            sim = self.similarity(emb, index)
            return self.threshold - sim if self.goal == "dodging" else sim - self.threshold
        sims = self.recognizer.similarity_matrix(emb, self.gallery)
        labels = self.labels[index].view(-1, 1)
        own = sims.gather(1, labels).squeeze(1)
        others = sims.scatter(1, labels, float("-inf")).amax(dim=1)
        return others - own if self.goal == "dodging" else own - others

    def success(self, margin: torch.Tensor) -> torch.Tensor:
        """Dodging in open-set succeeds at similarity <= threshold (margin >= 0); the rest at > 0."""
        if self.setting == "open-set" and self.goal == "dodging":
            return margin >= 0
        return margin > 0

    def score(self, x: torch.Tensor, index: torch.Tensor | slice,
              autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
        """The margin of images `x`; with `autocast_dtype` the forward runs under autocast, the margin in fp32."""
        if autocast_dtype is None:
            return self.margin(self.recognizer(x), index)
        with torch.autocast(device_type=x.device.type, dtype=autocast_dtype):
            emb = self.recognizer(x)
        return self.margin(emb.float(), index)

    def subset(self, index: torch.Tensor) -> Objective:
        """The same objective for the samples at `index` only."""
        return Objective(self.recognizer, self.setting, self.goal, self.gallery, self.labels[index], self.threshold)


@dataclass
class Ensemble:
    """Several recognizers' objectives for the same samples (transfer from an ensemble of surrogates).

    The margin is the members' mean, each in its own similarity units; success follows the goal's rule.
    """

    members: list[Criterion]

    def score(self, x: torch.Tensor, index: torch.Tensor | slice,
              autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.stack([m.score(x, index, autocast_dtype) for m in self.members]).mean(0)

    def success(self, margin: torch.Tensor) -> torch.Tensor:
        return self.members[0].success(margin)

    def subset(self, index: torch.Tensor) -> Ensemble:
        return Ensemble([m.subset(index) for m in self.members])


@dataclass
class Expectation:
    """EOT (Athalye et al. 2018): the margin averaged over `samples` passes through a criterion whose model draws
    new randomness on each pass, so an attack follows the expected margin's gradient, not one draw's."""

    inner: Criterion
    samples: int

    def score(self, x: torch.Tensor, index: torch.Tensor | slice,
              autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.stack([self.inner.score(x, index, autocast_dtype) for _ in range(self.samples)]).mean(0)

    def success(self, margin: torch.Tensor) -> torch.Tensor:
        return self.inner.success(margin)

    def subset(self, index: torch.Tensor) -> Expectation:
        return Expectation(self.inner.subset(index), self.samples)


class Criterion(Protocol):
    """What attacks optimise: one recognizer's objective, an ensemble's, or a query oracle's."""

    def score(self, x: torch.Tensor, index: torch.Tensor | slice,
              autocast_dtype: torch.dtype | None = None) -> torch.Tensor: ...

    def success(self, margin: torch.Tensor) -> torch.Tensor: ...

    def subset(self, index: torch.Tensor) -> Criterion: ...
