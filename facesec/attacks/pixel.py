"""Native, batched, device-agnostic white-box pixel attacks: PGD (L-inf, L2), FGSM, MI-FGSM, CW-margin.

One loop serves all four (they differ in start, step size, momentum and loss). Every iterate is
checked and the first successful one is kept, so more steps never lower success; transfer attacks and
attacks on a randomised defence turn that off (`early_stop=False`): success on a surrogate, or on the
attacker's own random draws, is no reason to stop pushing. No host syncs
inside the loop. With `autocast_dtype` (e.g. torch.bfloat16 on CUDA) the recognizer's forward runs
under autocast; the margin and its gradient are computed from fp32 embeddings.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F

from facesec.attacks.base import Attack, AttackOutput, Budget
from facesec.attacks.objectives import Criterion

SUCCESS_TOLERANCE = 1e-4
"""An iterate counts as a success only this far past the decision boundary (robust to re-batching)."""


def project(delta: torch.Tensor, budget: Budget) -> torch.Tensor:
    """Project a batch of perturbations onto the budget's ball."""
    if budget.norm == "linf":
        return delta.clamp(-budget.eps, budget.eps)
    norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    return delta * (budget.eps / norms).clamp(max=1.0)


def steepest(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """Steepest-ascent direction of unit size in the norm: sign for L-inf, normalised for L2."""
    if norm == "linf":
        return grad.sign()
    return grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)


def random_in_ball(shape: tuple[int, ...], budget: Budget, generator: torch.Generator) -> torch.Tensor:
    """Uniform in the L-inf box, or a random direction at a random radius in the L2 ball (on CPU)."""
    if budget.norm == "linf":
        return (torch.rand(shape, generator=generator) * 2 - 1) * budget.eps
    direction = torch.randn(shape, generator=generator)
    direction /= direction.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    radius = torch.rand(shape[0], generator=generator).view(-1, 1, 1, 1) * budget.eps
    return direction * radius


