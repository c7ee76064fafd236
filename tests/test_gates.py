"""Gates: conditions on run metrics, baseline regression, JUnit XML and the exit code."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from facesec.errors import ConfigError
from facesec.gates import (
    EXIT_BAD_INPUT,
    EXIT_GATE_FAILED,
    EXIT_OK,
    apply_baseline,
    evaluate_gates,
    exit_code,
    suite_passed,
    write_junit,
)
from facesec.record import Difference, Results
from facesec.results import read_results

METRICS: dict[str, Any] = {
    "attack_success_rate": 0.97,
    "n_attempts": 38,
    "protocol_metric": "tar",
    "queries_per_sample": None,
    "attack_success_ci95": [0.90, 0.99],
    "per_class": {"dodging": {"asr": 0.4}},
}

BROKEN = "gradient masking suspected (or a broken attack): the unbounded run reached 0.40 < 0.95"


def gate(metric: str, op: str, value: float) -> dict[str, Any]:
    """A gate as evaluate_gates sees it (spec.Gate limits metric names; gates.py must not rely on that)."""
    return {"metric": metric, "op": op, "value": value}


def run(name: str, asr: float, gates: list[dict[str, Any]] | None = None, flags: list[str] | None = None
        ) -> dict[str, Any]:
    """A run record as results.json holds it, its gates judged on its metrics."""
    metrics = {"attack_success_rate": asr, "wall_time_s": 1.5}
    return {"name": name, "metrics": metrics, "validity": {"flags": flags or []},
            "gates": [g.model_dump(exclude_unset=True) for g in evaluate_gates(gates or [], metrics)]}


def results(*runs: dict[str, Any]) -> Results:
    return read_results({"schema_version": 1, "suite": "quickstart", "runs": list(runs), "baseline": None}, "test")


@pytest.mark.parametrize(("op", "value", "passes"), [
    ("<", 0.98, True), ("<", 0.97, False),
    ("<=", 0.97, True), ("<=", 0.5, False),
    (">", 0.5, True), (">", 0.97, False),
    (">=", 0.97, True), (">=", 0.98, False),
    ("==", 0.97, True), ("==", 0.5, False),
])
def test_each_op_both_ways(op: str, value: float, passes: bool) -> None:
    [out] = evaluate_gates([gate("attack_success_rate", op, value)], METRICS)
    assert out.model_dump(exclude_unset=True) == {"metric": "attack_success_rate", "op": op, "value": value,
                                                  "actual": 0.97, "passed": passes}
    assert type(out.passed) is bool


def test_equality_allows_float_rounding_and_ints() -> None:
    out = evaluate_gates([gate("x", "==", 0.3), gate("n_attempts", "==", 38)], {"x": 0.1 + 0.2, "n_attempts": 38})
    assert [g.passed for g in out] == [True, True]


def test_dotted_lookup() -> None:
    [ok, bad] = evaluate_gates([gate("per_class.dodging.asr", "<=", 0.5), gate("per_class.dodging.asr", ">", 0.5)],
                               METRICS)
    assert ok.actual == 0.4 and ok.passed is True
    assert bad.actual == 0.4 and bad.passed is False and bad.error is None
    assert "error" not in bad.model_dump(exclude_unset=True)


@pytest.mark.parametrize("name", ["attack_sucess_rate", "per_class.impersonation.asr", "attack_success_rate.x"])
def test_unknown_metric_fails_with_the_available_names(name: str) -> None:
    [out] = evaluate_gates([gate(name, "<=", 0.5)], METRICS)
    assert out.passed is False and out.actual is None and out.error is not None
    assert out.error.startswith(f"unknown metric '{name}'; available: attack_success_ci95, attack_success_rate, ")
    assert "per_class.dodging.asr" in out.error


@pytest.mark.parametrize("name", ["protocol_metric", "queries_per_sample", "attack_success_ci95"])
def test_non_numeric_metric_fails(name: str) -> None:
    [out] = evaluate_gates([gate(name, ">=", 0.0)], METRICS)
    assert out.passed is False and out.error is not None and out.error.startswith(f"metric '{name}' is not a number")


def test_unknown_op_fails() -> None:
    [out] = evaluate_gates([{"metric": "attack_success_rate", "op": "=<", "value": 0.5}], METRICS)
    assert out.passed is False and out.error is not None and "unknown op '=<'" in out.error


def test_baseline_within_and_beyond_tolerance_and_new_run() -> None:
    old = results(run("a", 0.50), run("b", 0.50), run("gone", 0.1))
    new = results(run("a", 0.55), run("b", 0.5501), run("c", 0.9))
    block = apply_baseline(new, old, max_increase_points=5, baseline_path="old/results.json")
    assert block.path == "old/results.json"
    a, b, c = block.rules
    assert a.model_dump(exclude_unset=True) == {"run": "a", "metric": "attack_success_rate", "old": 0.5, "new": 0.55,
                                                "max_increase": 0.05, "passed": True}
    assert b.passed is False and b.old == 0.5 and b.new == 0.5501
    assert c.run == "c" and c.passed is True and c.note == "new run, no baseline"


def test_baseline_default_allows_no_increase_but_allows_a_decrease() -> None:
    old = results(run("a", 0.5), run("b", 0.5))
    rules = apply_baseline(results(run("a", 0.51), run("b", 0.2)), old).rules
    assert [r.passed for r in rules] == [False, True]


def test_baseline_other_metric_and_missing_metric() -> None:
    old, new = results(run("a", 0.5)), results(run("a", 0.5))
    new.runs[0].metrics["ssim_mean"] = 0.9
    old.runs[0].metrics["ssim_mean"] = 0.8
    [rule] = apply_baseline(new, old, max_increase_points=10, metric="ssim_mean").rules
    assert rule.passed is True and rule.metric == "ssim_mean"
    [rule] = apply_baseline(new, old, metric="l2_mean").rules
    assert rule.passed is False and rule.error is not None and rule.error.startswith("unknown metric 'l2_mean'")
    del old.runs[0].metrics["ssim_mean"]
    [rule] = apply_baseline(new, old, metric="ssim_mean").rules
    assert rule.passed is True and rule.old is None and rule.new == 0.9
    assert rule.note is not None
    assert rule.note.startswith("baseline has no value to compare: unknown metric 'ssim_mean'")


@pytest.mark.parametrize("doc", [{"hello": 1}, [], {"runs": {"a": 1}}, {"runs": [{"metrics": {}}]}])
def test_baseline_that_is_not_results_is_bad_input(doc: Any) -> None:
    with pytest.raises(ConfigError, match=r"old\.json: not a facesec results\.json"):
        read_results(doc, "old.json")


def test_suite_passed_and_exit_code() -> None:
    passing = results(run("a", 0.3, [gate("attack_success_rate", "<=", 0.5)]), run("no-gates", 0.9))
    assert suite_passed(passing) and exit_code(passing) == EXIT_OK
    failing_gate = results(run("a", 0.97, [gate("attack_success_rate", "<=", 0.5)]))
    assert not suite_passed(failing_gate) and exit_code(failing_gate) == EXIT_GATE_FAILED
    regressed = passing.model_copy(deep=True)
    regressed.baseline = apply_baseline(passing, results(run("a", 0.1)))
    assert not suite_passed(regressed) and exit_code(regressed) == EXIT_GATE_FAILED
    assert suite_passed(results()) and (EXIT_OK, EXIT_GATE_FAILED, EXIT_BAD_INPUT) == (0, 1, 2)


def read_junit(res: Results, tmp_path: Path) -> ET.Element:
    path = tmp_path / "reports" / "junit.xml"
    write_junit(res, path)
    return ET.parse(path).getroot()


def test_junit_counts_failures_and_system_out(tmp_path: Path) -> None:
    res = results(
        run("pass", 0.3, [gate("attack_success_rate", "<=", 0.5)]),
        run("fail", 0.97, [gate("attack_success_rate", "<=", 0.5), gate("attack_success_rate", ">=", 0.0),
                           gate("asr", "<", 1)]),
        run("no-gates", 0.9, flags=[BROKEN]),
        run("regressed", 0.6),
    )
    res.baseline = apply_baseline(res, results(run("regressed", 0.5)), max_increase_points=5)
    root = read_junit(res, tmp_path)
    assert root.tag == "testsuite" and root.get("name") == "quickstart"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("4", "2", "0")
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert list(cases) == ["pass", "fail", "no-gates", "regressed"]
    assert all(c.get("classname") == "quickstart" and c.get("time") == "1.500" for c in cases.values())
    assert cases["pass"].find("failure") is None and cases["no-gates"].find("failure") is None
    messages = [f.get("message") for f in cases["fail"].iter("failure")]
    assert messages == ["attack_success_rate = 0.97, required <= 0.5",
                        "unknown metric 'asr'; available: attack_success_rate, wall_time_s (gate: asr < 1)"]
    [regression] = cases["regressed"].iter("failure")
    assert regression.get("type") == "baseline"
    assert regression.get("message") == ("baseline: attack_success_rate went from 0.5 to 0.6 (+10 points), "
                                         "allowed +5 points")
    out = cases["no-gates"].find("system-out")
    assert out is not None and out.text == f"validity: {BROKEN}"


def test_junit_escapes_names(tmp_path: Path) -> None:
    nasty = 'x<script>&"\'</script>]]>\x07'
    res = results(run(nasty, 0.97, [gate("attack_success_rate", "<=", 0.5)], flags=[nasty]))
    res.suite = 'suite<&">'
    root = read_junit(res, tmp_path)
    [case] = root.iter("testcase")
    assert case.get("name") == nasty.replace("\x07", "\ufffd")
    assert root.get("name") == case.get("classname") == 'suite<&">'
    assert root.get("failures") == "1"
    out = case.find("system-out")
    assert out is not None and out.text == "validity: " + nasty.replace("\x07", "\ufffd")
    assert "<script>" not in (tmp_path / "reports" / "junit.xml").read_text(encoding="utf-8")


def test_a_gate_on_an_interval_bound_prefers_the_cluster_interval() -> None:
    """`bound: upper` tests the top of the 95% interval: the cluster one (people resampled) where the run records
    it, else Wilson's; a metric without an interval fails with an error naming the keys looked for."""
    wilson_only = dict(METRICS)
    both = {**METRICS, "attack_success_ci95_cluster": [0.80, 1.0]}
    upper = {"metric": "attack_success_rate", "op": "<=", "value": 0.995, "bound": "upper"}
    [on_wilson] = evaluate_gates([upper], wilson_only)
    [on_cluster] = evaluate_gates([upper], both)
    assert (on_wilson.actual, on_wilson.passed, on_wilson.bound) == (0.99, True, "upper")
    assert (on_cluster.actual, on_cluster.passed) == (1.0, False)  # the point value 0.97 would have passed
    [lower] = evaluate_gates([{**upper, "op": ">=", "value": 0.85, "bound": "lower"}], both)
    assert (lower.actual, lower.passed) == (0.80, False)
    [missing] = evaluate_gates([{**upper, "metric": "n_attempts"}], both)
    assert missing.passed is False and missing.error is not None and "n_attempts_ci95_cluster" in missing.error
    [plain] = evaluate_gates([gate("attack_success_rate", "<=", 0.995)], both)
    assert "bound" not in plain.model_dump(exclude_unset=True)  # records without bounds keep their shape


