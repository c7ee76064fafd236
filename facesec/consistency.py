"""Consistency across a suite's runs (Carlini et al. 2019; AutoAttack): on the same people, a larger budget, more
steps or more restarts never make an attack succeed less often, and a white-box attacker never does worse than a
transfer or query one at the same budget. A paired difference that says otherwise beyond its 95% interval is a
validity warning on both runs, naming the other: the gradients the weaker result came from are suspect."""

from __future__ import annotations

import json
from typing import Any

from facesec import gates
from facesec.record import Difference, Results, RunRecord

STRONGER_WHEN_LARGER = {"perturbation.eps": "a larger budget", "attack.steps": "more steps",
                        "attack.restarts": "more restarts"}
"""Settings where a larger value is the stronger attack, and the report's word for each."""


def _knowledge(value: Any) -> str | None:
    return value if isinstance(value, str) else value.get("kind") if isinstance(value, dict) else None


def _stronger_first(d: Difference) -> bool | None:
    """Whether the first run's setting is the stronger attack (None: the setting orders no strength)."""
    a, b = (json.loads(v) for v in d.values)
    if d.setting in STRONGER_WHEN_LARGER and all(isinstance(v, int | float) for v in (a, b)) and a != b:
        return bool(a > b)
    if d.setting == "knowledge":
        kinds = (_knowledge(a), _knowledge(b))
        if kinds.count("white-box") == 1:
            return kinds[0] == "white-box"
    return None


def warning(d: Difference) -> str | None:
    """The warning a pair of runs earns when the stronger attack succeeds less often beyond the interval."""
    first = _stronger_first(d)
    if first is None:
        return None
    low, high = d.ci95_cluster
    short_low, short_high = (-high, -low) if first else (low, high)  # weaker minus stronger
    if short_low <= 0:
        return None
    strong, weak = (d.first, d.second) if first else (d.second, d.first)
    what = STRONGER_WHEN_LARGER.get(d.setting, "white-box")
    return (f"gradient masking suspected: {strong} ({what}: the stronger attack) succeeds less often than "
            f"{weak} on the same attempts, by {-d.difference if first else d.difference:.2f} (95% interval "
            f"{short_low:.2f} to {short_high:.2f})")


def flag(results: Results) -> None:
    """Add each inconsistent pair's warning to both runs, and judge their gates on validity again."""
    by_name = {r.name: r for r in results.runs}
    touched: set[str] = set()
    for d in results.differences:
        text = warning(d)
        if text is None:
            continue
        for name in (d.first, d.second):
            record = by_name.get(name)
            if record is not None and record.validity is not None and text not in record.validity.flags:
                record.validity.flag(text)
                touched.add(name)
    for name in touched:
        _rejudge(by_name[name])


def _rejudge(record: RunRecord) -> None:
    """Gates on a validity entry judged again after the suite added a warning."""
    judged: list[Any] = []
    for gate in record.gates:
        if gate.difference is None and gate.metric.startswith("validity."):
            spec = {"metric": gate.metric, "op": gate.op, "value": gate.value, "bound": gate.bound}
            judged += gates.judge([spec], record)
        else:
            judged.append(gate)
    record.gates = judged
