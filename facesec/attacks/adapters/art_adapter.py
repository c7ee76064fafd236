"""ART's evasion attacks (PGD, FGSM, MI-FGSM) against facesec objectives via PyTorchClassifier."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from facesec.attacks.adapters.heads import LogitsHead, tasks
from facesec.attacks.base import Attack, AttackOutput, Budget
from facesec.attacks.objectives import Criterion
from facesec.errors import ConfigError


class ArtAttack(Attack):
    """Wraps one ART evasion attack; arrays cross to numpy float32 and back."""

    def __init__(self, method: str, steps: int = 20, step_size: float | None = None, random_start: bool = True,
                 batch_size: int = 64, **params: Any) -> None:
        self.name = f"art/{method}"
        self.method, self.steps, self.step_size, self.random_start = method, steps, step_size, random_start
        self.batch_size, self.params = batch_size, params

    def _build(self, head: LogitsHead, budget: Budget, targeted: bool, x: torch.Tensor) -> Any:
        try:
            from art.attacks.evasion import (
                FastGradientMethod,
                MomentumIterativeMethod,
                ProjectedGradientDescentPyTorch,
            )
            from art.estimators.classification import PyTorchClassifier
        except ImportError as exc:
            raise ConfigError("library: art needs the extra: pip install 'facesec[art]'") from exc
        classifier = PyTorchClassifier(
            model=head, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
            nb_classes=head.n_classes, clip_values=(0.0, 1.0),
            device_type="gpu" if x.device.type == "cuda" else "cpu")
        norm = np.inf if budget.norm == "linf" else 2
        common = {"norm": norm, "eps": budget.eps, "targeted": targeted, "batch_size": self.batch_size}
        if self.method == "pgd":
            alpha = self.step_size if self.step_size is not None else 2.5 * budget.eps / max(self.steps, 1)
            return ProjectedGradientDescentPyTorch(
                classifier, eps_step=alpha, max_iter=self.steps, num_random_init=1 if self.random_start else 0,
                verbose=False, **common, **self.params)
        if self.method == "fgsm":
            return FastGradientMethod(classifier, eps_step=budget.eps, **common, **self.params)
        if self.method == "mi-fgsm":
            step = self.step_size if self.step_size is not None else budget.eps / max(self.steps, 1)
            return MomentumIterativeMethod(classifier, eps_step=step, max_iter=self.steps, verbose=False,
                                           **common, **self.params)
        raise ConfigError(f"ART adapter has no method '{self.method}'; use pgd, fgsm or mi-fgsm")

    def run(self, x: torch.Tensor, objective: Criterion, budget: Budget,
            generator: torch.Generator) -> AttackOutput:
        np.random.seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        x_adv = x.clone()
        for task in tasks(objective):
            attack = self._build(task.head, budget, task.targeted, x)
            onehot = np.eye(task.head.n_classes, dtype=np.float32)[task.labels.cpu().numpy()]
            out = attack.generate(x=x[task.index].detach().cpu().numpy().astype(np.float32), y=onehot)
            x_adv[task.index] = torch.from_numpy(np.asarray(out, dtype=np.float32)).to(x.device)
        steps = 1 if self.method == "fgsm" else self.steps
        return AttackOutput(x_adv, torch.full((len(x),), steps + 1, dtype=torch.int64))


def _factory(method: str) -> Callable[..., Attack]:
    """The registry's factory of ART's `method` (facesec.plugins names pgd, fgsm and mi_fgsm)."""
    return lambda **kw: ArtAttack(method, **kw)


pgd, fgsm, mi_fgsm = _factory("pgd"), _factory("fgsm"), _factory("mi-fgsm")
