"""The matrix: a list where a threat model takes one value (`goal: [dodging, impersonation]`, `eps: [2/255,
8/255]`) means one run per combination. The core's dimensions expand; a family names its own fields
(`Family.expandable`)."""

from __future__ import annotations

import copy
import itertools
import json
import math
from pathlib import Path
from typing import Any

from facesec import families
from facesec.errors import ConfigError

MAX_RUNS = 1000
"""A matrix expanding to more runs is refused unless the limit is raised (`--max-runs`)."""
CORE_EXPANDABLE = ("target", "goal", "capability", "knowledge", "defence", "setting.fmr", "attack.steps",
                   "attack.method", "attack.library", "attack.restarts", "data.seed")
"""Fields outside `perturbation` where a list means 'one run per value'."""


def expandable(doc: dict[str, Any]) -> tuple[str, ...]:
    """The dotted fields of `doc` where a list expands: the core's, then its family's (`perturbation.<field>`)."""
    section = doc.get("perturbation")
    kind = section.get("kind", "pixel") if isinstance(section, dict) else None
    own = families.get(kind).expandable if isinstance(kind, str) and kind in families.kinds() else ()
    return CORE_EXPANDABLE[:5] + tuple(f"perturbation.{f}" for f in own) + CORE_EXPANDABLE[5:]


def _get(doc: dict[str, Any], path: str) -> Any:
    node: Any = doc
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path; numeric parts index lists (gates.0.value). A single value on the way is replaced by a
    mapping (`setting.calibration.identities=100` where the file says `calibration: in-sample`)."""
    keys = path.split(".")
    node: Any = doc
    for i, key in enumerate(keys):
        is_last = i == len(keys) - 1
        if isinstance(node, list) and key.isdigit() and int(key) < len(node):
            if is_last:
                node[int(key)] = value
            else:
                node = node[int(key)]
        elif isinstance(node, dict):
            if is_last:
                node[key] = value
            else:
                if not isinstance(node.get(key), dict | list):
                    node[key] = {}
                node = node[key]
        else:
            raise ConfigError(f"--set {path}: cannot reach '{key}' (not a mapping, or no such list item)")


def _label(value: Any) -> str:
    """A short name for one value of a matrix axis: mappings by their kind and the models they name."""
    if not isinstance(value, dict):
        return str(value)
    if "weights" in value:  # a recognizer: its name and weights file
        return f"{value.get('name', '?')}:{Path(str(value['weights'])).name}"
    if "name" in value and "kind" not in value:  # a defence: its name and parameters
        nested = value.get("params")
        params: dict[str, Any] = nested if isinstance(nested, dict) else value
        inner = ",".join(f"{k}={v}" for k, v in sorted(params.items()) if k not in ("name", "eot_samples", "params"))
        return f"{value['name']}({inner})" if inner else str(value["name"])
    models = [m if isinstance(m, str) else Path(str(m.get("weights") or m.get("name", "?"))).name
              for m in value.get("surrogates", [])]
    return "+".join([str(value.get("kind", "?"))] + models) if models else str(value.get("kind", value))


def expand(doc: dict[str, Any], max_runs: int = MAX_RUNS) -> list[dict[str, Any]]:
    """One document per combination of the list-valued expandable fields; names get a suffix. The number
    of runs is checked before anything is expanded."""
    axes = [(p, v) for p in expandable(doc) if isinstance(v := _get(doc, p), list)]
    for path, values in axes:
        if not values:
            raise ConfigError(f"field '{path}': empty list; give at least one value")
    total = math.prod(len(values) for _, values in axes)
    if total > max_runs:
        raise ConfigError(f"the matrix expands to {total:,} runs, more than the limit of {max_runs:,}; shorten its "
                          "lists or raise the limit with --max-runs")
    for path, values in axes:  # each list is at most max_runs long here
        seen: set[str] = set()
        for value in values:
            text = json.dumps(value, sort_keys=True, default=str)
            if text in seen:
                raise ConfigError(f"field '{path}': {_label(value)} is listed twice; give each value once")
            seen.add(text)
    if not axes:
        return [doc]
    runs = []
    for combo in itertools.product(*(values for _, values in axes)):
        run = copy.deepcopy(doc)
        for (path, _), value in zip(axes, combo, strict=True):
            set_path(run, path, value)
        suffix = ",".join(f"{path.split('.')[-1]}={_label(v)}" for (path, _), v in zip(axes, combo, strict=True))
        run["name"] = f"{doc.get('name', '')}[{suffix}]"
        runs.append(run)
    names = [r["name"] for r in runs]
    if len(set(names)) < len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise ConfigError(f"two runs of the matrix would both be named {twice}: two values of a list differ only "
                          "where a run's name does not show it (such as eot_samples, or weights files of the same "
                          "name); give them apart in separate files")
    return runs
