"""Gates over results.json: per-run conditions, regression against a baseline, JUnit XML, exit codes.

Reads results only (docs/results-schema.md); never imports the engine.
"""

from __future__ import annotations

import math
import operator
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from pydantic import JsonValue

from facesec.record import Baseline, BaselineRule, GateResult, Pairing, Results, RunRecord, interval_keys

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

PENDING = "not judged yet: a difference between runs is judged once every run of the suite has finished"

_XML_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _leaf_names(metrics: Mapping[str, JsonValue], prefix: str = "") -> list[str]:
    names: list[str] = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        names.extend(_leaf_names(value, f"{name}.") if isinstance(value, dict) else [name])
    return names


def _lookup(metrics: Mapping[str, JsonValue], name: str) -> tuple[float | None, str | None]:
    """The value at dotted `name` and None, or None and the error saying why there is no number there."""
    node: JsonValue = dict(metrics)
    for key in name.split("."):
        if not isinstance(node, dict) or key not in node:
            return None, f"unknown metric '{name}'; available: {', '.join(sorted(_leaf_names(metrics))) or '(none)'}"
        node = node[key]
    if isinstance(node, bool) or not isinstance(node, int | float):
        return None, f"metric '{name}' is not a number (got {node!r})"
    return node, None


def _bound(metrics: Mapping[str, JsonValue], name: str, bound: str) -> tuple[float | None, str | None]:
    """The lower or upper end of metric `name`'s 95% interval (the cluster one where recorded), or the error."""
    for key in interval_keys(name):
        ends = metrics.get(key)
        picked = (ends[0] if bound == "lower" else ends[1]) if isinstance(ends, list) and len(ends) == 2 else None
        if isinstance(picked, int | float) and not isinstance(picked, bool):
            return float(picked), None
    return None, f"metric '{name}' has no recorded 95% interval ({' or '.join(interval_keys(name))})"


def evaluate_gates(gates: Sequence[Mapping[str, JsonValue]], metrics: Mapping[str, JsonValue]) -> list[GateResult]:
    """Each gate with `actual` and `passed` added; a missing or non-numeric metric fails with an `error`."""
    evaluated = []
    for gate in gates:
        if gate.get("difference") is not None:
            evaluated.append(_pending(gate))
            continue
        metric, op, value, bound = str(gate["metric"]), str(gate["op"]), gate["value"], gate.get("bound")
        actual, error = _lookup(metrics, metric) if bound is None else _bound(metrics, metric, str(bound))
        compare = _OPS.get(op)
        if compare is None:
            error = f"unknown op {op!r}; use one of {', '.join(_OPS)}"
        number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
        if number is None:
            error = f"gate value {value!r} is not a number"
        passed = compare is not None and error is None and actual is not None and number is not None \
            and compare(actual, number)
        verdict = GateResult(metric=metric, op=op, value=number or 0, actual=actual, passed=passed)
        if bound is not None:
            verdict.bound = "lower" if bound == "lower" else "upper"
        if error:
            verdict.error = error
        evaluated.append(verdict)
    return evaluated


def _pending(gate: Mapping[str, JsonValue]) -> GateResult:
    """A gate on a difference between runs, not judged yet: no verdict, so no pass until the suite has finished."""
    value, bound = gate["value"], gate.get("bound")
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else 0
    return GateResult(metric=f"difference in {gate['difference']}", op=str(gate["op"]), value=number,
                      bound="lower" if bound == "lower" else "upper" if bound == "upper" else None,
                      difference=str(gate["difference"]), passed=None, error=PENDING)


def judge_differences(results: Results, pairs: Sequence[Pairing] | None) -> None:
    """Each run's gates on a difference judged on the suite's pairs of runs (`pairs`; None when they could not be
    worked out): one verdict for each later run that differs from it only in the gate's setting (or below it),
    on their paired difference. A pair not compared, a run paired with none, or a run that is the later of a
    pair whose earlier run lacks the same gate fails the gate, saying why (a verdict missing is no pass)."""
    asked = [{_asked(g) for g in run.gates if g.difference is not None} for run in results.runs]
    for index, run in enumerate(results.runs):
        judged: list[GateResult] = []
        for gate in run.gates:
            judged += [gate] if gate.difference is None else _on_pairs(gate, index, results.runs, pairs, asked)
        run.gates = judged


