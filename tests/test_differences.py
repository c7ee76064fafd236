"""Paired differences between runs of a suite: which runs are compared, what the interval resamples, and what a
samples file from elsewhere cannot do."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facesec import families
from facesec.gates import evaluate_gates, exit_code, judge_differences
from facesec.measures.differences import MAX_PEOPLE, Decision, compare, paired, setting_apart
from facesec.measures.rates import wilson_interval
from facesec.record import Difference, Pairing, Results, RunRecord

BASE = {"name": "a", "target": "dlib-resnet", "data": {"dataset": "d", "seed": 0}, "knowledge": "white-box",
        "perturbation": {"kind": "pixel", "eps": 0.03, "alpha": None}, "gates": []}


def test_one_setting_apart_or_none() -> None:
    transfer = {**BASE, "name": "b", "knowledge": {"kind": "transfer", "surrogates": ["iresnet18"]}}
    assert setting_apart(BASE, transfer) == "knowledge"
    assert setting_apart(BASE, {**BASE, "perturbation": {**BASE["perturbation"], "eps": 0.01}}) == "perturbation.eps"
    both = {**BASE, "perturbation": {"kind": "pixel", "eps": 0.01, "alpha": 0.001}}
    assert setting_apart(BASE, both) is None  # two settings: the difference is no one's
    assert setting_apart(BASE, {**BASE, "name": "c", "gates": [{"metric": "x"}]}) is None  # nothing measured moved
    assert setting_apart(BASE, {**BASE, "data": {"dataset": "d", "seed": 1}}) is None  # other people
    assert setting_apart(BASE, {**BASE, "goal": "impersonation"}) is None  # other decisions, not the same judged
    defended = {**BASE, "perturbation": {**BASE["perturbation"], "defences": ["strip"]}}
    assert setting_apart(BASE, defended) == "perturbation.defences"
    assert setting_apart(BASE, defended, ["perturbation.defences"]) is None  # a setting no decision depends on


def _table(success: list[object], people: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"identity": people, "probe_path": [f"p{i}" for i in range(len(people))],
                         "attempt_success": [str(s) if s is not None else "" for s in success]})


def test_paired_difference_resamples_people_and_skips_rows_not_decided() -> None:
    """Ten people with ten attempts each: the first run fools everyone, the second only the first five people
    (all their attempts alike): 0.5 more, with an interval resampling people far wider than the decisions'."""
    people = [f"p{k}" for k in range(10) for _ in range(10)]
    first = _table([True] * 100, people)
    second = _table([k < 5 for k in range(10) for _ in range(10)], people)
    d = paired(first, second, "attempt_success")
    assert d is not None and d["difference"] == pytest.approx(0.5) and d["n"] == 100 and d["people"] == 10
    lo, hi = d["ci95_cluster"]
    assert lo < 0.3 and hi > 0.7  # Wilson on 50 discordant of 100 would say about [0.40, 0.60]
    assert wilson_interval(50, 100)[0] > lo
    undecided = _table([None] * 10 + [True] * 90, people)  # the first person's attempts were fooled clean
    assert paired(undecided, second, "attempt_success")["n"] == 90  # type: ignore[index]
    other_rows = _table([True] * 100, people[::-1])
    assert paired(other_rows, second, "attempt_success") is None
    assert paired(_table(["maybe"] * 100, people), second, "attempt_success") is None
    crowd = [f"p{k}" for k in range(MAX_PEOPLE + 1)]  # the bootstrap would hold draws x people
    assert paired(_table([True] * len(crowd), crowd), _table([False] * len(crowd), crowd), "attempt_success") is None


