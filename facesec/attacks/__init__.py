"""Attacks behind one interface; `create(library, method, **params)` builds one from the registry
(facesec.plugins.ATTACKS: built-ins, and installed ones through the `facesec.attacks` entry points)."""

from facesec.attacks.base import Attack, AttackOutput, Budget, create
from facesec.attacks.objectives import Criterion, Ensemble, Expectation, Objective

__all__ = ["Attack", "AttackOutput", "Budget", "Criterion", "Ensemble", "Expectation", "Objective", "create"]