def test_a_bound_needs_a_metric_with_an_interval(tmp_path: Path) -> None:
    from facesec.threat_model import ThreatModel

    doc = {"name": "b", "gates": [{"metric": "attack_success_rate", "op": "<=", "value": 0.5, "bound": "upper"}]}
    assert ThreatModel.model_validate(doc).gates[0].bound == "upper"
    doc["gates"] = [{"metric": "n_attempts", "op": ">=", "value": 10, "bound": "lower"}]
    with pytest.raises(ValueError, match=r"gates\.0\.bound.*n_attempts has no recorded interval.*attack_success_rate"):
        ThreatModel.model_validate(doc)


def test_a_verdict_read_back_is_true_or_none() -> None:
    """A results.json from elsewhere may write "yes" or 1 for a verdict: only JSON true is a pass, so such a file
    is refused on one line rather than read as passing."""
    doc = {"runs": [{"name": "a", "gates": [{"metric": "m", "op": "<=", "value": 0.5, "actual": 0.9,
                                             "passed": "yes"}]}]}
    with pytest.raises(ConfigError, match=r"runs\.0\.gates\.0\.passed"):
        read_results(doc, "elsewhere.json")
    doc["runs"][0]["gates"][0]["passed"] = 1
    with pytest.raises(ConfigError, match="passed"):
        read_results(doc, "elsewhere.json")
    doc["runs"][0]["gates"][0]["passed"] = None
    assert not suite_passed(read_results(doc, "elsewhere.json"))


