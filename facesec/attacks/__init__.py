"""Attack families behind one interface; `create(library, method, **params)` builds one."""

from facesec.attacks import pixel as _pixel  # noqa: F401  (registers native attacks)
from facesec.attacks import query as _query  # noqa: F401
from facesec.attacks.adapters import art_adapter as _art  # noqa: F401
from facesec.attacks.adapters import art_query as _art_query  # noqa: F401
from facesec.attacks.adapters import torchattacks_adapter as _ta  # noqa: F401
from facesec.attacks.base import Attack, AttackOutput, Budget, available, create, params_model
from facesec.attacks.objectives import Criterion, Ensemble, Objective

__all__ = ["Attack", "AttackOutput", "Budget", "Criterion", "Ensemble", "Objective", "available", "create",
           "params_model"]
