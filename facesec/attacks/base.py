"""The attack interface, budgets, results and the attack registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import BaseModel

from facesec.attacks.objectives import Criterion
from facesec.errors import ConfigError
from facesec.fields import Strict

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


class NoParams(Strict):
    """An attack that takes no `attack.params`."""


AttackFactory = Callable[..., Attack]
_REGISTRY: dict[str, AttackFactory] = {}
_PARAMS: dict[str, type[BaseModel]] = {}


def register(name: str, params: type[BaseModel] = NoParams) -> Callable[[AttackFactory], AttackFactory]:
    """Decorator: make an attack factory available as `name` (library/method); `params` types the
    `attack.params` it takes, so a wrong one fails in `validate` rather than mid-run."""

    def deco(factory: AttackFactory) -> AttackFactory:
        _REGISTRY[name] = factory
        _PARAMS[name] = params
        return factory

    return deco


def params_model(library: str, method: str) -> type[BaseModel]:
    """The pydantic model of `attack.params` for `library/method` (NoParams when none is registered)."""
    return _PARAMS.get(f"{library}/{method}", NoParams)


def available() -> list[str]:
    return sorted(_REGISTRY)


def create(library: str, method: str, **params: Any) -> Attack:
    """Build the attack `library/method` (e.g. native/pgd, torchattacks/pgd, art/pgd)."""
    key = f"{library}/{method}"
    if key not in _REGISTRY:
        raise ConfigError(f"no attack '{method}' in library '{library}'; available: {', '.join(available())}")
    return _REGISTRY[key](**params)