def test_a_reused_record_needs_well_formed_intervals(tmp_path: Path) -> None:
    from facesec.resume import _reusable

    raw = {"name": "a", "resume_key": "0" * 64, "validity": {}, "provenance": {}, "headline": {"metric": "m"},
           "metrics": {"attack_success_ci95": [0.1, 0.2], "attack_success_ci95_cluster": [None, "x"]}}
    record, why = _reusable(raw, tmp_path)
    assert record is None and why == "attack_success_ci95_cluster is not two ordered numbers between 0 and 1"
    raw["metrics"] = {"attack_success_ci95_cluster": [0.3, 0.2]}
    assert _reusable(raw, tmp_path)[1] == "attack_success_ci95_cluster is not two ordered numbers between 0 and 1"
    # a difference of two rates (a clean TAR drop, an adaptive attack's gain) may be negative, not a rate
    raw["metrics"] = {"clean_tar_drop_ci95_cluster": [-0.05, 0.03], "adaptive_gain_ci95_cluster": [-0.2, 0.4]}
    assert "ci95" not in _reusable(raw, tmp_path)[1]
    raw["metrics"] = {"attack_success_ci95_cluster": [-0.05, 0.03]}
    assert _reusable(raw, tmp_path)[1].startswith("attack_success_ci95_cluster is not")