def _asked(gate: GateResult) -> tuple[object, ...]:
    """What a gate on a difference asks, to tell whether the earlier run of a pair asks the same."""
    return gate.difference, gate.op, gate.value, gate.bound


def _on_pairs(gate: GateResult, index: int, runs: Sequence[RunRecord], pairs: Sequence[Pairing] | None,
              asked: Sequence[set[tuple[object, ...]]]) -> list[GateResult]:
    def failed(error: str, versus: str | None = None) -> GateResult:
        return gate.model_copy(update={"passed": False, "error": error, "versus": versus})

    if pairs is None:
        return [failed("the differences between the suite's runs could not be worked out (see the run's log)")]
    setting = str(gate.difference)
    mine = [p for p in pairs if index in (p.first, p.second)
            and (p.setting == setting or p.setting.startswith(setting + "."))]
    verdicts = [failed(f"the difference with {runs[p.first].name} is judged on that earlier run (suite order), "
                       "which has no such gate: list this file first or put the gate there", runs[p.first].name)
                for p in mine if p.second == index and _asked(gate) not in asked[p.first]]
    verdicts += [_on_pair(gate, p, runs[p.second].name) for p in mine if p.first == index]
    if not mine:
        verdicts.append(failed(f"no other run of the suite differs from this one only in {setting}, so there is "
                               "no difference to test (docs/evaluation.md)"))
    return verdicts


def _on_pair(gate: GateResult, pair: Pairing, versus: str) -> GateResult:
    """The gate judged on one pair's difference (this run minus the later one) or its interval's end."""
    found = pair.difference
    if found is None:
        return gate.model_copy(update={"passed": False, "versus": versus, "error": pair.why})
    actual = found.difference if gate.bound is None else found.ci95_cluster[0 if gate.bound == "lower" else 1]
    compare = _OPS.get(gate.op)
    return gate.model_copy(update={
        "metric": f"{found.decision} difference in {found.setting} ({found.values[0]} minus {found.values[1]})",
        "versus": versus, "actual": actual, "passed": compare is not None and compare(actual, gate.value),
        "error": None if compare is not None else f"unknown op {gate.op!r}; use one of {', '.join(_OPS)}"})


def judge(gates: Sequence[Mapping[str, JsonValue]], record: RunRecord) -> list[GateResult]:
    """The gates judged on a run record's metrics and validity (`validity.<entry>` names a validity entry), and
    those on a differential between groups (`by`) on its `groups`."""
    validity = record.validity.model_dump(mode="json") if record.validity is not None else {}
    plain = evaluate_gates([g for g in gates if g.get("by") is None], {**record.metrics, "validity": validity})
    verdicts = iter(plain)
    return [_by_group(g, record) if g.get("by") is not None else next(verdicts) for g in gates]


def _by_group(gate: Mapping[str, JsonValue], record: RunRecord) -> GateResult:
    """A gate on the differential of a sliced rate between groups (its ratio or difference, or a bound of its
    interval); no differential (fewer than two groups large enough), an undefined ratio (the lowest rate 0) or an
    unbounded end fails it, with the reason."""
    metric, by, stat, bound = str(gate["metric"]), str(gate["by"]), str(gate.get("stat")), gate.get("bound")
    number = gate["value"] if isinstance(gate["value"], int | float) and not isinstance(gate["value"], bool) else None
    verdict = GateResult(metric=f"{metric} {stat} by {by}", op=str(gate["op"]), value=number or 0, passed=False,
                         bound="lower" if bound == "lower" else "upper" if bound == "upper" else None)
    if number is None:
        verdict.error = f"gate value {gate['value']!r} is not a number"
        return verdict
    value = number
    found = next((s for s in record.groups if s.attribute == by and s.metric == metric), None)
    gap = found.differential if found is not None else None
    if gap is None:
        verdict.error = (f"no differential of {metric} by {by}: fewer than two groups of at least "
                         f"{found.minimum if found else '?'} people (besides unknown and mixed)")
        return verdict
    point, ends = (gap.ratio, gap.ratio_ci95) if stat == "ratio" else (gap.difference, gap.difference_ci95)
    actual = point if bound is None else (ends[0] if bound == "lower" else ends[1]) if ends is not None else None
    compare = _OPS.get(verdict.op)
    if actual is None or compare is None:
        verdict.error = (f"unknown op {verdict.op!r}" if compare is None else
                         f"the {stat} of {metric} by {by} is undefined or unbounded (the lowest group, {gap.lowest}, "
                         "has a rate of 0, or may have: its interval reaches 0)")
        return verdict
    verdict.actual, verdict.passed = actual, compare(actual, value)
    return verdict


