"""One registry shape for what facesec loads by name (recognizers, attacks, attack families): built-in entries
declared as `module:attribute` with their metadata, installed ones found through an entry-point group, and
ones a program adds while it runs. Listing names and reading metadata import nothing, so `facesec validate`
and `facesec list` stay fast; the module behind an entry is imported when it is first loaded."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from facesec.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """Where a registered thing lives (`package.module:attribute`, or the object itself) and what it declares."""

    target: str | object
    meta: Mapping[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Names -> entries of one kind; `load(name)` imports and returns the entry's object."""

    def __init__(self, what: str, group: str, builtins: Mapping[str, Entry]) -> None:
        self.what, self.group = what, group
        self._entries: dict[str, Entry] = dict(builtins)
        self._loaded: dict[str, T] = {}

    def add(self, name: str, obj: T, **meta: Any) -> T:
        """Register `obj` under `name` while the program runs (replacing any entry of that name)."""
        self._entries[name] = Entry(obj, meta)
        self._loaded.pop(name, None)
        return obj

    def names(self) -> list[str]:
        """Built-in, added and installed names, sorted; nothing is imported."""
        return sorted(self._entries.keys() | {ep.name for ep in entry_points(group=self.group)})

    def __contains__(self, name: object) -> bool:
        """Declared names answer without a look at the installed packages (each look takes milliseconds)."""
        return isinstance(name, str) and (name in self._entries
                                          or any(ep.name == name for ep in entry_points(group=self.group)))

    def declared(self, name: str) -> bool:
        """Whether `name` is built in or was added (not only installed through an entry point)."""
        return name in self._entries

    def meta(self, name: str) -> Mapping[str, Any]:
        """What the entry declares (empty for an installed one: its metadata is its object's)."""
        entry = self._entries.get(name)
        return entry.meta if entry is not None else {}

    def load(self, name: str) -> T:
        """The object behind `name`; ConfigError naming the known ones, or the package that failed to load.
        Declared entries are kept once loaded; an installed one is asked for each time (Python keeps its module),
        so a package installed or removed while the program runs is seen."""
        if name in self._loaded:
            return self._loaded[name]
        found = self._import(name)
        if name in self._entries:
            self._loaded[name] = found
        return found

    def _import(self, name: str) -> T:
        entry = self._entries.get(name)
        if entry is not None:
            if not isinstance(entry.target, str):
                return entry.target  # type: ignore[return-value]
            found: T = resolve(entry.target)
            return found
        for ep in entry_points(group=self.group):
            if ep.name == name:
                try:
                    return ep.load()
                except Exception as exc:  # a broken plug-in is the user's to fix: say which, no traceback
                    raise ConfigError(f"{self.what} {name!r} ({ep.value}) from an installed package failed to "
                                      f"load: {type(exc).__name__}: {exc}") from exc
        raise ConfigError(f"unknown {self.what} {name!r}; known: {', '.join(self.names())}")


def resolve(target: str) -> Any:
    """The object a `module:attribute` string names, its module imported now (and kept by Python)."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
