"""Robustness curves: where success crosses one half, between the budgets measured, with an interval that
resamples people, and the suite's runs that differ only in their budget found and summed up."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facesec.api import run
from facesec.measures.curves import budget_at, crossing

SMALL = Path(__file__).parent / "fixtures" / "small"


def test_the_crossing_is_linear_between_the_budgets_measured() -> None:
    assert crossing([2, 4, 8], [0.1, 0.3, 0.9]) == pytest.approx(4 + (0.5 - 0.3) * 4 / 0.6)
    assert crossing([8, 2, 4], [0.9, 0.1, 0.3]) == crossing([2, 4, 8], [0.1, 0.3, 0.9])  # order of the runs
    assert crossing([2, 4], [0.6, 0.9]) == 2  # reached at the smallest budget already
    assert crossing([2, 4], [0.1, 0.4]) is None


def test_the_interval_resamples_people_and_says_when_an_end_lies_beyond_the_budgets() -> None:
    """Ten people, two attempts each; at the middle budget half of the people are fooled on both attempts:
    the crossing is there, and its interval spans budgets on both sides because people differ."""
    people = np.repeat(np.arange(10), 2)
    low, mid, high = np.zeros(20), np.repeat([1.0, 0.0], 10), np.ones(20)
    at, (lo, hi), rates = budget_at([1.0, 2.0, 3.0], np.stack([low, mid, high]), people)
    assert rates == [0.0, 0.5, 1.0] and at == 2.0 and lo is not None and hi is not None and lo < 2.0 < hi
    weak = np.stack([low, np.repeat([1.0, 0.0], [4, 16]), np.repeat([1.0, 0.0], [8, 12])])  # 0, 0.2, 0.4
    at, (lo, hi), _ = budget_at([1.0, 2.0, 3.0], weak, people)
    assert at is None and hi is None


def test_a_budget_list_makes_a_curve_in_the_suite_and_the_report(tmp_path: Path, celeba: Path) -> None:
    results, out = run([SMALL / "pixel.yaml"], ["perturbation.eps=[0, 1/255, 4/255]", "attack.steps=3"],
                       out_root=tmp_path, progress=False)
    [curve] = results.to_json()["curves"]
    assert curve["budgets"] == sorted(curve["budgets"]) and len(curve["runs"]) == 3
    assert curve["rates"][0] == 0.0 and curve["rates"][-1] >= curve["rates"][0]
    page = (out / "index.html").read_text()
    assert 'id="curves"' in page and "budget at 50% success" in page


def test_a_curve_read_back_from_a_results_file_is_checked(tmp_path: Path) -> None:
    """A results.json from elsewhere with an empty or non-finite curve is refused in one line, not rendered."""
    from facesec.errors import ConfigError
    from facesec.results import read_results

    curve = {"runs": ["a", "b"], "setting": "perturbation.eps", "decision": "x", "level": 0.5, "budgets": [0.01, 0.03],
             "rates": [0.2, 0.8], "budget_at_level": 0.02, "ci95": [0.01, None], "people": 5}
    assert read_results({"schema_version": 1, "runs": [], "curves": [curve]}, "ok").curves[0].budget_at_level == 0.02
    for bad in ({"budgets": [], "rates": []}, {"budgets": [0.01, float("inf")]}, {"runs": ["a"]}):
        with pytest.raises(ConfigError, match="curves.0"):
            read_results({"schema_version": 1, "runs": [], "curves": [{**curve, **bad}]}, "elsewhere")