def test_morph_differences_cluster_by_the_pair_of_contributors_either_way_round() -> None:
    """Ten pairs of people, each morphed ten times, five with either person as host: one setting accepts every
    morph of the first five pairs, the other none. A pair's ten morphs are one unit, so the interval is as wide
    as ten units allow, wider than when only the host is a unit (twenty units)."""
    pairs = [(f"p{2 * k}", f"p{2 * k + 1}") if m < 5 else (f"p{2 * k + 1}", f"p{2 * k}")
             for k in range(10) for m in range(10)]
    hits = [k < 5 for k in range(10) for _ in range(10)]
    first = pd.DataFrame({"index": range(100), "contributor_a": [a for a, _ in pairs],
                          "contributor_b": [b for _, b in pairs], "mated_match": hits})
    second = first.assign(mated_match=False)
    ways = families.get("morph").decision_clusters
    both = paired(first, second, "mated_match", ways)
    alone = paired(first, second, "mated_match", (("contributor_a",),))
    assert both is not None and alone is not None and both["difference"] == pytest.approx(0.5)
    assert both["people"] == 20 and both["ci95_cluster"][0] < alone["ci95_cluster"][0] - 0.05
    each = [paired(first, second, "mated_match", (way,))["ci95_cluster"] for way in ways]  # type: ignore[index]
    assert both["ci95_cluster"] == [min(lo for lo, _ in each), max(hi for _, hi in each)]  # the widest of them
    gaps = first.assign(contributor_b=first["contributor_b"].where(first.index > 0))  # an empty cell: no crash
    assert paired(gaps, second.assign(contributor_b=gaps["contributor_b"]), "mated_match", ways) is not None
    assert paired(first, second, "mated_match", ("contributor_a",)) is None  # a bare string is not a way
    assert paired(first, second, "mated_match", ((),)) is None
    other = second.assign(contributor_b=second["contributor_b"][::-1].to_numpy())  # other accomplices
    assert paired(first, other, "mated_match", ways) is None


def _record(name: str, tm: dict[str, object], family: str = "pixel") -> RunRecord:
    return RunRecord(name=name, family=family, threat_model=tm, samples_csv=f"runs/{name}/samples.csv")  # type: ignore[arg-type]


def test_compare_reads_only_plain_samples_files_of_the_suite(tmp_path: Path) -> None:
    people = [f"p{k}" for k in range(4) for _ in range(3)]
    for name, hits in (("a", [True] * 12), ("b", [False] * 12), ("c", [True] * 12)):
        (tmp_path / "runs" / name).mkdir(parents=True)
        _table(hits, people).to_csv(tmp_path / "runs" / name / "samples.csv", index=False)
    transfer = {**BASE, "knowledge": {"kind": "transfer", "surrogates": ["iresnet18"]}}
    records = [_record("a", BASE), _record("b", transfer), _record("c", {**BASE, "goal": "impersonation"}, "morph")]
    pixel = {"pixel": Decision("attempt_success")}
    found = compare(records, tmp_path, pixel)
    assert [(d.first, d.second, d.setting, d.difference) for d in found] == [("a", "b", "knowledge", 1.0)]
    assert found[0].values == ['"white-box"', '{"kind": "transfer", "surrogates": ["iresnet18"]}']
    os.remove(tmp_path / "runs" / "b" / "samples.csv")
    os.symlink(tmp_path / "runs" / "a" / "samples.csv", tmp_path / "runs" / "b" / "samples.csv")
    assert compare(records, tmp_path, pixel) == []  # a link is not read
    escape = _record("b", transfer)
    escape.samples_csv = "runs/../../etc/samples.csv"
    assert compare([records[0], escape], tmp_path, pixel) == []
    assert np.isfinite(found[0].ci95_cluster).all()
    twin = _record("b", transfer)
    twin.samples_csv = "runs/a/samples.csv"  # a record pointing at another run's decisions is compared with none
    assert compare([records[0], twin], tmp_path, pixel) == []


