"""torchattacks' PGD, PGD-L2, FGSM and MI-FGSM against facesec objectives."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from facesec.attacks.adapters.heads import LogitsHead, tasks
from facesec.attacks.base import Attack, AttackOutput, Budget
from facesec.attacks.objectives import Criterion
from facesec.errors import ConfigError


class TorchattacksAttack(Attack):
    """Wraps one torchattacks class; torchattacks draws its random start from torch's global RNG."""

    def __init__(self, method: str, steps: int = 20, step_size: float | None = None, random_start: bool = True,
                 **params: Any) -> None:
        self.name = f"torchattacks/{method}"
        self.method, self.steps, self.step_size, self.random_start, self.params = (
            method, steps, step_size, random_start, params)

    def _build(self, head: LogitsHead, budget: Budget) -> Any:
        try:
            import torchattacks
        except ImportError as exc:
            raise ConfigError("library: torchattacks needs the extra: pip install 'facesec[torchattacks]'") from exc
        alpha = self.step_size if self.step_size is not None else 2.5 * budget.eps / max(self.steps, 1)
        if self.method == "pgd":
            cls = torchattacks.PGD if budget.norm == "linf" else torchattacks.PGDL2
            return cls(head, eps=budget.eps, alpha=alpha, steps=self.steps, random_start=self.random_start)
        if budget.norm != "linf":
            raise ConfigError(f"torchattacks/{self.method} supports only norm: linf")
        if self.method == "fgsm":
            return torchattacks.FGSM(head, eps=budget.eps)
        if self.method == "mi-fgsm":
            step = self.step_size if self.step_size is not None else budget.eps / max(self.steps, 1)
            return torchattacks.MIFGSM(head, eps=budget.eps, alpha=step, steps=self.steps, **self.params)
        raise ConfigError(f"torchattacks adapter has no method '{self.method}'; use pgd, fgsm or mi-fgsm")

    def run(self, x: torch.Tensor, objective: Criterion, budget: Budget,
            generator: torch.Generator) -> AttackOutput:
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        x_adv = x.clone()
        for task in tasks(objective):
            attack = self._build(task.head, budget)
            if task.targeted:
                attack.set_mode_targeted_by_label(quiet=True)
            x_adv[task.index] = attack(x[task.index], task.labels).detach()
        steps = 1 if self.method == "fgsm" else self.steps
        return AttackOutput(x_adv, torch.full((len(x),), steps + 1, dtype=torch.int64))


def _factory(method: str) -> Callable[..., Attack]:
    """The registry's factory of torchattacks' `method` (facesec.plugins names pgd, fgsm and mi_fgsm)."""
    return lambda **kw: TorchattacksAttack(method, **kw)


pgd, fgsm, mi_fgsm = _factory("pgd"), _factory("fgsm"), _factory("mi-fgsm")
