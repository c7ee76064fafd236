"""The attack interface, budgets, results and the attack registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal

import torch

from facesec.attacks.objectives import Criterion
from facesec.errors import ConfigError
from facesec.plugins import ATTACKS

Norm = Literal["linf", "l2"]


@dataclass(frozen=True)
class Budget:
    """Perturbation bound in [0, 1] pixel units."""

    norm: Norm
    eps: float


@dataclass
class AttackOutput:
    """Adversarial images (same shape as the input) and the model queries spent per sample."""

    x_adv: torch.Tensor
    queries: torch.Tensor


class Attack(ABC):
    """An attack makes adversarial versions of aligned faces against an objective within a budget."""

    name: str = "attack"
    supports_universal: bool = False

    @abstractmethod
    def run(self, x: torch.Tensor, objective: Criterion, budget: Budget,
            generator: torch.Generator) -> AttackOutput:
        """Per-image attack on `x` (N x C x H x W, [0, 1])."""

    def run_universal(self, x: torch.Tensor, objective: Criterion, budget: Budget,
                      generator: torch.Generator) -> torch.Tensor:
        """One perturbation (1 x C x H x W) for all of `x`."""
        raise ConfigError(f"attack '{self.name}' has no universal mode; use library: native")




def create(library: str, method: str, **params: Any) -> Attack:
    """Build the attack `library/method` (e.g. native/pgd, torchattacks/pgd, art/pgd) from the registry."""
    key = f"{library}/{method}"
    if key not in ATTACKS:
        raise ConfigError(f"no attack '{method}' in library '{library}'; available: {', '.join(ATTACKS.names())}")
    attack = ATTACKS.load(key)(**params)
    if not isinstance(attack, Attack):
        raise ConfigError(f"attack {key} from an installed package built a {type(attack).__name__}, not a "
                          "facesec.attacks.Attack")
    return attack
