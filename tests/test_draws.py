"""Draws as a dimension (issue 39, point 3): a list of data.seed values expands into one run per draw, and the
report pools a threat model's draws with an interval that holds the spread between them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from facesec.loading import load_threat_models
from facesec.measures.pooling import pooled_rate
from facesec.record import Results
from facesec.report.draws import groups
from facesec.report.render import build_report

SMALL = Path(__file__).parent / "fixtures" / "small"


def test_a_list_of_seeds_expands_into_one_run_per_draw(celeba: Path) -> None:
    runs = load_threat_models(SMALL / "pixel.yaml", ["data.seed=[100, 101, 102]"])
    assert [tm.data.seed for tm in runs] == [100, 101, 102]
    assert [tm.name for tm in runs] == [f"small-pixel[seed={s}]" for s in (100, 101, 102)]


def test_agreeing_draws_pool_to_a_narrower_interval_than_each() -> None:
    pooled = pooled_rate([0.5, 0.5, 0.5], [(0.4, 0.6)] * 3)
    assert pooled.rate == pytest.approx(0.5) and pooled.tau == 0
    assert 0.4 < pooled.ci95[0] < 0.5 < pooled.ci95[1] < 0.6


def test_disagreeing_draws_widen_the_pooled_interval_to_their_spread() -> None:
    within = [(0.05, 0.15), (0.45, 0.55), (0.85, 0.95)]
    pooled = pooled_rate([0.1, 0.5, 0.9], within)
    assert pooled.rate == pytest.approx(0.5) and pooled.tau > 0.3
    assert pooled.ci95 == (0.0, 1.0)  # three draws this far apart say little about the next one
    two = pooled_rate([0.45, 0.55], [(0.40, 0.50), (0.50, 0.60)])
    assert two.ci95[1] - two.ci95[0] > 0.1  # wider than either draw's own interval
    with pytest.raises(ValueError):
        pooled_rate([0.5], [(0.4, 0.6)])


def _run(name: str, seed: int, rate: float, ends: list[float], error: str | None = None) -> dict[str, Any]:
    tm = {"name": name, "data": {"dataset": "celeba-mini", "seed": seed}, "perturbation": {"kind": "pixel"}}
    out: dict[str, Any] = {"name": name, "family": "pixel", "threat_model": tm, "source": "t.yaml",
                           "metrics": {"attack_success_rate": rate, "attack_success_ci95_cluster": ends},
                           "headline": {"metric": "attack_success_rate", "label": "ASR"}}
    return {**out, "error": error} if error else out


def test_the_report_pools_runs_that_differ_only_in_their_draw(tmp_path: Path) -> None:
    runs = [_run(f"q[goal=dodging,seed={s}]", s, r, [r - 0.1, r + 0.1]) for s, r in ((100, 0.5), (101, 0.6),
                                                                                     (102, 0.55))]
    runs += [_run("q[goal=impersonation,seed=100]", 100, 0.2, [0.1, 0.3]),  # one draw only: not pooled
             _run("q[goal=dodging,seed=103]", 103, 0.0, [0.0, 0.0], error="out of memory")]  # failed: left out
    results = Results.model_validate({"schema_version": 1, "suite": "s", "runs": runs})
    found = groups(results.runs, [f"run-{i}" for i in range(len(runs))])
    assert len(found) == 1
    group = found[0]
    assert group.name == "q[goal=dodging]" and group.metric == "ASR"
    assert [(d.seed, d.value) for d in group.draws] == [("100", "0.50 [0.40, 0.60]"), ("101", "0.60 [0.50, 0.70]"),
                                                        ("102", "0.55 [0.45, 0.65]")]
    assert group.pooled.startswith("0.55 [")
    assert build_report(results, tmp_path, tmp_path, False).draws[0].name == "q[goal=dodging]"


def test_a_draw_with_a_hostile_interval_leaves_the_pool_empty(tmp_path: Path) -> None:
    runs = [_run(f"q[seed={s}]", s, 0.5, ends) for s, ends in ((1, [0.4, 0.6]), (2, [0.9, 0.1]))]
    found = groups(Results.model_validate({"schema_version": 1, "suite": "s", "runs": runs}).runs, ["a", "b"])
    assert len(found) == 1 and found[0].pooled == "—"


@pytest.mark.parametrize("seed", [[1], {"a": 1}, "7", None, True, 2.5])
def test_a_seed_that_is_no_whole_number_is_left_out_of_the_pool(tmp_path: Path, seed: Any) -> None:
    runs = [_run(f"q[seed={s}]", s, 0.5, [0.4, 0.6]) for s in (1, 2)]
    runs.append({**_run("q[seed=9]", 9, 0.5, [0.4, 0.6]), "threat_model": {
        "name": "q[seed=9]", "data": {"dataset": "celeba-mini", "seed": seed}, "perturbation": {"kind": "pixel"}}})
    runs.append(_run("q[seed=2]", 2, 0.9, [0.8, 1.0]))  # the same seed again: counted once
    results = Results.model_validate({"schema_version": 1, "suite": "s", "runs": runs})
    found = build_report(results, tmp_path, tmp_path, False).draws
    assert len(found) == 1 and [d.seed for d in found[0].draws] == ["1", "2"]


def test_a_seed_listed_twice_is_refused_in_one_line(celeba: Path) -> None:
    from facesec.errors import ConfigError

    with pytest.raises(ConfigError, match=r"field 'data.seed': 1 is listed twice"):
        load_threat_models(SMALL / "pixel.yaml", ["data.seed=[1, 2, 1]"])


def test_draws_n_repeats_every_threat_model_on_the_confirmation_seeds(celeba: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """`--draws 3` is data.seed [100, 101, 102]; out of range, or beside `--set data.seed`, it is refused."""
    from facesec.cli import main

    assert main(["validate", str(SMALL / "pixel.yaml"), "--draws", "3"]) == 0
    said = capsys.readouterr().out
    assert all(f"small-pixel[seed={s}]" in said for s in (100, 101, 102))
    assert main(["validate", str(SMALL / "pixel.yaml"), "--draws", "0"]) == 2
    assert main(["validate", str(SMALL / "pixel.yaml"), "--draws", "2", "--set", "data.seed=4"]) == 2
    assert "give --draws or --set data.seed" in capsys.readouterr().err
