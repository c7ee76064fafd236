"""Morphing-attack detectors: the D-EER and the deployed threshold mean what ISO/IEC 30107-3 says, a fitted
detector separates what differs and scores with a gradient, and a differential one needs its live capture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from facesec.defences.base import build
from facesec.defences.mad import C_GRID, Differential, SingleImage, equal_error_rate


def test_the_equal_error_rate_is_where_apcer_meets_bpcer() -> None:
    """Bona fide 0..3, attacks 2.5..5.5: at 2.5 one attack passes (APCER 1/4) and one bona fide is flagged
    (BPCER 1/4)."""
    eer, at = equal_error_rate(np.array([0.0, 1, 2, 3]), np.array([2.5, 3.5, 4.5, 5.5]))
    assert eer == pytest.approx(0.25) and at == 2.5
    assert equal_error_rate(np.array([0.0, 1]), np.array([2.0, 3]))[0] == 0.0


def test_a_fitted_detector_separates_shifted_features_and_has_a_gradient() -> None:
    """Morph features shifted along one direction: fitted on one sample, the detector flags about its BPCER of
    new bona fide samples at the threshold set on others, misses few new attacks, and its score has a gradient."""
    rng = np.random.default_rng(0)

    def sample(n: int, shift: float) -> torch.Tensor:
        x = rng.normal(size=(n, 16))
        x[:, 0] += shift
        return torch.from_numpy(x).float()

    detector = build("s-mad", {"bpcer": 0.1}, 0)
    assert isinstance(detector, SingleImage)
    detector.fit(sample(200, 0), sample(200, 3), np.r_[np.arange(200) // 4, np.arange(200) // 4])
    assert detector.c in C_GRID  # chosen by cross-validation over people
    detector.set_threshold(detector.score(sample(400, 0)).detach().numpy())
    bona, attacks = (detector.score(sample(2000, s)).detach().numpy() for s in (0, 3))
    assert 0.06 < (bona > detector.threshold).mean() < 0.14
    assert (attacks <= detector.threshold).mean() < 0.3
    assert equal_error_rate(bona, attacks)[0] < 0.15
    x = sample(4, 3).requires_grad_(True)
    (grad,) = torch.autograd.grad(detector.score(x).sum(), x)
    assert float(grad[:, 0].min()) > 0  # moving along the morph direction raises the score


def test_a_differential_detector_compares_with_the_live_capture() -> None:
    detector = build("d-mad", {}, 0)
    assert isinstance(detector, Differential)
    a, b = torch.randn(3, 8), torch.randn(3, 8)
    assert torch.allclose(detector.features(a, a), torch.zeros(3, 8))
    assert torch.allclose(detector.features(a, b), detector.features(b, a))  # how far they differ, not which way
    assert detector.features(a, b).shape == (3, 8)
    with pytest.raises(ValueError, match="live capture"):
        detector.features(a)


def test_a_detection_aware_morph_is_pushed_below_the_detector() -> None:
    """The same optimisation with and without the detector's term: aware, the detector scores the morphs lower
    (they are kept below its threshold before matching counts)."""
    import torch.nn.functional as F

    from facesec.families.morph.optimise import AttackerView, optimise
    from facesec.recognizers.base import Recognizer, RecognizerInfo

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 6))
    model = Recognizer(net, RecognizerInfo("toy", 8, None, 6, "cosine", None, None)).eval()  # type: ignore[arg-type]
    photos = torch.rand(4, 3, 8, 8)
    grid = F.affine_grid(torch.eye(2, 3).expand(4, 2, 3), [4, 3, 8, 8], align_corners=False)
    with torch.no_grad():
        emb = model(photos)
    detector = build("s-mad", {}, 0)
    detector.fit(torch.randn(64, 6), torch.randn(64, 6) + 1.0)  # type: ignore[union-attr]
    detector.threshold = float(detector.score(detector.features(emb)).min()) - 5  # type: ignore[union-attr]

    def caught(e: torch.Tensor) -> torch.Tensor:
        return detector.score(detector.features(e)) - detector.threshold  # type: ignore[union-attr]

    templates = torch.randn(4, 6), torch.randn(4, 6)
    plain = optimise(photos, [AttackerView(model, grid, *templates)], 0.1, 10)
    aware = optimise(photos, [AttackerView(model, grid, *templates, caught)], 0.1, 10)
    with torch.no_grad():
        assert bool((caught(model(aware)) < caught(model(plain))).all())
        assert bool((caught(model(aware)) < caught(emb)).all())


def test_detectors_in_the_morph_loop(tmp_path: Path, celeba: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Landmark morphs judged with an S-MAD and a D-MAD fitted on morphs of people apart from the run's: the
    detector's rates at its threshold, the D-EER, and the MMPMR of morphs it lets through, which becomes the run's
    MMPMR and decisions (the recognizer's alone kept beside, never below it); the pixel family refuses a detector."""
    from facesec.api import run
    from facesec.cli import main

    small = Path(__file__).parent / "fixtures" / "small"
    results, out = run([small / "morph.yaml"], ["defence=[{name: s-mad, identities: 16}, {name: d-mad, "
                                                "identities: 16}]"], out_root=tmp_path, progress=False)
    for record in results.to_json()["runs"]:
        m = record["metrics"]
        assert record["dimensions"]["defence"].startswith(("s-mad(", "d-mad("))
        assert 0 <= m["mad_apcer"] <= 1 and 0 <= m["mad_bpcer"] <= 1 and 0 <= m["mad_deer"] <= 1
        assert m["mmpmr_past_detector"] <= m["mmpmr_ignoring_detector"] and "mad_apcer_non_adaptive" not in m
        assert m["mmpmr"] == m["mmpmr_past_detector"]  # MMPMR with the detector in the loop: what gates read
        table = pd.read_csv(out / record["samples_csv"])
        assert table["mated_match"].mean() == m["mmpmr"]
        assert table["matched_ignoring_detector"].mean() == m["mmpmr_ignoring_detector"]
        lo, hi = m["mad_bpcer_ci95_cluster"]
        assert lo <= m["mad_bpcer"] <= hi
        rows = (out / record["samples_csv"]).read_text().splitlines()[1:]
        contributors = {name for row in rows for name in row.split(",")[1:3]}
        training = record["detector_training"]
        assert len(training["people"]) == 16 and not set(training["people"]) & contributors
        assert training["fit_people"] == training["threshold_people"] == 8
    assert main(["validate", str(small / "morph.yaml"), "--set",
                 "gates=[{metric: mmpmr_past_detector, op: '<=', value: 0.1}]"]) == 2
    assert "recorded by runs with a detector" in capsys.readouterr().err
    page = (out / "index.html").read_text()
    assert "Morphing-attack detector in the loop" in page and "landmark morphs</td>" in page
    assert main(["validate", str(small / "pixel.yaml"), "--set", "defence=s-mad"]) == 2
    assert "cannot evaluate a defence of stage detector" in capsys.readouterr().err