class GradientAttack(Attack):
    """Iterative gradient attack on an objective's margin."""

    supports_universal = True

    def __init__(self, name: str, steps: int = 20, step_size: float | None = None, random_start: bool = True,
                 momentum: float = 0.0, loss: Literal["margin", "cw"] = "margin", kappa: float = 0.0,
                 batch_size: int = 64, universal_kappa: float = 0.1,
                 default_step: Literal["madry", "eps", "eps/steps"] = "madry",
                 autocast_dtype: torch.dtype | None = None, diversity: float = 0.0, ti_kernel: int = 0,
                 early_stop: bool = True) -> None:
        self.name = name
        self.early_stop = early_stop
        self.diversity = diversity
        self.ti_kernel = ti_kernel
        self.autocast_dtype = autocast_dtype
        self.default_step = default_step
        self.steps = steps
        self.step_size = step_size
        self.random_start = random_start
        self.momentum = momentum
        self.loss = loss
        self.kappa = kappa
        self.batch_size = batch_size
        self.universal_kappa = universal_kappa

    def _alpha(self, budget: Budget) -> float:
        """The step size: given, or by rule: 2.5 eps / steps (Madry), eps (FGSM), eps / steps (MI-FGSM)."""
        if self.step_size is not None:
            return self.step_size
        if self.default_step == "eps":
            return budget.eps
        factor = 2.5 if self.default_step == "madry" else 1.0
        return factor * budget.eps / self.steps if self.steps else 0.0

    def _margin(self, objective: Criterion, x: torch.Tensor, index: torch.Tensor,
                generator: torch.Generator) -> torch.Tensor:
        """The objective's margin of `x` (through input diversity when set); forward under autocast if asked."""
        return objective.score(self._diverse(x, generator), index, self.autocast_dtype)

    def _diverse(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """DI (Xie et al. 2019): with probability `diversity`, shrink by up to 10%, pad at a random offset
        back to the input size. Transfer attacks use it so as not to overfit the surrogate."""
        if not self.diversity or float(torch.rand(1, generator=generator)) >= self.diversity:
            return x
        size = x.shape[-1]
        new = int(torch.randint(int(size * 0.9), size + 1, (1,), generator=generator))
        top, left = (int(v) for v in torch.randint(0, size - new + 1, (2,), generator=generator))
        small = F.interpolate(x, size=(new, new), mode="bilinear", align_corners=False)
        return F.pad(small, (left, size - new - left, top, size - new - top), value=0.5)

    def _smooth(self, grad: torch.Tensor) -> torch.Tensor:
        """TI (Dong et al. 2019): the gradient convolved with a Gaussian of `ti_kernel` pixels (sigma = size/4)."""
        if self.ti_kernel <= 1:
            return grad
        r = self.ti_kernel // 2
        t = torch.arange(-r, r + 1, dtype=grad.dtype, device=grad.device)
        k = torch.exp(-(t**2) / (2 * (self.ti_kernel / 4) ** 2))
        k2 = (k[:, None] * k[None, :]) / (k.sum() ** 2)
        c = grad.shape[1]
        return F.conv2d(grad, k2.expand(c, 1, -1, -1).contiguous(), padding=r, groups=c)

    def _loss(self, margin: torch.Tensor, kappa: float) -> torch.Tensor:
        return margin.clamp(max=kappa) if self.loss == "cw" else margin

    def run(self, x: torch.Tensor, objective: Criterion, budget: Budget,
            generator: torch.Generator) -> AttackOutput:
        out = torch.empty_like(x)
        for start in range(0, len(x), self.batch_size):
            stop = min(start + self.batch_size, len(x))
            index = torch.arange(start, stop, device=x.device)
            out[start:stop] = self._attack_batch(x[start:stop], index, objective, budget, generator)
        return AttackOutput(out, torch.full((len(x),), self.steps + 1, dtype=torch.int64))

    def _attack_batch(self, x: torch.Tensor, index: torch.Tensor, objective: Criterion, budget: Budget,
                      generator: torch.Generator) -> torch.Tensor:
        alpha = self._alpha(budget)
        x = x.contiguous(memory_format=torch.channels_last)  # NHWC convolutions: faster on CPU and GPU
        delta = random_in_ball(tuple(x.shape), budget, generator).to(x) if self.random_start else torch.zeros_like(x)
        x_adv = (x + delta).clamp(0, 1)
        best = x_adv.clone()
        found = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        velocity = torch.zeros_like(x)

        def keep(candidate: torch.Tensor, margin: torch.Tensor) -> None:
            nonlocal best, found
            new = objective.success(margin - SUCCESS_TOLERANCE) & ~found
            best = torch.where(new.view(-1, 1, 1, 1), candidate, best)
            found = found | new

        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            with torch.enable_grad():
                margin = self._margin(objective, x_adv, index, generator)
                (grad,) = torch.autograd.grad(self._loss(margin, self.kappa).sum(), x_adv)
            x_adv = x_adv.detach()
            if self.diversity:  # success is judged on the undistorted image
                with torch.no_grad():
                    margin = objective.score(x_adv, index, self.autocast_dtype)
            keep(x_adv, margin.detach())
            grad = self._smooth(grad)
            if self.momentum:
                l1 = grad.abs().flatten(1).mean(1).clamp_min(1e-12).view(-1, 1, 1, 1)
                velocity = self.momentum * velocity + grad / l1
                grad = velocity
            x_adv = (x + project(x_adv + alpha * steepest(grad, budget.norm) - x, budget)).clamp(0, 1)
        # The last iterate needs no check: where no earlier iterate succeeded, it is returned anyway.
        return torch.where(found.view(-1, 1, 1, 1), best, x_adv) if self.early_stop else x_adv

    def run_universal(self, x: torch.Tensor, objective: Criterion, budget: Budget,
                      generator: torch.Generator) -> torch.Tensor:
        alpha = self._alpha(budget)
        shape = (1, *x.shape[1:])
        delta = random_in_ball(shape, budget, generator).to(x) if self.random_start else torch.zeros(shape).to(x)
        velocity = torch.zeros_like(delta)
        for _ in range(self.steps):
            grad = torch.zeros_like(delta)
            for start in range(0, len(x), self.batch_size):
                stop = min(start + self.batch_size, len(x))
                index = torch.arange(start, stop, device=x.device)
                d = delta.clone().requires_grad_(True)
                with torch.enable_grad():
                    margin = self._margin(objective, (x[start:stop] + d).clamp(0, 1), index, generator)
                    loss = margin.clamp(max=self.universal_kappa).sum() / len(x)
                    grad += torch.autograd.grad(loss, d)[0]
            grad = self._smooth(grad)
            if self.momentum:
                velocity = self.momentum * velocity + grad / grad.abs().mean().clamp_min(1e-12)
                grad = velocity
            delta = project(delta + alpha * steepest(grad, budget.norm), budget)
        return delta






def pgd(steps: int = 20, step_size: float | None = None, random_start: bool = True, **kw: Any) -> Attack:
    """Projected gradient descent (Madry et al.) on the embedding margin."""
    return GradientAttack("pgd", steps, step_size, random_start, **kw)


def fgsm(steps: int = 1, step_size: float | None = None, random_start: bool = False, **kw: Any) -> Attack:
    """One signed-gradient step of the full budget (Goodfellow et al.)."""
    return GradientAttack("fgsm", 1, step_size, random_start, default_step="eps", **kw)


def mi_fgsm(steps: int = 10, step_size: float | None = None, random_start: bool = False, momentum: float = 1.0,
            **kw: Any) -> Attack:
    """Momentum iterative FGSM (Dong et al. 2018): step eps/steps, momentum on L1-normalised gradients."""
    return GradientAttack("mi-fgsm", steps, step_size, random_start, momentum=momentum,
                          default_step="eps/steps", **kw)


def di_fgsm(steps: int = 10, step_size: float | None = None, random_start: bool = False, momentum: float = 1.0,
            diversity: float = 0.5, **kw: Any) -> Attack:
    """M-DI2-FGSM (Xie et al. 2019): MI-FGSM through random resizing and padding, for transfer."""
    return GradientAttack("di-fgsm", steps, step_size, random_start, momentum=momentum, diversity=diversity,
                          default_step="eps/steps", **kw)


def ti_fgsm(steps: int = 10, step_size: float | None = None, random_start: bool = False, momentum: float = 1.0,
            ti_kernel: int = 7, **kw: Any) -> Attack:
    """TI-MI-FGSM (Dong et al. 2019): MI-FGSM on Gaussian-smoothed gradients, for transfer."""
    return GradientAttack("ti-fgsm", steps, step_size, random_start, momentum=momentum, ti_kernel=ti_kernel,
                          default_step="eps/steps", **kw)


def cw(steps: int = 20, step_size: float | None = None, random_start: bool = True, kappa: float = 0.0,
       **kw: Any) -> Attack:
    """PGD on a Carlini-Wagner margin loss clipped at kappa (as in AutoAttack's PGD-CW)."""
    return GradientAttack("cw", steps, step_size, random_start, loss="cw", kappa=kappa, **kw)