def apply_baseline(results: Results, baseline: Results, max_increase_points: float = 0.0,
                   metric: str | None = None, baseline_path: str = "") -> Baseline:
    """The results' baseline block: per run, its headline metric (`metric` when given; attack_success_rate
    for runs that name none) may rise at most `max_increase_points` points over the baseline run of the same
    name; `max_increase` in the rules is in the metric's own unit (5 points -> 0.05)."""
    old_runs = {run.name: run for run in baseline.runs}
    allowed = max_increase_points / 100
    rules = []
    for run in results.runs:
        name = metric or run.headline_metric()
        new, new_error = _lookup(run.metrics, name)
        rule = BaselineRule(run=run.name, metric=name, old=None, new=new, max_increase=allowed, passed=True)
        if run.name not in old_runs:
            rule.note = "new run, no baseline"
        elif new_error:
            rule.passed, rule.error = False, new_error
        else:
            old, old_error = _lookup(old_runs[run.name].metrics, name)
            rule.old = old
            if old_error:
                rule.note = f"baseline has no value to compare: {old_error}"
            elif new is not None and old is not None:
                rule.passed = new - old <= allowed + _TOLERANCE
        rules.append(rule)
    return Baseline(path=baseline_path, rules=rules)


def _baseline_rules(results: Results) -> list[BaselineRule]:
    return list(results.baseline.rules) if results.baseline is not None else []


def suite_passed(results: Results) -> bool:
    """True when every gate of every run and every baseline rule passed (a verdict missing is no pass)."""
    verdicts = [gate.passed for run in results.runs for gate in run.gates]
    return all(v is True for v in verdicts + [rule.passed for rule in _baseline_rules(results)])


def exit_code(results: Results) -> int:
    """EXIT_OK when the suite passed, EXIT_GATE_FAILED otherwise."""
    return EXIT_OK if suite_passed(results) else EXIT_GATE_FAILED


def _xml_text(value: object) -> str:
    return _XML_ILLEGAL.sub("\ufffd", str(value))


def _num(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _gate_message(gate: GateResult) -> str:
    metric = gate.metric if gate.bound is None else f"{gate.metric} ({gate.bound} 95% bound)"
    if gate.error:
        return f"{gate.error} (gate: {metric} {gate.op} {_num(gate.value)})"
    return f"{metric} = {_num(gate.actual)}, required {gate.op} {_num(gate.value)}"


def _rule_message(rule: BaselineRule) -> str:
    if rule.error:
        return f"baseline: {rule.error}"
    rise = ((rule.new or 0.0) - (rule.old or 0.0)) * 100
    return (f"baseline: {rule.metric} went from {_num(rule.old)} to {_num(rule.new)} "
            f"({rise:+.3g} points), allowed {rule.max_increase * 100:+.3g} points")


def write_junit(results: Results, path: Path) -> None:
    """JUnit XML: one testcase per run; failed gates and baseline rules are <failure>s, validity flags system-out."""
    suite = _xml_text(results.suite or "facesec")
    root = ET.Element("testsuite", name=suite)
    rules_by_run: dict[str, list[BaselineRule]] = {}
    for rule in _baseline_rules(results):
        rules_by_run.setdefault(rule.run, []).append(rule)
    failed_cases = 0
    for run in results.runs:
        case = ET.SubElement(root, "testcase", classname=suite, name=_xml_text(run.name))
        wall = run.metrics.get("wall_time_s")
        if isinstance(wall, int | float) and not isinstance(wall, bool):
            case.set("time", f"{wall:.3f}")
        failures = [("gate", _gate_message(g)) for g in run.gates if g.passed is not True]
        failures += [("baseline", _rule_message(r)) for r in rules_by_run.get(run.name, []) if r.passed is not True]
        for kind, message in failures:
            ET.SubElement(case, "failure", message=_xml_text(message), type=kind).text = _xml_text(message)
        failed_cases += bool(failures)
        flags = run.validity.flags if run.validity is not None else []
        if flags:
            ET.SubElement(case, "system-out").text = _xml_text("\n".join(f"validity: {f}" for f in flags))
    root.set("tests", str(len(results.runs)))
    root.set("failures", str(failed_cases))
    root.set("errors", "0")
    root.set("skipped", "0")
    ET.indent(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
