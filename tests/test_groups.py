"""Rates sliced by group of people, on decisions with known groups and planted differences: each group's rate and
interval resample its people, the differential finds the planted gap (and no gap where none was planted), small
groups and people without the attribute are shown but kept out of it, a morph's pair belongs to its contributors'
common group."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facesec.groups.slices import MIXED, row_groups, sliced


def _decisions(rates: dict[str, tuple[int, float]], per_person: int = 6, seed: int = 1) -> tuple[np.ndarray, ...]:
    """`people` people per group, each with `per_person` decisions drawn at the group's planted rate."""
    rng = np.random.default_rng(seed)
    outcomes, people, groups = [], [], []
    for group, (count, rate) in rates.items():
        for k in range(count):
            outcomes += list(rng.random(per_person) < rate)
            people += [f"{group}{k}"] * per_person
            groups += [group] * per_person
    return np.array(outcomes), np.array(people), np.array(groups, dtype=object)


def test_a_planted_gap_is_found_with_intervals_that_hold_it() -> None:
    outcomes, people, groups = _decisions({"female": (30, 0.8), "male": (30, 0.2), "tiny": (3, 1.0),
                                           "unknown": (4, 0.0)})
    rates, gap = sliced(outcomes, [people], groups, minimum=5)
    by = {r.group: r for r in rates}
    assert [r.group for r in rates] == ["female", "male", "tiny", "unknown"]
    assert (by["female"].identities, by["female"].decisions) == (30, 180)
    assert abs(by["female"].rate - 0.8) < 0.08 and abs(by["male"].rate - 0.2) < 0.08
    assert by["tiny"].small and by["unknown"].small and not by["male"].small
    assert by["female"].ci95_cluster[0] < by["female"].rate < by["female"].ci95_cluster[1]
    assert gap is not None and (gap.highest, gap.lowest) == ("female", "male")  # not the small group at 1.0
    assert gap.difference_ci95[0] > 0.3 and gap.difference_ci95[0] < 0.6 < gap.difference_ci95[1]
    assert gap.ratio is not None and gap.ratio_ci95 is not None and (gap.ratio_ci95[0] or 0) > 2
    assert abs(gap.difference - (by["female"].rate - by["male"].rate)) < 1e-12


def test_no_planted_gap_gives_an_interval_around_nothing() -> None:
    outcomes, people, groups = _decisions({"a": (25, 0.5), "b": (25, 0.5)}, seed=3)
    _, gap = sliced(outcomes, [people], groups, minimum=5)
    assert gap is not None and gap.difference_ci95[0] < 0 < gap.difference_ci95[1] + 1e-9
    assert gap.ratio_ci95 is not None and (gap.ratio_ci95[0] or 0) < 1


def test_a_lowest_rate_of_zero_has_no_ratio_and_one_group_no_differential() -> None:
    outcomes, people, groups = _decisions({"a": (10, 0.0), "b": (10, 0.5)})
    _, gap = sliced(outcomes, [people], groups, minimum=5)
    assert gap is not None and gap.ratio is None and gap.ratio_ci95 is None and gap.difference > 0
    outcomes, people, groups = _decisions({"a": (10, 0.5), "b": (2, 0.5)})
    assert sliced(outcomes, [people], groups, minimum=5)[1] is None


def test_a_decision_about_two_people_takes_their_common_group() -> None:
    group_of = {"x": "female", "y": "female", "z": "male"}
    assert row_groups([("x", "y"), ("x", "z"), ("z",), ("x", "nobody")], group_of).tolist() == \
        ["female", MIXED, "male", "unknown"]


def _planted_table(names: list[str]) -> None:
    """A predicted-attribute table for celeba-mini in the per-user folder: the first half of `names` 'a', the
    rest 'b' (their last one left without a value), and a numeric column."""
    from facesec.data.attributes import Table, predicted_path, write_table

    half = len(names) // 2
    values = {n: {"kind": "a" if i < half else "b", "score": str(i)} for i, n in enumerate(names)}
    values[names[-1]] = {"score": "0"}
    write_table(predicted_path("celeba-mini"), Table(values, ["kind", "score"], "planted", ["planted by a test"]))


