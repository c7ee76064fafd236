"""Restarts (AutoAttack practice): an attack run again, each time from its own random start, on the faces it has
not yet fooled; each face keeps the result its criterion scores best, so a restart never lowers its success."""

from __future__ import annotations

import torch

from facesec.attacks.base import Attack, AttackOutput, Budget
from facesec.attacks.objectives import Criterion

BATCH = 64


@torch.no_grad()
def margins(criterion: Criterion, x: torch.Tensor) -> torch.Tensor:
    """The criterion's margin of each image of `x` (success when the criterion says so)."""
    parts = [criterion.score(x[i:i + BATCH], slice(i, i + BATCH)) for i in range(0, len(x), BATCH)]
    return torch.cat(parts) if parts else torch.zeros(0, device=x.device)


class Restarts(Attack):
    """`inner` run `runs` times in all; later runs attack only the faces still unfooled."""

    def __init__(self, inner: Attack, runs: int) -> None:
        self.inner, self.runs = inner, runs
        self.name = inner.name
        self.supports_universal = inner.supports_universal

    def run(self, x: torch.Tensor, objective: Criterion, budget: Budget,
            generator: torch.Generator) -> AttackOutput:
        first = self.inner.run(x, objective, budget, generator)
        x_adv, queries = first.x_adv.detach().clone(), first.queries.clone()
        best = margins(objective, x_adv)
        for _ in range(self.runs - 1):
            todo = torch.nonzero(~objective.success(best)).squeeze(1)
            if not len(todo):
                break
            part = objective.subset(todo)
            again = self.inner.run(x[todo], part, budget, generator)
            score = margins(part, again.x_adv)
            better = score > best[todo]
            x_adv[todo[better]] = again.x_adv[better].detach()
            best[todo] = torch.maximum(best[todo], score)
            queries[todo.to(queries.device)] += again.queries
        return AttackOutput(x_adv, queries)

    def run_universal(self, x: torch.Tensor, objective: Criterion, budget: Budget,
                      generator: torch.Generator) -> torch.Tensor:
        return self.inner.run_universal(x, objective, budget, generator)
