"""Attack families as plug-ins: `perturbation.kind` selects one from the registry (facesec.plugins.FAMILIES:
the built-ins, and families other packages install through the `facesec.families` entry points)."""

from __future__ import annotations

from facesec.errors import ConfigError
from facesec.families.base import Family, MetricInfo, RunContext, RunOutput, Supports
from facesec.plugins import FAMILIES

_INSTANCES: dict[str, Family] = {}

__all__ = ["Family", "MetricInfo", "RunContext", "RunOutput", "Supports", "get", "kinds", "register"]


def register(cls: type[Family]) -> type[Family]:
    """Make a family class selectable by its `name` while the program runs (installed packages use the
    `facesec.families` entry-point group instead)."""
    _INSTANCES.pop(cls.name, None)
    return FAMILIES.add(cls.name, cls)


def kinds() -> list[str]:
    """Every family's kind, by the families' `order` (ties by name); an installed family comes last, unloaded."""
    names = FAMILIES.names()
    order = {n: FAMILIES.load(n).order for n in names if FAMILIES.declared(n)}
    return sorted(names, key=lambda n: (order.get(n, 1 << 30), n))


def get(kind: str) -> Family:
    """The family for `perturbation.kind`; ConfigError listing the known kinds."""
    if kind not in _INSTANCES:
        if kind not in FAMILIES:
            raise ConfigError(f"unknown perturbation kind {kind!r}; known: {', '.join(kinds())}")
        cls = FAMILIES.load(kind)
        family = cls() if isinstance(cls, type) else None
        if not isinstance(family, Family):
            raise ConfigError(f"family {kind!r} from an installed package is not a facesec.families.Family")
        _INSTANCES[kind] = family
    return _INSTANCES[kind]
