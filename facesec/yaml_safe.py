"""Threat-model YAML read safely: a SafeLoader that also refuses aliases, duplicate keys and deep nesting, files
over 1 MB, and `--set` values read by the same rules; every problem one ConfigError line naming the file."""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml

from facesec.errors import ConfigError

MAX_DOCUMENT_BYTES = 1 << 20
MAX_DEPTH = 32
"""Nesting deeper than this is refused while composing (a threat model is a few levels deep)."""


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    parsed = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected path.to.key=value")
        if len(raw) > MAX_DOCUMENT_BYTES:
            raise ConfigError(f"--set {key.strip()}: value longer than {MAX_DOCUMENT_BYTES:,} characters")
        try:  # the threat-model loader's limits: no aliases, bounded nesting
            value = yaml.load(raw, Loader=_ThreatModelLoader) if raw.strip() else ""  # noqa: S506 - a SafeLoader
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or exc.__class__.__name__
            raise ConfigError(f"--set {key.strip()}: value is not plain YAML ({problem})") from exc
        parsed.append((key.strip(), value))
    return parsed


class _ThreatModelLoader(yaml.SafeLoader):
    """`yaml.safe_load` plus: no aliases (a few lines of them expand to gigabytes), no duplicate keys (the
    later one would silently win), and bounded nesting (deep brackets exhaust the stack)."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed; write the value out",
                                              event.start_mark)  # type: ignore[arg-type]
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                                  event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key) if isinstance(key, Hashable) else None
        return super().construct_mapping(node, deep)


def read_document(path: str | Path) -> dict[str, Any]:
    """The YAML mapping in `path`; ConfigError (one line, file and place) for anything else."""
    source = str(path)
    try:
        with Path(path).open("rb") as fh:
            raw = fh.read(MAX_DOCUMENT_BYTES + 1)
        if len(raw) > MAX_DOCUMENT_BYTES:
            raise ConfigError(f"{source}: larger than {MAX_DOCUMENT_BYTES:,} bytes; not a threat model")
        text = raw.decode("utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{source}: file not found") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{source}: is a folder; name the threat-model files in it (for example "
                          f"{source.rstrip('/')}/*.yaml)") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read as UTF-8 text ({exc.__class__.__name__})") from exc
    try:
        doc = yaml.load(text, Loader=_ThreatModelLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        where = f":{mark.line + 1}" if mark else ""
        if str(exc.problem).startswith("duplicate key"):
            raise ConfigError(f"{source}{where}: {exc.problem}; keep one") from exc
        raise ConfigError(f"{source}{where}: YAML tag not allowed ({exc.problem}); "
                          "threat models are plain YAML (no !!python tags)") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}{where}: YAML syntax error: {problem}") from exc
    if doc is None:
        raise ConfigError(f"{source}: empty file; a threat model needs at least 'name' "
                          "(`facesec schema` lists the fields)")
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: top level must be a mapping of fields (name, target, data, ...), "
                          f"got a {type(doc).__name__}")
    return doc
