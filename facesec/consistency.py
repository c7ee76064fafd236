"""Consistency across a suite's runs (Carlini et al. 2019; AutoAttack): on the same people, a larger budget, more
steps, restarts or EOT draws, or an ensemble never make an attack succeed less often, and a white-box attacker
never does worse than a transfer or query one at the same budget. A paired difference that says otherwise beyond
its 95% interval is a validity warning on both runs, naming the other: the gradients the weaker result came from
are suspect."""

from __future__ import annotations

from typing import Any

from facesec import gates
from facesec.record import Difference, Results, RunRecord

STRONGER_WHEN_LARGER = {"perturbation.eps": "a larger budget", "attack.steps": "more steps",
                        "attack.restarts": "more restarts", "defence.eot_samples": "more EOT draws"}
"""Settings where a larger value is the stronger attack, and the report's word for each."""


WARNING = "gradient masking suspected: "
MARK = "the stronger attack"
"""Words every warning of this module holds, so a resumed suite can drop the old ones before judging again."""


def _setting(record: RunRecord, path: str) -> Any:
    value: Any = record.threat_model
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _knowledge(value: Any) -> str | None:
    return value if isinstance(value, str) else value.get("kind") if isinstance(value, dict) else None


def _stronger_first(d: Difference, first: RunRecord, second: RunRecord) -> bool | None:
    """Whether the first run's setting is the stronger attack (None: the setting orders no strength)."""
    a, b = _setting(first, d.setting), _setting(second, d.setting)
    if d.setting in STRONGER_WHEN_LARGER:
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
        return bool(a > b) if numbers and a != b else None
    if d.setting == "knowledge":
        kinds = (_knowledge(a), _knowledge(b))
        if kinds.count("white-box") == 1:
            return kinds[0] == "white-box"
    if d.setting == "attack.ensemble" and bool(a) != bool(b):  # the per-face worst case over more attacks
        return bool(a)
    return None


def warning(d: Difference, first: RunRecord, second: RunRecord) -> str | None:
    """The warning a pair of runs earns when the stronger attack succeeds less often beyond the interval."""
    stronger_first = _stronger_first(d, first, second)
    if stronger_first is None:
        return None
    low, high = d.ci95_cluster
    short_low, short_high = (-high, -low) if stronger_first else (low, high)  # weaker minus stronger
    if short_low <= 0:
        return None
    strong, weak = (d.first, d.second) if stronger_first else (d.second, d.first)
    what = STRONGER_WHEN_LARGER.get(d.setting, "an ensemble" if d.setting == "attack.ensemble" else "white-box")
    return (f"{WARNING}{strong} ({what}: {MARK}) succeeds less often than {weak} on the same attempts, by "
            f"{-d.difference if stronger_first else d.difference:.2f} (95% interval {short_low:.2f} to "
            f"{short_high:.2f})")


def flag(results: Results) -> None:
    """Add each inconsistent pair's warning to both runs, and judge their gates on validity again."""
    by_name = {r.name: r for r in results.runs}
    touched: set[str] = set()
    for record in results.runs:  # a resumed record may carry the warnings of an earlier suite: judged anew below
        if record.validity is not None and any(_ours(f) for f in record.validity.flags):
            record.validity.flags = [f for f in record.validity.flags if not _ours(f)]
            record.validity.n_flags = len(record.validity.flags)
            touched.add(record.name)
    for d in results.differences:
        first, second = by_name.get(d.first), by_name.get(d.second)
        text = None if first is None or second is None else warning(d, first, second)
        if text is None:
            continue
        for run in (first, second):
            if run is not None and run.validity is not None and text not in run.validity.flags:
                run.validity.flag(text)
                touched.add(run.name)
    for name in touched:
        _rejudge(by_name[name])


def _ours(text: str) -> bool:
    return text.startswith(WARNING) and f": {MARK})" in text


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
