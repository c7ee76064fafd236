"""ART's HopSkipJump (Chen et al. 2020) against a decisions-only oracle, one face at a time.

ART sees a two-class black box (goal not reached / reached) whose every prediction is a counted
query for the face being attacked. HopSkipJump starts from an image that already reaches the goal
(impersonation: the target's enrolment face; dodging: ART's random search) and walks towards the
original face along the decision boundary, one iteration per call (`resume`), until the budget
would be passed. The iterate is then projected into the threat model's L-inf ball: success there
is what counts, and the distortion after each iteration is recorded against the queries spent.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from facesec.attacks.base import Attack, AttackOutput, Budget
from facesec.attacks.objectives import Criterion
from facesec.attacks.query import Oracle, QueryBudgetExceeded
from facesec.errors import ConfigError


class HopSkipJumpAttack(Attack):
    """Decision-based, minimal L-inf distortion; `steps` caps HopSkipJump's iterations."""

    name = "hopskipjump"

    def __init__(self, steps: int = 50, max_eval: int = 100, init_eval: int = 20) -> None:
        self.steps, self.max_eval, self.init_eval = steps, max_eval, init_eval
        self.starts: torch.Tensor | None = None
        """Per face, an image that reaches the goal (impersonation: the target's face); None: ART searches."""
        self.trace: list[list[tuple[int, float]]] = []
        """Per face, (queries spent, L-inf distortion) after each completed iteration."""

    def run(self, x: torch.Tensor, objective: Criterion, budget: Budget,
            generator: torch.Generator) -> AttackOutput:
        from art.attacks.evasion import HopSkipJump
        from art.estimators.classification import BlackBoxClassifier

        if not isinstance(objective, Oracle):
            raise ConfigError("hopskipjump is a query attack: use knowledge: {kind: query, output: decisions}")
        np.random.seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))  # ART draws from numpy
        out = x.clone()
        self.trace = []
        for i in range(len(x)):
            def predict(batch: np.ndarray, i: int = i) -> np.ndarray:
                index = torch.full((len(batch),), i, dtype=torch.long)
                reached = objective.decide(torch.from_numpy(batch).to(x), index).cpu().numpy()
                return np.stack([~reached, reached], axis=1).astype(np.float32)

            box = BlackBoxClassifier(predict, tuple(x.shape[1:]), 2, clip_values=(0.0, 1.0))
            hsj = HopSkipJump(box, targeted=True, norm=np.inf, max_iter=1, max_eval=self.max_eval,
                              init_eval=self.init_eval, verbose=False)
            xi = x[i:i + 1].cpu().numpy()
            current = None if self.starts is None else self.starts[i:i + 1].cpu().numpy()
            trace: list[tuple[int, float]] = []
            for it in range(self.steps):
                try:
                    step = hsj.generate(xi, np.array([[0.0, 1.0]], np.float32), x_adv_init=current, resume=it > 0)
                except QueryBudgetExceeded:
                    break
                current = step
                trace.append((int(objective.used[i]), float(np.abs(step - xi).max())))
            self.trace.append(trace)
            if current is not None:
                delta = torch.from_numpy(current).to(x) - x[i:i + 1]
                out[i:i + 1] = (x[i:i + 1] + delta.clamp(-budget.eps, budget.eps)).clamp(0, 1)
        return AttackOutput(out, objective.used.clone())




def hopskipjump(steps: int = 50, step_size: float | None = None, random_start: bool = True, **kw: Any) -> Attack:
    """HopSkipJump through ART, decisions only, L-inf; `steps` caps its iterations."""
    return HopSkipJumpAttack(steps, **kw)