def test_a_suite_records_the_difference_its_eps_list_makes(celeba: Path, tmp_path: Path) -> None:
    """Two eps of one threat model attack the same attempts: results.json holds their paired difference, the
    rates each run reports on its own, and the report shows it."""
    from facesec.api import run

    spec = tmp_path / "eps.yaml"
    spec.write_text(f"name: eps\ndata: {{dataset: {celeba}, identities: 4, images_per_identity: 3}}\n"
                    "perturbation: {kind: pixel, eps: [1/255, 8/255]}\nattack: {steps: 3, sanity_samples: 2}\n"
                    "setting: {kind: open-set, calibration: in-sample}\n"
                    "gates: [{difference: perturbation.eps, op: '<', value: 0},\n"
                    "        {difference: perturbation.eps, op: '>=', value: -0.2, bound: lower}]\n")
    results, out = run([spec], out_root=tmp_path / "out", progress=False)
    (d,) = results.differences
    weak, strong = results.runs
    assert (d.first, d.second, d.setting) == (weak.name, strong.name, "perturbation.eps")
    assert d.first_rate == pytest.approx(weak.metrics["attack_success_rate"])
    assert d.second_rate == pytest.approx(strong.metrics["attack_success_rate"])
    assert d.difference == pytest.approx(d.first_rate - d.second_rate)
    assert d.n == weak.metrics["n_attempts"]
    assert "perturbation.eps" in (out / "index.html").read_text()
    value, low = weak.gates  # the earlier run carries the verdicts, the later one none
    assert (value.versus, value.actual, value.passed) == (strong.name, d.difference, d.difference < 0)
    assert (low.actual, low.passed) == (d.ci95_cluster[0], d.ci95_cluster[0] >= -0.2)
    assert strong.gates == []
    assert exit_code(results) == (0 if value.passed and low.passed else 1)


def test_a_gate_on_a_difference_has_no_verdict_until_the_suite_pairs_its_run() -> None:
    """Judged on its own a run's difference gate is pending (no pass); after the suite it is judged on each pair
    with a later run, and fails, saying why, where that pair was not compared, where no run pairs with it, or
    where it sits on the later run of a pair whose earlier run does not ask the same; a setting runs are never
    compared over is refused when the threat model is read."""
    from facesec.threat_model import ThreatModel

    gate = {"difference": "knowledge", "op": ">=", "value": 0.2, "bound": "lower", "metric": ""}
    (pending,) = evaluate_gates([gate], {})
    assert pending.passed is None and pending.difference == "knowledge"
    looser = pending.model_copy(update={"value": -1})
    runs = [RunRecord.model_validate({"name": n, "gates": [g.model_dump()]})
            for n, g in (("wb", pending), ("tr", pending), ("tr2", looser), ("alone", pending))]
    diff = Difference(first="wb", second="tr", setting="knowledge.surrogates", values=['"a"', '"b"'],
                      decision="attempt_success", first_rate=0.9, second_rate=0.5, difference=0.4,
                      ci95_cluster=[0.25, 0.55], n=40, people=20)
    pairs = [Pairing(0, 1, "knowledge.surrogates", diff), Pairing(0, 2, "knowledge", None, "not compared: why"),
             Pairing(2, 1, "knowledge", diff.model_copy(update={"first": "tr2"}))]
    results = Results(schema_version=1, runs=runs)
    judge_differences(results, pairs)
    wb, tr, tr2, alone = (r.gates for r in results.runs)
    assert [(g.versus, g.actual, g.passed) for g in wb] == [("tr", 0.25, True), ("tr2", None, False)]
    assert wb[1].error == "not compared: why"
    assert tr[0].passed is False and tr[0].versus == "tr2" and "list this file first" in str(tr[0].error)
    assert len(tr) == 1  # its pair with wb is judged on wb, which asks the same
    assert [(g.versus, g.passed) for g in tr2] == [("wb", False), ("tr", True)]  # wb asks another value of it
    assert alone[0].passed is False and "no other run" in str(alone[0].error)
    nothing = Results(schema_version=1, runs=[runs[0].model_copy(deep=True)])
    judge_differences(nothing, None)
    assert nothing.runs[0].gates[0].passed is False
    for bad, field in (({"difference": "goal"}, "gates.0.difference"),
                       ({"difference": "knowledge", "metric": "attack_success_rate"}, "gates.0"),
                       ({"difference": "data.seed"}, "gates.0.difference")):
        with pytest.raises(ValueError, match=field):
            ThreatModel.model_validate({"name": "a", "data": {"dataset": "d"}, "perturbation": {"kind": "pixel"},
                                        "gates": [{"op": "<=", "value": 0, **bad}]})
