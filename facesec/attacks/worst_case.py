"""The worst case per face (AutoAttack practice): several attacks, or one attack from several random starts, run in
turn, each after the first only on the faces not yet fooled; each face keeps the result its criterion scores best,
so a later attack never lowers a face's success."""

from __future__ import annotations

import torch

from facesec.attacks.base import Attack, AttackOutput, Budget
from facesec.attacks.objectives import Criterion, Expectation, Objective
from facesec.attacks.query import Oracle, Square

BATCH = 64


@torch.no_grad()
def margins(criterion: Criterion, x: torch.Tensor) -> torch.Tensor:
    """The criterion's margin of each image of `x` (success when the criterion says so)."""
    parts = [criterion.score(x[i:i + BATCH], slice(i, i + BATCH)) for i in range(0, len(x), BATCH)]
    return torch.cat(parts) if parts else torch.zeros(0, device=x.device)


class WorstCase(Attack):
    """`attacks` in turn; per face, the best result any of them reached."""

    def __init__(self, attacks: list[Attack]) -> None:
        self.attacks = attacks
        self.name = "+".join(dict.fromkeys(a.name for a in attacks))

    def run(self, x: torch.Tensor, objective: Criterion, budget: Budget,
            generator: torch.Generator) -> AttackOutput:
        first = _run(self.attacks[0], x, objective, budget, generator)
        x_adv, queries = first.x_adv.detach().clone(), first.queries.clone().float()
        best = margins(objective, x_adv)
        for attack in self.attacks[1:]:
            todo = torch.nonzero(~objective.success(best)).squeeze(1)
            if not len(todo):
                break
            part = objective.subset(todo)
            again = _run(attack, x[todo], part, budget, generator)
            score = margins(part, again.x_adv)
            better = score > best[todo]
            x_adv[todo[better]] = again.x_adv[better].detach()
            best[todo] = torch.maximum(best[todo], score)
            queries[todo.to(queries.device)] += again.queries.float()
        return AttackOutput(x_adv, queries)


def _run(attack: Attack, x: torch.Tensor, objective: Criterion, budget: Budget,
         generator: torch.Generator) -> AttackOutput:
    """A gradient-free score attack (Square) queries the white-box objective as an oracle with its own steps as the
    budget: in an ensemble it checks that gradients are not all the attack had."""
    if isinstance(attack, Square) and not isinstance(objective, Oracle):
        inner = objective.inner if isinstance(objective, Expectation) else objective
        if isinstance(inner, Objective):
            return attack.run(x, Oracle(inner, "scores", attack.steps + 1), budget, generator)
    return attack.run(x, objective, budget, generator)


def restarts(attack: Attack, runs: int) -> WorstCase:
    """`attack` run `runs` times, each from its own random start (the generator moves on between runs)."""
    return WorstCase([attack] * runs)
