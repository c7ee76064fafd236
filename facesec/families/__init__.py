"""Attack families as plug-ins: a registry filled by decorators and the `facesec.families` entry points.

`perturbation.kind` selects the family; families in other packages register through the entry-point
group (`name = "package.module:FamilyClass"`), as recognizers do.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from facesec.errors import ConfigError
from facesec.families.base import Family, MetricInfo, RunContext, RunOutput, Supports

ENTRY_POINT_GROUP = "facesec.families"
_REGISTRY: dict[str, type[Family]] = {}
_INSTANCES: dict[str, Family] = {}

__all__ = ["ENTRY_POINT_GROUP", "Family", "MetricInfo", "RunContext", "RunOutput", "Supports", "available", "get",
           "kinds", "register"]


def register(cls: type[Family]) -> type[Family]:
    """Class decorator: make a family selectable by its `name`."""
    _REGISTRY[cls.name] = cls
    return cls


def _builtins() -> None:
    from facesec.families import backdoor, evasion, inversion, morph  # noqa: F401  (registers the built-in families)


def available() -> dict[str, Callable[[], Family]]:
    """Built-in families and those installed packages add through entry points, by kind."""
    _builtins()
    found: dict[str, Callable[[], Family]] = dict(_REGISTRY)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, _lazy(ep))
    return found


def kinds() -> list[str]:
    """Every family's kind: built-ins by their `order`, then installed ones by name (not imported to sort them)."""
    known = available()
    order = {k: (_REGISTRY[k].order, k) if k in _REGISTRY else (1 << 30, k) for k in known}
    return sorted(known, key=order.__getitem__)


def _lazy(ep: Any) -> Callable[[], Family]:
    """Import an installed family only when a threat model selects it."""

    def make() -> Family:
        try:
            family: Family = ep.load()()
        except Exception as exc:  # a broken plug-in is the user's to fix: say which one, no traceback
            raise ConfigError(f"attack family {ep.name!r} ({ep.value}) from an installed package failed to load: "
                              f"{type(exc).__name__}: {exc}") from exc
        return family

    return make


def get(kind: str) -> Family:
    """The family for `perturbation.kind`; ConfigError listing the known kinds."""
    if kind not in _INSTANCES:
        known = available()
        if kind not in known:
            raise ConfigError(f"unknown perturbation kind {kind!r}; known: {', '.join(sorted(known))}")
        family = known[kind]()
        if not isinstance(family, Family):
            raise ConfigError(f"family {kind!r} from an installed package is not a facesec.families.Family")
        _INSTANCES[kind] = family
    return _INSTANCES[kind]
