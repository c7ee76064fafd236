"""Threat-model files loaded: read safely, `--set` overrides applied, the matrix expanded, each run validated;
any problem is one ConfigError line naming the file and the field."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from facesec.errors import ConfigError
from facesec.fields import SpecError
from facesec.matrix import MAX_RUNS, expand, set_path
from facesec.threat_model import ThreatModel
from facesec.yaml_safe import parse_overrides, read_document

_UNION_TAGS = ("open-set", "closed-set", "white-box", "transfer", "query")
"""Discriminator values pydantic puts in error locations; the YAML has no such level (nor has it the union
members' labels, `function-after[...]`, `literal[...]`, also left out)."""


def touched(overrides: Sequence[str], *fields: str) -> str | None:
    """The key of the last `--set` that touched one of `fields` (the field, a section above it or a key inside
    it), None when the file gave them all."""
    for item in reversed(overrides):  # the last --set of a key is the one applied
        key = item.partition("=")[0].strip()
        if any(f and (key == f or f.startswith(f"{key}.") or key.startswith(f"{f}.")) for f in fields):
            return key
    return None


def blame(source: str, overrides: Sequence[str], *fields: str) -> str:
    """Who gave `fields`: the `--set` that touched one, else the file `source`; an error names the place a user
    must fix."""
    key = touched(overrides, *fields)
    return source if key is None else f"--set {key} (on {source})"


def _describe_error(source: str, err: ErrorDetails, overrides: Sequence[str]) -> str:
    inner = err.get("ctx", {}).get("error")
    if isinstance(inner, SpecError) and inner.errors:  # a section's own error, under the section's place
        first = inner.errors[0]
        return _describe_error(source, {**first, "loc": (*inner.at, *first["loc"])}, overrides)
    loc = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and (p in _UNION_TAGS or "[" in p)))
    named = re.search(r"field '([^']+)'", err["msg"]) if not loc else None  # a check across fields names its field
    source = blame(source, overrides, named.group(1) if named else loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        return (f"{source}: field '{loc}': unknown key; remove it or check its spelling "
                "(`facesec schema` lists the keys)")
    given = err.get("input")
    if not loc:  # a check across fields: its message names them
        return f"{source}: {err['msg'].removeprefix('Value error, ')}"
    shown = "" if kind == "missing" else f" (got {given!r})"
    return f"{source}: field '{loc}': {err['msg'].removeprefix('Value error, ')}{shown}"


def load_threat_models(path: str | Path, overrides: list[str] | None = None,
                       max_runs: int = MAX_RUNS) -> list[ThreatModel]:
    """Validated threat models of one file: its matrix expanded, `--set path=value` applied first."""
    doc = read_document(path)
    for key, value in parse_overrides(overrides or []):
        set_path(doc, key, value)
    models = []
    try:
        runs = expand(doc, max_runs)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    for run in runs:
        try:
            models.append(ThreatModel.model_validate(run))
        except ValidationError as exc:
            raise ConfigError(_describe_error(str(path), exc.errors()[0], overrides or [])) from exc
    return models
