"""Query-only attacks: the target answers with scores or decisions, and every query is counted.

`Oracle` is the target as an attacker outside sees it. It counts each image sent, per sample, and
refuses (QueryBudgetExceeded) the query that would pass the threat model's budget, so no attack
can spend more than it is allowed. `Square` is the score-based Square Attack (Andriushchenko et
al. 2020, L-inf): random square patches of +-eps, kept when the score improves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from facesec.attacks.base import Attack, AttackOutput, Budget
from facesec.attacks.objectives import Criterion, Objective
from facesec.errors import ConfigError, FacesecError

Output = Literal["scores", "decisions"]


class QueryBudgetExceeded(FacesecError):
    """An attack asked the oracle for more queries than the threat model allows."""


@dataclass
class Oracle:
    """The target behind an API: `score` (margins) only when it exposes scores, `decide` always."""

    objective: Objective
    output: Output
    budget: int
    used: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.int64))
    """Queries spent so far, per sample of the objective."""

    def __post_init__(self) -> None:
        if len(self.used) == 0:
            self.used = torch.zeros(len(self.objective.labels), dtype=torch.int64)

    def _spend(self, index: torch.Tensor | slice) -> None:
        ids = torch.arange(len(self.used))[index.cpu() if isinstance(index, torch.Tensor) else index]
        counts = torch.bincount(ids, minlength=len(self.used))  # a sample may appear many times in one batch
        if (self.used + counts > self.budget).any():
            raise QueryBudgetExceeded(f"query budget of {self.budget} per sample exhausted")
        self.used += counts

    @torch.no_grad()
    def score(self, x: torch.Tensor, index: torch.Tensor | slice,
              autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
        """The objective's margin of each image (what a score-returning API lets one compute); one query each."""
        if self.output != "scores":
            raise ConfigError("this target returns decisions only: use a decision-based attack (hopskipjump)")
        self._spend(index)
        return self.objective.score(x, index)

    @torch.no_grad()
    def decide(self, x: torch.Tensor, index: torch.Tensor | slice) -> torch.Tensor:
        """Whether each image achieves the goal (accept/reject or top-1 identity); one query each."""
        self._spend(index)
        return self.objective.success(self.objective.score(x, index))

    def success(self, margin: torch.Tensor) -> torch.Tensor:
        return self.objective.success(margin)

    def subset(self, index: torch.Tensor) -> Oracle:
        return Oracle(self.objective.subset(index), self.output, self.budget)


class Square(Attack):
    """Score-based Square Attack in L-inf: one query per iteration per sample still failing."""

    name = "square"

    def __init__(self, steps: int = 1000, p_init: float = 0.05, batch_size: int = 64) -> None:
        self.steps = steps
        self.p_init = p_init
        self.batch_size = batch_size

    def _side(self, it: int, size: int) -> int:
        """The square's side: p_init's share of the image, halved at the paper's iteration marks."""
        p = self.p_init
        for mark in (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000):
            if it > mark * self.steps / 10000:
                p /= 2
        return max(1, min(size, round(math.sqrt(p * size * size))))

    def run(self, x: torch.Tensor, objective: Criterion, budget: Budget,
            generator: torch.Generator) -> AttackOutput:
        if not isinstance(objective, Oracle):
            raise ConfigError("square is a query attack: use knowledge: {kind: query, output: scores}")
        if budget.norm != "linf":
            raise ConfigError("square is implemented for L-inf budgets (perturbation.norm: linf)")
        out = torch.empty_like(x)
        for start in range(0, len(x), self.batch_size):
            idx = torch.arange(start, min(start + self.batch_size, len(x)))
            out[idx] = self._batch(x[idx], idx, objective, budget.eps, generator)
        return AttackOutput(out, objective.used.clone())

    def _batch(self, x: torch.Tensor, idx: torch.Tensor, oracle: Oracle, eps: float,
               generator: torch.Generator) -> torch.Tensor:
        n, c, h, w = x.shape
        stripes = (torch.randint(0, 2, (n, c, 1, w), generator=generator).float() * 2 - 1) * eps
        best = (x + stripes.to(x)).clamp(0, 1)
        margin = oracle.score(best, idx).cpu()
        for it in range(self.steps - 1):
            active = ~oracle.success(margin)
            if not active.any() or (oracle.used[idx[active]] >= oracle.budget).all():
                break
            active &= oracle.used[idx] < oracle.budget
            rows = torch.nonzero(active).squeeze(1)
            s = self._side(it, h)
            top, left = (int(v) for v in torch.randint(0, h - s + 1, (2,), generator=generator))
            signs = (torch.randint(0, 2, (len(rows), c, 1, 1), generator=generator).float() * 2 - 1) * eps
            cand = best[rows].clone()
            window = x[rows, :, top:top + s, left:left + s]
            cand[:, :, top:top + s, left:left + s] = (window + signs.to(x)).clamp(0, 1)
            m = oracle.score(cand, idx[rows]).cpu()
            better = m > margin[rows]
            best[rows[better]] = cand[better]
            margin[rows[better]] = m[better]
        return best




def square(steps: int = 1000, step_size: float | None = None, random_start: bool = True, **kw: Any) -> Attack:
    """Square Attack (Andriushchenko et al. 2020): score-based, L-inf; `steps` caps its queries."""
    return Square(steps, **kw)