def test_a_release_gate_on_the_clean_tar_drop_tests_its_paired_interval() -> None:
    """'Poisoning costs at most 2 points of clean TAR' at 95%: a backdoor threat model may gate the upper end of
    clean_tar_drop's paired interval; a drop of 0.01 whose interval reaches 0.03 fails it."""
    from facesec.threat_model import ThreatModel

    gate_doc = {"metric": "clean_tar_drop", "op": "<=", "value": 0.02, "bound": "upper"}
    tm = ThreatModel.model_validate({"name": "b", "perturbation": {"kind": "backdoor"}, "gates": [gate_doc]})
    assert tm.gates[0].bound == "upper"
    [wide] = evaluate_gates([gate_doc], {"clean_tar_drop": 0.01, "clean_tar_drop_ci95_cluster": [-0.01, 0.03]})
    [narrow] = evaluate_gates([gate_doc], {"clean_tar_drop": 0.01, "clean_tar_drop_ci95_cluster": [0.0, 0.015]})
    assert (wide.actual, wide.passed) == (0.03, False) and (narrow.actual, narrow.passed) == (0.015, True)


def _difference(first: str, second: str, setting: str, values: list[str], diff: float,
                ci: list[float]) -> dict[str, Any]:
    return {"first": first, "second": second, "setting": setting, "values": values, "decision": "success",
            "first_rate": 0.5, "second_rate": 0.5, "difference": diff, "ci95_cluster": ci, "n": 40, "people": 20}


LONG = {"kind": "transfer", "surrogates": [{"name": "iresnet50", "weights": "/home/" + "x" * 150 + "/w.pt"}]}


@pytest.mark.parametrize(("setting", "values", "diff", "ci", "suspect"), [
    ("perturbation.eps", [2 / 255, 8 / 255], 0.30, [0.10, 0.50], "b"),  # 8/255 beaten by 2/255: suspect
    ("perturbation.eps", [2 / 255, 8 / 255], 0.05, [-0.10, 0.20], None),  # within the interval
    ("perturbation.eps", [8 / 255, 2 / 255], 0.30, [0.10, 0.50], None),  # the larger budget does better
    ("attack.steps", [40, 10], -0.25, [-0.40, -0.05], "a"),  # 40 steps beaten by 10
    ("knowledge", ["white-box", LONG], -0.2, [-0.3, -0.1], "a"),  # a value too long to show whole
    ("knowledge", [{"kind": "query"}, "white-box"], 0.2, [0.1, 0.3], "b"),
    ("knowledge", [{"kind": "query"}, {"kind": "transfer"}], 0.2, [0.1, 0.3], None),  # no order between them
    ("perturbation.norm", ["linf", "l2"], 0.5, [0.3, 0.7], None),
    ("defence.eot_samples", [30, 8], -0.2, [-0.3, -0.1], "a"),  # 30 draws beaten by 8
    ("attack.ensemble", [[], [{"method": "mi-fgsm"}]], 0.2, [0.1, 0.3], "b"),  # the ensemble beaten without it
])
def test_a_stronger_attack_that_does_worse_is_flagged_on_both_runs(setting: str, values: list[Any], diff: float,
                                                                    ci: list[float], suspect: str | None) -> None:
    """A larger budget, more steps or white-box knowledge succeeding less often beyond the interval warns on
    both runs (naming the stronger one), and a gate on validity.n_flags is judged again; the strength is read
    from the threat models, not from the shortened values the difference shows."""
    from facesec.consistency import flag
    from facesec.matrix import set_path

    g = [{"metric": "validity.n_flags", "op": "==", "value": 0}]
    runs = [run("a", 0.5, g), run("b", 0.5, g)]
    for record, value in zip(runs, values, strict=True):
        record["threat_model"] = {}
        set_path(record["threat_model"], setting, value)
    found = results(*runs)
    shown = [json.dumps(v)[:117] for v in values]
    found.differences = [Difference.model_validate(_difference("a", "b", setting, shown, diff, ci))]
    flag(found)
    for record in found.runs:
        warned = [f for f in record.validity.flags if f.startswith("gradient masking suspected")]
        assert bool(warned) == (suspect is not None)
        if warned:
            assert warned[0].startswith(f"gradient masking suspected: {suspect} (")
            assert record.gates[0].actual == 1 and record.gates[0].passed is False
    found.differences = []  # resumed into a suite where the pair no longer disagrees: the old warning goes
    flag(found)
    assert all(not r.validity.flags for r in found.runs)
    assert all(r.gates[0].passed for r in found.runs) or suspect is None
