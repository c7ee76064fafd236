"""Operating points out of sample (issue 39, point 1): the calibration identities take no other part in any
family's run, every run of a suite judges at the same threshold per recognizer, the threshold's interval resamples
people, and a calibration too small for its FMR is refused before anything runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facesec import calibration
from facesec.errors import ConfigError, DataError
from facesec.loading import load_threat_models
from facesec.measures import operating
from facesec.protocols import threshold_at_fmr
from facesec.threat_model import OpenSet, ThreatModel

SMALL = Path(__file__).parent / "fixtures" / "small"
OPEN_SET = ("pixel", "accessory", "morph", "template-inversion", "backdoor")


def _model(name: str, *overrides: str) -> ThreatModel:
    return load_threat_models(SMALL / f"{name}.yaml", list(overrides))[0]


def test_an_open_set_run_must_say_where_its_threshold_comes_from(celeba: Path) -> None:
    """No calibration is refused before anything runs, naming both fixes; `in-sample` is accepted as said (and
    flagged by the engine); `--set setting.calibration.identities=N` turns that into an out-of-sample draw."""
    with pytest.raises(DataError, match="field 'setting.calibration'.*identities: 100.*in-sample"):
        calibration.check(_model("pixel", "setting.calibration=null"))
    calibration.check(_model("pixel"))  # the fixture says calibration: in-sample
    with pytest.raises(ConfigError, match=r"^--set setting.calibration \(on \S+\): field 'setting.calibration': "
                                          r"give \{identities: N\}"):
        _model("pixel", "setting.calibration=in sample")  # a misspelt word names the field and what it takes
    with pytest.raises(ConfigError, match=r"field 'setting.calibration.identities': Input should be greater"):
        _model("pixel", "setting.calibration.identities=-1")  # no pydantic union label in the field's name
    calibration.check(_model("classifier-inversion"))  # closed set: no threshold to calibrate
    tm = _model("pixel", "setting.calibration.identities=40")
    assert isinstance(tm.setting, OpenSet) and tm.setting.calibrated() is not None


def test_the_draw_is_seeded_and_its_faces_come_from_its_identities(celeba: Path) -> None:
    tm = _model("pixel", "setting.calibration.identities=40")
    first, again = calibration.draw(tm), calibration.draw(tm)
    assert first is not None and first == again and len(first.names) == 40 and first.shared
    assert {ident for _, ident in first.files} == set(first.names)
    assert all(sum(i == name for _, i in first.files) == 5 for name in first.names)
    other = calibration.draw(_model("pixel", "setting.calibration.identities=40", "data.seed=1"))
    assert other is not None and set(other.names) != set(first.names)
    assert calibration.draw(_model("pixel")) is None  # in sample: nothing drawn


def test_a_calibration_too_small_for_its_fmr_is_refused_before_anything_runs(celeba: Path) -> None:
    with pytest.raises(DataError, match="setting.calibration.*4750 impostor pairs, under the 10000"):
        calibration.check(_model("pixel", "setting.fmr=0.001", "setting.calibration.identities=20"))
    with pytest.raises(DataError, match="setting.calibration.*780 pairs of people"):  # enough photos, few people
        calibration.check(_model("pixel", "setting.fmr=0.001", "setting.calibration.identities=40",
                                 "setting.calibration.images_per_identity=10"))
    calibration.check(_model("pixel", "setting.fmr=0.001", "setting.calibration.identities=20",
                             "setting.calibration.accept_unsupported=true"))
    calibration.check(_model("pixel", "setting.fmr=0.001", "setting.calibration.identities=50"))
    with pytest.raises(DataError, match="setting.calibration.identities"):
        calibration.check(_model("pixel", "setting.calibration.identities=100000"))
    with pytest.raises(DataError, match="data.identities.*besides the 230 calibration identities"):
        calibration.check(_model("pixel", "setting.calibration.identities=230", "data.identities=30"))


def test_a_family_drawing_more_people_than_fit_beside_the_calibration_is_refused_at_validate(celeba: Path) -> None:
    """The identities a family draws besides the attacked ones (a backdoor's fine-tuning people, a morph's
    gallery, an inversion's public people) must fit too, before any run starts: with 100 calibration people
    out, celeba-mini cannot give 140 fine-tuning identities with 15 faces; in sample it can. A morph gallery of
    300 fits in no way."""
    from facesec.validation import check

    big = ["perturbation.training_identities=140", "perturbation.training_images_per_identity=15"]
    check([SMALL / "backdoor.yaml"], big)
    with pytest.raises(DataError, match=r"field '\S+': dataset 'celeba-mini' has \d+ identities with 15 images besides "
                                        r"the 100 calibration identities.*perturbation.training_identities \(140"):
        check([SMALL / "backdoor.yaml"], [*big, "setting.calibration.identities=100"])
    with pytest.raises(DataError, match=r"field 'perturbation.calibration_identities'.*: 308 of them; lower data"):
        check([SMALL / "morph.yaml"], ["perturbation.calibration_identities=300"])
    # each group fits alone (8 of 235 identities with 4 images, 230 of them), not both together
    with pytest.raises(DataError, match=r"perturbation.calibration_identities \(230, 4 images each\): 238 of them"):
        check([SMALL / "morph.yaml"], ["perturbation.calibration_identities=230"])
    check([SMALL / "morph.yaml"], ["perturbation.calibration_identities=220"])
    # the backdoor picks its fine-tuning people together with the attacked ones, all with 30 images (26 have)
    with pytest.raises(DataError, match=r"picks perturbation.training_identities \(24\) together with "
                                        r"data.identities \(6\)"):
        check([SMALL / "backdoor.yaml"], ["perturbation.training_identities=24",
                                          "perturbation.training_images_per_identity=30"])
    with pytest.raises(DataError, match=r"field 'perturbation.public_identities'"):
        check([SMALL / "template-inversion.yaml"], ["perturbation.public_identities=240"], missing=[])


def _scores(per_person: list[int], shift: np.ndarray, seed: int = 0) -> operating.Scores:
    """Impostor scores of people with these face counts; `shift` moves every pair of a person (a person whose
    faces all look alike to others): scores cluster by person."""
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(len(per_person)), per_person)
    iu = np.triu_indices(len(ids), k=1)
    keep = ids[iu[0]] != ids[iu[1]]
    a, b = ids[iu[0]][keep], ids[iu[1]][keep]
    impostor = rng.normal(size=a.size) + shift[a] + shift[b]
    return operating.Scores(np.zeros(0), impostor, np.stack([a, b], 1), np.bincount(ids))


def test_the_threshold_interval_resamples_people_and_holds_the_threshold() -> None:
    k = 40
    alike = _scores([5] * k, np.random.default_rng(1).normal(scale=1.0, size=k))
    independent = _scores([5] * k, np.zeros(k))
    for scores in (alike, independent):
        t = threshold_at_fmr(scores.impostor, 0.01)
        lo, hi = operating.threshold_interval(scores, 0.01)
        assert lo <= t <= hi
    # people whose pairs move together: resampling people spreads the threshold far more than independent pairs
    width = [np.subtract(*operating.threshold_interval(s, 0.01)[::-1]) for s in (alike, independent)]
    assert width[0] > 2 * width[1]


def test_the_weighted_threshold_is_the_plain_one_at_unit_weights() -> None:
    scores = _scores([3] * 30, np.zeros(30), seed=4)
    for fmr in (0.5, 0.05, 0.003):
        # one draw with every person once: multinomial(k, 1/k) is not that, so compare through the definition
        desc = np.sort(scores.impostor)[::-1]
        at = int(np.searchsorted(np.cumsum(np.ones(desc.size)), fmr * desc.size, side="right"))
        assert desc[min(at, desc.size - 1)] == threshold_at_fmr(scores.impostor, fmr)


@pytest.fixture(scope="module")
def calibrated_suite(tmp_path_factory: pytest.TempPathFactory, celeba: Path, gan_installed: Path) -> dict[str, Any]:
    """Every open-set family's small run with 100 calibration identities, as one suite, with the files each run's
    populations aligned (calibration faces are aligned by the calibration alone)."""
    from facesec import population
    from facesec.api import run

    aligned: list[Path] = []
    real = population.align_faces

    def spy(paths: Any, *args: Any, **kwargs: Any) -> Any:
        aligned.extend(Path(p) for p in paths)
        return real(paths, *args, **kwargs)

    population.align_faces = spy  # type: ignore[assignment]
    try:
        results, _ = run([SMALL / f"{name}.yaml" for name in OPEN_SET], out_root=tmp_path_factory.mktemp("cal"),
                         suite="cal", overrides=["setting.calibration.identities=100"], progress=False)
    finally:
        population.align_faces = real  # type: ignore[assignment]
    draw = calibration.draw(_model("pixel", "setting.calibration.identities=100"))
    assert draw is not None
    return {"records": results.runs, "aligned": aligned, "draw": draw}


def test_no_family_draws_a_calibration_identity(calibrated_suite: dict[str, Any]) -> None:
    draw = calibrated_suite["draw"]
    reserved = {path for path, _ in draw.files} | {p for p, ident in _all_files() if ident in set(draw.names)}
    touched = [p for p in calibrated_suite["aligned"] if p in reserved]
    assert calibrated_suite["aligned"] and not touched, touched[:5]
    for record in calibrated_suite["records"]:
        assert record.error is None, record.error
        assert {p.source for p in record.operating_points} == {"out-of-sample"}, record.name


def test_every_family_judges_at_the_suites_one_threshold_per_recognizer_and_fmr(
        calibrated_suite: dict[str, Any]) -> None:
    seen: dict[tuple[str, float], set[float]] = {}
    for record in calibrated_suite["records"]:
        for p in record.operating_points:
            assert p.draw == calibrated_suite["draw"].key()[:16] and p.identities == 100
            assert p.threshold_ci95[0] <= p.threshold <= p.threshold_ci95[1]
            assert p.fmr_measured is not None and p.measured_pairs > 0
            if "(" not in p.recognizer:  # a fine-tuned model (backdoored, benign fine-tune) has a threshold of its own
                seen.setdefault((p.recognizer, p.fmr), set()).add(p.threshold)
            assert not any("in-sample" in f for f in (record.validity.flags if record.validity else []))
    assert seen and all(len(ts) == 1 for ts in seen.values()), seen
    # pixel and accessory at FMR 0.05, morph and template inversion at 0.01: two runs share each
    assert sorted(seen) == [("dlib-resnet", 0.01), ("dlib-resnet", 0.05)]


def test_an_in_sample_run_says_so(tmp_path: Path, celeba: Path) -> None:
    from facesec.api import run

    results, _ = run([SMALL / "pixel.yaml"], out_root=tmp_path, suite="s", progress=False)
    record = results.runs[0]
    assert [p.source for p in record.operating_points] == ["in-sample"]
    assert record.validity is not None and any("in-sample operating point" in f for f in record.validity.flags)


def _all_files() -> list[tuple[Path, str]]:
    from facesec.data.dataset import load_dataset

    return list(load_dataset("celeba-mini").items)


def _point(run_threshold: float, source: str = "out-of-sample", **curve: Any) -> dict[str, Any]:
    return {"recognizer": "dlib-resnet", "fmr": 0.001, "threshold": run_threshold, "threshold_ci95": [0.5, 0.7],
            "source": source, "dataset": "celeba-mini", "identities": 100, "impostor_pairs": 123750,
            "identity_pairs": 4950, "supported": True, "draw": "ab12" if source == "out-of-sample" else "",
            "fmr_measured": 0.002, "fmr_measured_ci95": [0.001, 0.004], "fmr_measured_ci95_cluster": [0.0005, 0.006],
            "measured_pairs": 4750, "curve": {"det": [[0.001, 0.1], [0.01, 0.05], [0.1, 0.0]],
                                              "edges": [0.0, 0.5, 1.0], "genuine": [1, 9], "impostor": [9, 1], **curve}}


def test_the_report_shows_each_runs_operating_point_and_one_figure_per_calibration(tmp_path: Path) -> None:
    from facesec.record import Results
    from facesec.report.render import build_report

    runs = [{"name": name, "family": "pixel", "operating_points": [point]}
            for name, point in (("a", _point(0.6)), ("b", _point(0.6)), ("c", _point(0.55, "in-sample")))]
    results = Results.model_validate({"schema_version": 1, "suite": "s", "runs": runs})
    report = build_report(results, tmp_path, tmp_path, False)
    rows = report.operating.rows
    assert [r.run for r in rows] == ["a", "b", "c"] and report.operating.in_sample == 1
    assert rows[0].threshold == "0.6 [0.5, 0.7]" and "100 identities of celeba-mini apart" in rows[0].calibrated_on
    assert rows[0].measured == "0.002 [0.0005, 0.006] on 4750 impostor pairs"  # the people's interval
    assert rows[2].in_sample and rows[2].calibrated_on.startswith("in sample")
    assert len(report.operating.figures) == 2  # a and b share their calibration; c has its own people
    assert all(f.uri.startswith("data:image/png;base64,") for f in report.operating.figures)


@pytest.mark.parametrize("curve", [{"det": [[0.0, 0.0]]}, {"det": [[1.0]], "edges": [1.0, 0.0]},
                                   {"det": [[float("nan"), 2.0]] * 3}, {"edges": [0.0, 1.0], "genuine": [-5]},
                                   {"det": [[0.1, 0.1]] * 5000}])
def test_a_curve_from_someone_elses_file_is_left_out_not_fatal(tmp_path: Path, curve: dict[str, Any]) -> None:
    from facesec.record import Results
    from facesec.report.render import build_report

    runs = [{"name": "a", "family": "pixel", "operating_points": [_point(0.6, **curve)]}]
    results = Results.model_validate({"schema_version": 1, "suite": "s", "runs": runs})
    report = build_report(results, tmp_path, tmp_path, False)
    assert len(report.operating.rows) == 1 and len(report.operating.figures) <= 1


@pytest.mark.parametrize("curve", [{"edges": [-1e308, 0.0, 1e308]}, {"edges": [0.0, 1e-300, 2e-300]}])
def test_a_histogram_that_cannot_be_drawn_leaves_the_table(tmp_path: Path, curve: dict[str, Any]) -> None:
    from facesec.record import Results
    from facesec.report.render import build_report

    runs = [{"name": "a", "family": "pixel", "operating_points": [_point(0.6, **curve)]}]
    results = Results.model_validate({"schema_version": 1, "suite": "s", "runs": runs})
    assert len(build_report(results, tmp_path, tmp_path, False).operating.rows) == 1


def test_the_measured_fmr_interval_resamples_people_not_pairs() -> None:
    """All false matches involve one person: resampling people (who that person's pairs go with) spreads the rate
    far more than treating the pairs as independent (Wilson), and the interval never falls below Wilson's."""
    from facesec.measures.rates import wilson_interval

    scores = _scores([5] * 30, np.zeros(30))
    accepted = (scores.people == 0).any(axis=1) & (np.arange(len(scores.impostor)) % 5 == 0)
    lo, hi = operating.pair_rate_interval(accepted, scores)
    w_lo, w_hi = wilson_interval(int(accepted.sum()), accepted.size)
    assert lo <= w_lo and hi >= w_hi and hi - lo > 2 * (w_hi - w_lo)


def test_a_calibration_too_large_to_compare_pair_by_pair_is_refused(celeba: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calibration, "MAX_FACES", 50)
    with pytest.raises(DataError, match=r"setting.calibration': 20 identities x 5 faces are 100 faces, more than "
                                        r"the 50.*at most 10"):
        calibration.draw(_model("pixel", "setting.calibration.identities=20"))


def test_too_many_attacked_people_are_refused_at_validate_even_without_a_calibration_apart(celeba: Path) -> None:
    """A run with its threshold in sample (or closed-set) and no other draws still needs data.identities people
    with enough faces: `validate` says so before `run` touches the output."""
    from facesec.validation import check

    check([SMALL / "pixel.yaml"], ["data.identities=200"])
    with pytest.raises(DataError, match=r"--set data.identities .*has \d+ identities with 30 images, and the run "
                                        r"draws data.identities \(240, 30 images each\)"):
        check([SMALL / "pixel.yaml"], ["data.identities=240", "data.images_per_identity=30"])
    with pytest.raises(DataError, match=r"has \d+ identities with 3 images, and the run draws data.identities"):
        check([SMALL / "pixel.yaml"], ["setting={kind: closed-set}", "data.identities=300"])
