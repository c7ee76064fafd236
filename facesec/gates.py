"""Gates over results.json: per-run conditions, regression against a baseline, JUnit XML, exit codes.

Reads results only (docs/results-schema.md); never imports the engine.
"""

from __future__ import annotations

import math
import operator
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

from facesec.errors import ConfigError

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_BAD_INPUT = 2

_TOLERANCE = 1e-9
"""Slack for float rounding: `==` is equality within it, and a baseline increase of exactly the allowance passes."""

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": lambda a, b: math.isclose(a, b, rel_tol=_TOLERANCE, abs_tol=_TOLERANCE),
}

_XML_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _leaf_names(metrics: dict[str, Any], prefix: str = "") -> list[str]:
    names: list[str] = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        names.extend(_leaf_names(value, f"{name}.") if isinstance(value, dict) else [name])
    return names


def _lookup(metrics: dict[str, Any], name: str) -> tuple[Any, str | None]:
    """The value at dotted `name` and None, or None and the error saying why there is no number there."""
    node: Any = metrics
    for key in name.split("."):
        if not isinstance(node, dict) or key not in node:
            return None, f"unknown metric '{name}'; available: {', '.join(sorted(_leaf_names(metrics))) or '(none)'}"
        node = node[key]
    if isinstance(node, bool) or not isinstance(node, int | float):
        return None, f"metric '{name}' is not a number (got {node!r})"
    return node, None


def evaluate_gates(gates: list[dict[str, Any]], metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Each gate with `actual` and `passed` added; a missing or non-numeric metric fails with an `error`."""
    evaluated = []
    for gate in gates:
        actual, error = _lookup(metrics, gate["metric"])
        compare = _OPS.get(gate["op"])
        if compare is None:
            error = f"unknown op {gate['op']!r}; use one of {', '.join(_OPS)}"
        passed = bool(compare is not None and error is None and compare(actual, gate["value"]))
        evaluated.append({**gate, "actual": actual, "passed": passed, **({"error": error} if error else {})})
    return evaluated


def _runs(results: dict[str, Any], source: str) -> list[dict[str, Any]]:
    runs = results.get("runs") if isinstance(results, dict) else None
    if not isinstance(runs, list) or not all(isinstance(r, dict) and "name" in r for r in runs):
        raise ConfigError(f"{source}: not a facesec results.json (needs 'runs', a list of runs with a 'name')")
    return runs


def apply_baseline(results: dict[str, Any], baseline: dict[str, Any], max_increase_points: float = 0.0,
                   metric: str | None = None, baseline_path: str = "") -> dict[str, Any]:
    """The results["baseline"] block: per run, its headline metric (`metric` when given; attack_success_rate
    for runs that name none) may rise at most `max_increase_points` points over the baseline run of the same
    name; `max_increase` in the rules is in the metric's own unit (5 points -> 0.05)."""
    old_runs = {run["name"]: run for run in _runs(baseline, baseline_path or "baseline")}
    allowed = max_increase_points / 100
    rules = []
    for run in _runs(results, "results"):
        headline = run.get("headline")
        named = headline.get("metric") if isinstance(headline, dict) else None
        name = metric or str(named or "attack_success_rate")
        new, new_error = _lookup(run.get("metrics") or {}, name)
        rule: dict[str, Any] = {"run": run["name"], "metric": name, "old": None, "new": new,
                                "max_increase": allowed, "passed": True}
        if run["name"] not in old_runs:
            rule["note"] = "new run, no baseline"
        elif new_error:
            rule.update(passed=False, error=new_error)
        else:
            old, old_error = _lookup(old_runs[run["name"]].get("metrics") or {}, name)
            rule["old"] = old
            if old_error:
                rule["note"] = f"baseline has no value to compare: {old_error}"
            else:
                rule["passed"] = new - old <= allowed + _TOLERANCE
        rules.append(rule)
    return {"path": baseline_path, "rules": rules}


def _baseline_rules(results: dict[str, Any]) -> list[dict[str, Any]]:
    return list((results.get("baseline") or {}).get("rules") or [])


def suite_passed(results: dict[str, Any]) -> bool:
    """True when every gate of every run and every baseline rule passed."""
    gates = [gate for run in results.get("runs") or [] for gate in run.get("gates") or []]
    return all(item.get("passed") is True for item in gates + _baseline_rules(results))


def exit_code(results: dict[str, Any]) -> int:
    """EXIT_OK when the suite passed, EXIT_GATE_FAILED otherwise."""
    return EXIT_OK if suite_passed(results) else EXIT_GATE_FAILED


def _xml_text(value: Any) -> str:
    return _XML_ILLEGAL.sub("\ufffd", str(value))


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _gate_message(gate: dict[str, Any]) -> str:
    if gate.get("error"):
        return f"{gate['error']} (gate: {gate['metric']} {gate['op']} {_num(gate['value'])})"
    return f"{gate['metric']} = {_num(gate['actual'])}, required {gate['op']} {_num(gate['value'])}"


def _rule_message(rule: dict[str, Any]) -> str:
    if rule.get("error"):
        return f"baseline: {rule['error']}"
    rise = (rule["new"] - rule["old"]) * 100
    return (f"baseline: {rule['metric']} went from {_num(rule['old'])} to {_num(rule['new'])} "
            f"({rise:+.3g} points), allowed {rule['max_increase'] * 100:+.3g} points")


def write_junit(results: dict[str, Any], path: Path) -> None:
    """JUnit XML: one testcase per run; failed gates and baseline rules are <failure>s, validity flags system-out."""
    suite = _xml_text(results.get("suite") or "facesec")
    root = ET.Element("testsuite", name=suite)
    rules_by_run: dict[str, list[dict[str, Any]]] = {}
    for rule in _baseline_rules(results):
        rules_by_run.setdefault(rule["run"], []).append(rule)
    runs = results.get("runs") or []
    failed_cases = 0
    for run in runs:
        case = ET.SubElement(root, "testcase", classname=suite, name=_xml_text(run["name"]))
        wall = (run.get("metrics") or {}).get("wall_time_s")
        if isinstance(wall, int | float) and not isinstance(wall, bool):
            case.set("time", f"{wall:.3f}")
        failures = [("gate", _gate_message(g)) for g in run.get("gates") or [] if g.get("passed") is not True]
        failures += [("baseline", _rule_message(r))
                     for r in rules_by_run.get(run["name"], []) if r.get("passed") is not True]
        for kind, message in failures:
            ET.SubElement(case, "failure", message=_xml_text(message), type=kind).text = _xml_text(message)
        failed_cases += bool(failures)
        flags = (run.get("validity") or {}).get("flags") or []
        if flags:
            ET.SubElement(case, "system-out").text = _xml_text("\n".join(f"validity: {f}" for f in flags))
    root.set("tests", str(len(runs)))
    root.set("failures", str(failed_cases))
    root.set("errors", "0")
    root.set("skipped", "0")
    ET.indent(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