def test_a_run_is_sliced_by_group_and_gated_on_its_differential(tmp_path: Path, celeba: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The small pixel run sliced by a planted attribute: the groups' decisions add up to the run's attempts and
    their rates to its success rate, the person without a value is 'unknown', a gate on the difference is
    judged from the differential; report.by on a number, an absent attribute or a dataset without a table is
    one line at validate."""
    from facesec.api import run
    from facesec.cli import main
    from facesec.data.dataset import load_dataset
    from facesec.errors import NotFetched

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    small = Path(__file__).parent / "fixtures" / "small" / "pixel.yaml"
    assert main(["validate", str(small), "--set", "report.by=[kind]"]) == 0  # valid; a command makes what it needs
    assert "dataset 'celeba-mini' has no attribute table; run `facesec data annotate celeba-mini`" in \
        capsys.readouterr().err
    with pytest.raises(NotFetched, match="has no attribute table"):
        run([small], ["report.by=[kind]"], out_root=tmp_path, progress=False)
    _planted_table(load_dataset("celeba-mini").identities)
    for by, says in (("score", "(a number: slice by a band of it"), ("sex", "'sex' is not a category")):
        assert main(["validate", str(small), "--set", f"report.by=[{by}]"]) == 2
        assert says in capsys.readouterr().err
    gate = "gates=[{metric: attack_success_rate, by: kind, stat: difference, op: '<=', value: 1.0}]"
    results, _ = run([small], ["report.by=[kind]", "report.min_group=1", gate], out_root=tmp_path, progress=False)
    record = results.runs[0]
    assert {s.metric for s in record.groups} == {"attack_success_rate", "clean_success_rate", "clean_fnmr",
                                                 "clean_fmr"}
    fnmr = next(s for s in record.groups if s.metric == "clean_fnmr")
    fmr = next(s for s in record.groups if s.metric == "clean_fmr")
    assert sum(g.decisions for g in fnmr.groups) == 6 * 3  # 6 people x 3 genuine pairs of their 3 photos
    assert {g.group: g.decisions for g in fmr.groups} == {  # impostor pairs of two people of the same group
        g.group: g.identities * (g.identities - 1) // 2 * 9 for g in fnmr.groups if g.identities > 1}
    asr = next(s for s in record.groups if s.metric == "attack_success_rate")
    n, rate = record.metrics["n_attempts"], record.metrics["attack_success_rate"]
    assert isinstance(n, int) and isinstance(rate, float) and sum(g.decisions for g in asr.groups) == n
    assert abs(sum(g.rate * g.decisions for g in asr.groups) / n - rate) < 1e-9
    assert {g.group for g in asr.groups} <= {"a", "b", "unknown"}
    verdict = record.gates[0]
    assert verdict.metric == "attack_success_rate difference by kind" and asr.differential is not None
    assert verdict.actual == asr.differential.difference and verdict.passed is True
    assert record.provenance is not None and (record.provenance.model_extra or {})["attributes"]["how"] == \
        "planted by a test"
    again, _ = run([small], ["report.by=[kind]", "report.min_group=1", gate], out_root=tmp_path, progress=False,
                   resume_runs=True)
    assert again.runs[0].resume_key == record.resume_key  # the same table: kept
    names = load_dataset("celeba-mini").identities
    _planted_table(names[::-1])  # other groups: the kept groups would be stale
    third, _ = run([small], ["report.by=[kind]", "report.min_group=1", gate], out_root=tmp_path, progress=False,
                   resume_runs=True)
    assert third.runs[0].resume_key != record.resume_key


@pytest.mark.parametrize("family", ["morph", "backdoor"])
def test_morph_and_backdoor_runs_record_their_clean_rates_by_group(family: str, tmp_path: Path, celeba: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A morph and a backdoor run hand over their target's clean pair scores with names: the clean FNMR by group,
    weighted by its decisions, is the run's own FNMR at its threshold; same-group impostor pairs are counted."""
    from facesec.api import run
    from facesec.data.dataset import load_dataset

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    _planted_table(load_dataset("celeba-mini").identities)
    small = Path(__file__).parent / "fixtures" / "small" / f"{family}.yaml"
    results, _ = run([small], ["report.by=[kind]", "report.min_group=1"], out_root=tmp_path, progress=False)
    record = results.runs[0]
    fnmr = next(s for s in record.groups if s.metric == "clean_fnmr")
    fmr = next(s for s in record.groups if s.metric == "clean_fmr")
    decisions = sum(g.decisions for g in fnmr.groups)
    rejected = sum(g.rate * g.decisions for g in fnmr.groups)
    # the run's own FNMR over the same genuine pairs at the same threshold (a backdoor: the backdoored model's)
    tar = record.metrics["clean_tar_after"] if family == "backdoor" else 1 - float(record.metrics["fnmr"])
    assert isinstance(tar, float) and decisions > 0 and abs(rejected / decisions - (1 - tar)) < 1e-9
    assert {g.group for g in fmr.groups} <= {"a", "b"} and all(g.decisions > 0 for g in fmr.groups)


def test_groups_that_all_succeed_still_leave_room_for_a_gap() -> None:
    """Every decision a success in both groups: resampling people sees no spread at all, but 12 and 6 decisions do
    not prove equal rates; the interval holds Newcombe's (from the two Wilson intervals)."""
    people = np.array([f"a{k}" for k in range(6) for _ in range(2)] + [f"b{k}" for k in range(6)])
    groups = np.array(["a"] * 12 + ["b"] * 6, dtype=object)
    _, gap = sliced(np.ones(18, dtype=bool), [people], groups, minimum=5)
    assert gap is not None and gap.difference == 0.0 and gap.ratio == 1.0
    assert gap.difference_ci95[0] < -0.2 and gap.difference_ci95[1] > 0.2
    assert gap.ratio_ci95 is not None and (gap.ratio_ci95[0] or 1) < 0.8 and (gap.ratio_ci95[1] or 0) > 1.2


def test_the_report_shows_each_run_by_group_and_escapes_group_names(tmp_path: Path) -> None:
    """A results file with a sliced run (a group named like markup, a small group): the run's section and the
    suite's 'By group' table show every group, mark the small one, and escape the names."""
    from facesec.record import RunRecord, Sliced
    from facesec.report.render import ReportBuilder
    from facesec.results import document

    outcomes = np.array([True] * 8 + [False] * 4 + [True] * 3)
    people = np.array([f"p{k // 2}" for k in range(15)])
    groups = np.array(["<script>x</script>"] * 6 + ["b"] * 6 + ["tiny"] * 3, dtype=object)
    rates, gap = sliced(outcomes, [people], groups, minimum=3)
    record = RunRecord(name="r", family="pixel", metrics={"attack_success_rate": 0.7}, groups=[
        Sliced(attribute="sex", metric="attack_success_rate", decision="attempt_success", minimum=3, groups=rates,
               differential=gap)])
    page = ReportBuilder(tmp_path).write(document("s", [record])).read_text()
    assert '<h2 id="groups">By group</h2>' in page and "attack_success_rate by sex" in page
    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "not compared" in page and "perceived and, unless a table says otherwise, predicted" in page


def test_clean_rates_by_group_use_one_threshold_from_other_people(celeba: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """`facesec eval --by`: half of the people set the threshold, the other half's genuine pairs give each group's
    FNMR and its within-group impostor pairs its FMR; every evaluated person and pair is in exactly one group."""
    import shutil

    from facesec.cli import main
    from facesec.data.attributes import OWN

    data = tmp_path / "twelve"
    people = sorted(p for p in celeba.resolve().iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 4)[:12]
    for person in people:
        (data / person.name).mkdir(parents=True)
        for photo in sorted(person.glob("*.jpg"))[:4]:
            shutil.copy(photo, data / person.name / photo.name)
    (data / OWN).write_text("identity,kind\n" + "".join(f"{p.name},{'ab'[k % 2]}\n" for k, p in enumerate(people)))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert main(["eval", "--data", str(data), "--by", "kind", "--min-group", "2"]) == 0
    out = capsys.readouterr().out
    result = json.loads(out[: out.index("\ndlib-resnet: one threshold")])
    found = result["by_group"]
    assert found["calibration_identities"] == 6 and found["evaluation_identities"] == 6 and found["fmr"] == 1e-3
    fnmr, fmr = found["by"]["kind"]["fnmr"], found["by"]["kind"]["fmr"]
    assert sum(g["identities"] for g in fnmr["groups"]) == 6
    sizes = {g["group"]: g["identities"] for g in fnmr["groups"]}
    assert sum(g["decisions"] for g in fnmr["groups"]) == 6 * 6  # 4 photos each: 6 genuine pairs a person
    assert {g["group"]: g["decisions"] for g in fmr["groups"]} == {k: n * (n - 1) // 2 * 16 for k, n in sizes.items()}
    assert "  FNMR by kind: " in out and "  FMR by kind: " in out
    assert main(["eval", "--data", str(data), "--by", "colour"]) == 2
    assert "--by: colour not a category" in capsys.readouterr().err



def test_a_differential_resamples_every_way_its_decisions_cluster_and_one_person_proves_nothing() -> None:
    """Morph-like decisions about pairs whose contributors carry the effect: resampling pairs alone would be
    narrow, resampling contributors is wide, and the differential takes the widest; a group of one person
    leaves the difference open from -1 to 1."""
    rng = np.random.default_rng(0)
    a_people, b_people = [f"a{k}" for k in range(6)], [f"b{k}" for k in range(6)]
    strong = {p: rng.random() < 0.5 for p in a_people + b_people}
    rows, outcomes, groups = [], [], []
    for side, members in (("a", a_people), ("b", b_people)):
        for k in range(60):
            x, y = members[k % 6], members[(k // 6) % 6]
            rows.append((x, y))
            outcomes.append(strong[x] or (side == "a" and rng.random() < 0.3))
            groups.append(side)
    pairs = np.array([f"{x}+{y}+{i}" for i, (x, y) in enumerate(rows)])
    first = np.array([x for x, _ in rows])
    narrow = sliced(np.array(outcomes), [pairs], np.array(groups, dtype=object), 2, rows)[1]
    wide = sliced(np.array(outcomes), [pairs, first], np.array(groups, dtype=object), 2, rows)[1]
    assert narrow is not None and wide is not None
    assert wide.difference_ci95[1] - wide.difference_ci95[0] > narrow.difference_ci95[1] - narrow.difference_ci95[0]
    one = sliced(np.array([True, True, False, False]), [np.array(["x", "x", "y", "y"])],
                 np.array(["g", "g", "h", "h"], dtype=object), 1)[1]
    assert one is not None and one.difference_ci95 == [-1.0, 1.0] and one.ratio is None
    half = sliced(np.array([True, True, False, False, True]), [np.array(["x", "x", "y", "z", "w"])],
                  np.array(["g", "g", "h", "h", "h"], dtype=object), 1)[1]
    assert half is not None and half.difference_ci95 == [-1.0, 1.0] and half.ratio_ci95 == [0.0, None]


def test_by_on_the_command_line_is_report_by(celeba: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """`--by sex,kind` means `--set "report.by=[sex, kind]"`; given both ways it is one line, exit 2."""
    from facesec.cli import main
    from facesec.data.dataset import load_dataset

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    _planted_table(load_dataset("celeba-mini").identities)
    small = Path(__file__).parent / "fixtures" / "small" / "pixel.yaml"
    assert main(["validate", str(small), "--by", "kind"]) == 0
    assert main(["validate", str(small), "--by", "kind,colour"]) == 2
    assert "'colour' is not a category" in capsys.readouterr().err
    assert main(["validate", str(small), "--by", "kind", "--set", "report.min_group=3"]) == 0
    assert main(["validate", str(small), "--by", "kind", "--set", "report.by=[kind]"]) == 2
    assert "give --by or --set report.by=..., not both" in capsys.readouterr().err


def test_a_group_record_read_back_must_hold_its_values() -> None:
    """results.json is someone else's file: a group rate outside its interval, a difference its interval does not
    hold, a ratio without an interval or an interval with its ends reversed is not a record facesec wrote."""
    import pydantic

    from facesec.record import Differential, GroupRate

    GroupRate(group="a", identities=3, decisions=9, rate=0.5, ci95_cluster=[0.2, 0.8], small=False)
    bad_rates = [{"rate": 0.9, "ci95_cluster": [0.2, 0.8]}, {"rate": 0.5, "ci95_cluster": [0.8, 0.2]}]
    for bad in bad_rates:
        with pytest.raises(pydantic.ValidationError):
            GroupRate.model_validate({"group": "a", "identities": 3, "decisions": 9, "small": False, **bad})
    good = {"highest": "a", "lowest": "b", "difference": 0.2, "difference_ci95": [0.1, 0.3], "ratio": 2.0,
            "ratio_ci95": [1.5, None]}
    Differential.model_validate(good)
    for change in ({"difference_ci95": [0.3, 0.4]}, {"ratio_ci95": None}, {"ratio_ci95": [2.5, 3.0]},
                   {"ratio": None}, {"difference": 2.0}):
        with pytest.raises(pydantic.ValidationError):
            Differential.model_validate({**good, **change})
