"""Worst-case morphs: a landmark morph's pixels moved (within an L-inf budget) so that the worse-matched of
its two contributors is matched as well as possible, on the attacker's recognizer(s); detection-aware, first
below a morphing-attack detector's threshold (by a margin) and then as well matched as possible.

The optimisation works on the photo itself: each recognizer sees it through its own aligned crop, taken by a
differentiable resampling with the crop transform of the face found in the landmark morph, so the result is
a photo that then goes through detection and alignment like any enrolment photo.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from facesec.recognizers.base import Recognizer

DETECTOR_MARGIN = 1.0
"""How far below a detector's threshold (in log-odds) a detection-aware morph is kept before matching counts."""


@dataclass
class AttackerView:
    """One recognizer the attacker differentiates: where each morph's crop lies, and each contributor's template."""

    model: Recognizer
    grid: torch.Tensor
    """B x S x S x 2, from `photo_crop_grid`."""
    template_a: torch.Tensor
    """B x D: contributor A's template as this recognizer sees the attacker's reference photos."""
    template_b: torch.Tensor
    caught: Callable[[torch.Tensor], torch.Tensor] | None = None
    """Detection-aware: per morph, how far its embedding scores above a detector's threshold (> 0: flagged)."""

    def objective(self, photos: torch.Tensor) -> torch.Tensor:
        """Per morph, the lower of its similarities to the two contributors; while a detector (nearly) flags it,
        how far below the detector's threshold it is instead."""
        crops = F.grid_sample(photos, self.grid, mode="bilinear", padding_mode="border", align_corners=False)
        emb = self.model(crops)
        worse = torch.minimum(self.model.similarity(emb, self.template_a), self.model.similarity(emb, self.template_b))
        if self.caught is None:
            return worse
        over = self.caught(emb)
        return torch.where(over > -DETECTOR_MARGIN, -over, worse)


def optimise(photos: torch.Tensor, views: list[AttackerView], eps: float, steps: int,
             step_size: float | None = None) -> torch.Tensor:
    """Signed-gradient ascent of each view's objective (summed over the views), within `eps`
    (L-inf) of `photos` (B x 3 x H x W in [0, 1]); returns the optimised photos, not yet quantised."""
    step = step_size if step_size is not None else 2.5 * eps / max(steps, 1)
    delta = torch.zeros_like(photos, requires_grad=True)
    for _ in range(steps):
        x = (photos + delta).clamp(0, 1)
        loss = torch.stack([view.objective(x) for view in views]).sum()
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta += step * grad.sign()
            delta.clamp_(-eps, eps)
    return (photos + delta.detach()).clamp(0, 1)