def test_the_backdoor_defences_are_values_of_the_defence_dimension(tmp_path: Path, celeba: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """`defence: strip` on a backdoor run is carried out as `perturbation.defences: [strip]` is and names the run's
    defence; it is refused where it would run twice or where no family trains a poisoned victim; the registry
    knows exactly the defences the backdoor family carries out."""
    from typing import get_args

    from facesec.api import run
    from facesec.cli import main
    from facesec.families.backdoor.spec import Defence
    from facesec.plugins import DEFENCES

    assert set(get_args(Defence)) == {n for n in DEFENCES.names() if DEFENCES.meta(n).get("stage") == "poisoning"}
    small = Path(__file__).parent / "fixtures" / "small"
    results, _ = run([small / "backdoor.yaml"], ["defence=strip"], out_root=tmp_path, progress=False)
    screened = results.to_json()["runs"][0]
    assert screened["dimensions"]["defence"] == "strip" and list(screened["metrics"]["defences"]) == ["strip"]
    assert main(["validate", str(small / "backdoor.yaml"), "--set", "defence=strip",
                 "--set", "perturbation.defences=[strip]"]) == 2
    assert "is in perturbation.defences already" in capsys.readouterr().err
    assert main(["validate", str(small / "pixel.yaml"), "--set", "defence=fine-pruning"]) == 2
    assert "cannot evaluate a defence of stage poisoning" in capsys.readouterr().err


def test_a_hostile_detector_record_reads_as_missing() -> None:
    """A results file from someone else: a boolean threshold is no detector, values of the wrong type read as
    dashes, and the method names only what the family makes."""
    from facesec.families.morph.report import _detector

    assert _detector({"mad_threshold": True}, {}, None) is None
    shown = _detector({"mad_threshold": 1.0, "mad_apcer": "x", "mad_apcer_ci95_cluster": ["a", None],
                       "mad_deer": [1]}, {"fit_people": "3", "morphs": "<script>"}, ["<b>"])
    assert shown == {"rows": [("the run's morphs", "—", "—", "—")], "bpcer": "—", "fitted": ""}


def test_the_worst_case_counts_a_pair_any_of_whose_morphs_passes_and_flags_a_weaker_aware_attack() -> None:
    """Each pair's best morph: the OR of the three kinds; a detection-aware optimisation that passes clearly fewer
    pairs than the unaware one is flagged as not the attacker's best (and nothing is flagged when it is not)."""
    from facesec.families.morph.detection import worst_case

    pairs = [(2 * i, 2 * i + 1) for i in range(40)]
    aware = np.array([i < 16 for i in range(40)])
    plain = np.array([i >= 8 for i in range(40)])
    landmark = np.zeros(40, dtype=bool)
    metrics, flags = worst_case({"": aware, "_non_adaptive": plain, "_landmark": landmark}, pairs)
    assert metrics["mmpmr_past_detector_worst_case"] == 1.0
    assert len(flags) == 1 and "not the attacker's best" in flags[0] and "0.40 against 0.80" in flags[0]
    lo, hi = metrics["mmpmr_past_detector_worst_case_ci95_cluster"]
    assert lo < 1.0 <= hi
    same, none = worst_case({"": plain, "_non_adaptive": plain, "_landmark": landmark}, pairs)
    assert same["mmpmr_past_detector_worst_case"] == plain.mean() and none == []


def test_detector_folds_keep_everyone_a_morph_links_on_one_side() -> None:
    """A morph of A and B, and one of B and C, put A, B and C in one cross-validation group (no face of theirs on
    both sides of a fold); people no morph links keep their own; with one group left, C falls back to 1.0."""
    from facesec.families.morph.detection import linked

    label = linked(6, [(0, 1), (1, 2), (3, 4)])
    assert label[0] == label[1] == label[2] and label[3] == label[4]
    assert len({int(label[0]), int(label[3]), int(label[5])}) == 3
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(40, 3)), np.r_[np.zeros(20), np.ones(20)]
    assert SingleImage._cross_validated(z, y, np.zeros(40, dtype=int)) == 1.0
