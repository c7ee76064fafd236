"""Physically realizable accessories: optimise the colours inside a region, nothing outside it.

Colours are free in [0, 1] (no Lp budget) and start from a plain colour. Each step averages the
objective's margin over random physical transforms of the worn accessory (EOT), clipped at
`kappa` so that robust samples stop pulling, minus total-variation and non-printability
penalties; it moves the colours by signed gradient steps (with optional momentum). The iterate
with the best score is kept per wearer (or for the whole group, when universal).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from facesec.attacks.objectives import Criterion
from facesec.data.regions import wear
from facesec.families.evasion.accessories import eot
from facesec.families.evasion.accessories.printability import non_printability, total_variation


@dataclass
class Region:
    """Where an accessory sits on each face (N x H x W, or 1 x H x W for one shared accessory).

    `cells` (same shape, -1 outside) makes it a colour grid: one colour per cell instead of per pixel.
    """

    mask: torch.Tensor
    cells: torch.Tensor | None = None

    def __getitem__(self, index: torch.Tensor | slice) -> Region:
        if len(self.mask) == 1:
            return self
        return Region(self.mask[index], None if self.cells is None else self.cells[index])

    def parameters(self, n: int, colour: tuple[float, float, float]) -> torch.Tensor:
        """A plain accessory's colours: n x 3 x (H x W, or the number of cells)."""
        h, w = self.mask.shape[-2:]
        per = h * w if self.cells is None else int(self.cells.max()) + 1
        c = torch.tensor(colour, dtype=torch.float32, device=self.mask.device)
        return c.view(1, 3, 1).expand(n, 3, per).clone()

    def render(self, params: torch.Tensor) -> torch.Tensor:
        """Colours -> an n x 3 x H x W pattern (a grid paints each cell in its colour)."""
        h, w = self.mask.shape[-2:]
        n = len(params)
        if self.cells is None:
            return params.view(n, 3, h, w)
        index = self.cells.clamp_min(0).flatten(1).expand(n, -1).unsqueeze(1).expand(n, 3, -1)
        return params.gather(2, index).view(n, 3, h, w)


@dataclass
class AccessoryAttack:
    """Masked, EOT-averaged signed-gradient optimisation of an accessory's colours."""

    steps: int = 100
    step_size: float = 1 / 64
    momentum: float = 0.0
    kappa: float = 0.1
    variation: eot.Variation | None = eot.Variation()
    eot_samples: int = 4
    tv_weight: float = 0.0
    nps_weight: float = 0.0
    palette: torch.Tensor | None = None
    batch_size: int = 32

    @property
    def forwards_per_step(self) -> int:
        return self.eot_samples if self.variation is not None else 1

    def run(self, x: torch.Tensor, region: Region, objective: Criterion, start: torch.Tensor,
            generator: torch.Generator) -> torch.Tensor:
        """One accessory per wearer, from the colours `start` (N x 3 x ...); returns the optimised colours."""
        out = start.clone()
        for begin in range(0, len(x), self.batch_size):
            idx = torch.arange(begin, min(begin + self.batch_size, len(x)), device=x.device)
            out[idx] = self._optimise(x[idx], idx, region[idx], objective, out[idx], generator, universal=False)
        return out

    def run_universal(self, x: torch.Tensor, region: Region, objective: Criterion, start: torch.Tensor,
                      generator: torch.Generator) -> torch.Tensor:
        """One accessory (`region` and `start` of batch 1) for all of `x`: its colours (1 x 3 x ...)."""
        idx = torch.arange(len(x), device=x.device)
        return self._optimise(x, idx, region, objective, start, generator, universal=True)

    def _score(self, x: torch.Tensor, idx: torch.Tensor, region: Region, objective: Criterion,
               params: torch.Tensor, generator: torch.Generator, shared: bool) -> torch.Tensor:
        """Per face (per parameter set when not shared): the clipped margin averaged over transforms."""
        pattern = region.render(params)
        total = torch.zeros(len(x), device=x.device)
        for _ in range(self.forwards_per_step):
            if self.variation is None:
                worn = wear(x, region.mask, pattern)
            else:
                draw = eot.sample(len(x), self.variation, generator)
                moved, moved_mask = eot.apply(pattern, region.mask, draw)
                worn = wear(x, moved_mask, moved)
            total = total + objective.score(worn, idx).clamp(max=self.kappa)
        score = total / self.forwards_per_step
        penalty = torch.zeros(len(params), device=x.device)
        if self.tv_weight:
            penalty = penalty + self.tv_weight * total_variation(pattern, region.mask)
        if self.nps_weight:
            assert self.palette is not None
            penalty = penalty + self.nps_weight * non_printability(pattern, region.mask, self.palette)
        return score.mean().view(1) - penalty if shared else score - penalty

    def _optimise(self, x: torch.Tensor, idx: torch.Tensor, region: Region, objective: Criterion,
                  params: torch.Tensor, generator: torch.Generator, universal: bool) -> torch.Tensor:
        best = params.clone()
        best_score = torch.full((len(params),), float("-inf"), device=x.device)
        velocity = torch.zeros_like(params)
        for _ in range(self.steps):
            params = params.detach().requires_grad_(True)
            with torch.enable_grad():
                if universal:  # mini-batches of wearers, gradients summed
                    score = torch.zeros(1, device=x.device)
                    grad = torch.zeros_like(params)
                    for start in range(0, len(x), self.batch_size):
                        part = slice(start, start + self.batch_size)
                        s = self._score(x[part], idx[part], region, objective, params, generator, shared=True)
                        weight = len(idx[part]) / len(x)
                        grad += torch.autograd.grad(s.sum() * weight, params)[0]
                        score = score + s.detach() * weight
                else:
                    score = self._score(x, idx, region, objective, params, generator, shared=False)
                    (grad,) = torch.autograd.grad(score.sum(), params)
            params = params.detach()
            better = score.detach() > best_score
            best = torch.where(better.view(-1, 1, 1), params, best)
            best_score = torch.where(better, score.detach(), best_score)
            if self.momentum:
                l1 = grad.abs().flatten(1).mean(1).clamp_min(1e-12).view(-1, 1, 1)
                velocity = self.momentum * velocity + grad / l1
                grad = velocity
            params = (params + self.step_size * grad.sign()).clamp(0, 1)
        return best if self.steps else params
