"""The morph family: pairing, validation, a small real run (landmark and optimised) and its report section."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facesec.api import run
from facesec.engine import run_threat_model
from facesec.errors import ConfigError
from facesec.families.morph import pairs
from facesec.loading import load_threat_models

SMALL = ("name: m\ndata: {identities: 8, images_per_identity: 4}\n"
         "perturbation: {kind: morph, pairs: 4, calibration_identities: 8, fmrs: [1e-2]}\n"
         "setting: {kind: open-set, fmr: 1e-2, calibration: in-sample}\n")


def _write(tmp_path: Path, text: str, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_lookalike_pairs_closest_other_identity() -> None:
    sim = np.array([[1, .9, .1, .2], [.9, 1, .3, .1], [.1, .3, 1, .8], [.2, .1, .8, 1]])
    assert pairs.lookalike(sim, 10) == [(0, 1), (1, 0), (2, 3), (3, 2)]  # one morph per host subject
    assert pairs.lookalike(sim, 1) == [(0, 1)]


def test_random_pairs_seeded_distinct() -> None:
    drawn = pairs.random_pairs(6, 10, np.random.default_rng(0))
    assert drawn == pairs.random_pairs(6, 10, np.random.default_rng(0))
    assert [a for a, _ in drawn] == list(range(6)) and all(a != b for a, b in drawn)
    assert drawn != pairs.random_pairs(6, 10, np.random.default_rng(1))


@pytest.mark.parametrize(("extra", "message"), [
    ("goal: dodging\n", "goal: perturbation.kind morph supports impersonation (got dodging)"),
    ("setting: {kind: closed-set}\n", "setting.kind: perturbation.kind morph supports open-set"),
    ("knowledge: {kind: query}\n", "knowledge: perturbation.kind morph supports white-box or transfer (got query)"),
    ("gates: [{metric: attack_success_rate, value: 0.1}]\n", "'attack_success_rate' is not a metric of "
                                                             "perturbation.kind morph"),
])
def test_morph_refuses_what_it_cannot_mean(tmp_path: Path, extra: str, message: str) -> None:
    own = "setting: {kind: open-set, fmr: 1e-2, calibration: in-sample}\n"
    text = SMALL.replace(own, "") if "setting" in extra else SMALL
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_threat_models(_write(tmp_path, text + extra))


def test_morph_fields_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data.images_per_identity \(4\) must exceed perturbation.references \(4\)"):
        load_threat_models(_write(tmp_path, SMALL.replace("pairs: 4,", "pairs: 4, references: 4,")))
    with pytest.raises(ConfigError, match=r"perturbation.pairs \(9\) cannot exceed data.identities \(8\)"):
        load_threat_models(_write(tmp_path, SMALL.replace("pairs: 4,", "pairs: 9,")))
    with pytest.raises(ConfigError, match=r"field 'perturbation.alpha'"):
        load_threat_models(_write(tmp_path, SMALL.replace("pairs: 4,", "pairs: 4, alpha: 1.5,")))
    models = load_threat_models(_write(tmp_path, SMALL.replace("pairs: 4,", "pairs: 4, alpha: [0.3, 0.7],")))
    assert [m.perturbation.alpha for m in models] == [0.3, 0.7]  # type: ignore[attr-defined]
    assert models[0].goal == "impersonation"  # a default the family gives no meaning to becomes its own


def test_landmark_run_report_and_gate(tmp_path: Path, celeba: Path) -> None:
    """A small landmark run: rates in range, the 1:N search and MAP recorded, the report shows the morph section,
    and a gate on MMPMR decides the exit."""
    text = SMALL.replace("fmrs: [1e-2]", "fmrs: [1e-2, 1e-3]")
    path = _write(tmp_path, text + "gates: [{metric: mmpmr, op: '<=', value: 1.0}, {metric: fmmpmr, op: '<', "
                                   "value: 0}]\n")
    results, out = run([path], out_root=tmp_path / "reports", redact=True, progress=False)
    results = results.to_json()
    record = results["runs"][0]
    m = record["metrics"]
    assert record["family"] == "morph" and record["headline"]["metric"] == "mmpmr"
    assert m["n_morphs"] == 4 and 0 <= m["mmpmr"] <= 1 and 0 <= m["fmmpmr"] <= 1
    assert m["rmmr"] == pytest.approx(m["mmpmr"] + m["fnmr"])
    assert np.array(m["map"]["0.01"]["matrix"]).shape == (3, 1)  # 4 images - 1 reference = 3 attempts
    assert [g["passed"] for g in record["gates"]] == [True, False]
    # 16 identities x 4 faces give 1,920 impostor scores: enough for FMR 1e-2 (1,000), not for 1e-3 (10,000)
    assert m["at_fmr"]["0.01"]["fmr_supported"] and not m["at_fmr"]["0.001"]["fmr_supported"]
    assert any("FMR 0.001 is not supported by 1920 impostor scores" in f for f in record["validity"]["flags"])
    assert len(record["gallery"]) == 4 and (out / record["gallery"][0]["a"]).is_file()
    html = (out / "index.html").read_text()
    assert "Morphing: what this means" in html and "of 4 morphs let both people through" in html
    assert "MMPMR " in html and "morph-scatter" in html and "faces redacted" in html and "unsupported" in html
    samples = (out / record["samples_csv"]).read_text().splitlines()
    assert samples[0].startswith("index,contributor_a,contributor_b") and len(samples) == 5


def test_two_alphas_of_the_same_pairs_are_compared_pair_by_pair(tmp_path: Path, celeba: Path) -> None:
    """Blending weights 0.3 and 0.7 morph the same pairs: the suite records their paired difference in MMPMR,
    with the contributors as the units; the other pairing (other morphs) is compared with neither."""
    text = SMALL.replace("pairs: 4,", "pairs: 4, alpha: [0.3, 0.7], pairing: [lookalike, random],")
    results, _ = run([_write(tmp_path, text)], out_root=tmp_path / "reports", progress=False)
    by_name = {r.name: r for r in results.runs}
    assert [(d.setting, d.decision) for d in results.differences] == [("perturbation.alpha", "mated_match")] * 2
    for d in results.differences:
        first, second = by_name[d.first], by_name[d.second]
        assert d.first_rate == pytest.approx(first.metrics["mmpmr"]) and d.n == 4 and 2 <= d.people <= 8
        assert d.second_rate == pytest.approx(second.metrics["mmpmr"])
        assert first.threat_model["perturbation"]["pairing"] == second.threat_model["perturbation"]["pairing"]


def test_optimised_morphs_beat_their_landmark_start(tmp_path: Path, celeba: Path) -> None:
    """White-box optimisation within 8/255 raises the worse contributor's match over the landmark morph."""
    text = SMALL.replace("kind: morph,", "kind: morph, method: optimised, references: 2,") \
        + "attack: {method: pgd, steps: 10}\n"
    tm = load_threat_models(_write(tmp_path, text))[0]
    out = run_threat_model(tm, torch.device("cpu"), progress=False)
    m = out.record.to_json()["metrics"]
    assert m["fmmpmr"] > m["landmark_fmmpmr"], json.dumps(m)[:400]
    flags = out.record.to_json()["validity"]["flags"]
    assert not flags or "optimisation" not in " ".join(flags)


def test_undetected_morph_is_a_failed_attack() -> None:
    """A morph without a detectable face is not enrolled: minus-infinity scores, never accepted, never skipped."""
    from facesec.data.faces import FaceAnalyzer
    from facesec.families.morph import measures
    from facesec.families.morph.run import _detect

    assert _detect([np.full((120, 120, 3), 128, np.uint8)], FaceAnalyzer()) == [None]
    never = np.array([-np.inf])
    assert measures.mmpmr(never, np.array([1.0]), -10.0) == 0.0


def test_unknown_judging_recognizer_fails_preflight(tmp_path: Path, celeba: Path) -> None:
    from facesec.validation import check

    path = _write(tmp_path, SMALL.replace("fmrs: [1e-2]", "fmrs: [1e-2], recognizers: [no-such-model]"))
    with pytest.raises(ConfigError, match=r"field 'perturbation.recognizers.0': unknown recognizer 'no-such-model'"):
        check([path])


def test_transfer_morphs_from_a_surrogate_with_its_own_crop(tmp_path: Path, celeba: Path,
                                                             hse_installed: Path) -> None:
    """Pairs and optimisation on hse-faceres (its own 224 px crop of the same photo), judged on dlib-resnet."""
    text = SMALL.replace("kind: morph,", "kind: morph, method: optimised, references: 2, recognizers: [hse-faceres],") \
        + "knowledge: {kind: transfer, surrogates: [hse-faceres]}\nattack: {method: pgd, steps: 3}\n"
    out = run_threat_model(load_threat_models(_write(tmp_path, text))[0], torch.device("cpu"), progress=False)
    record = out.record.to_json()
    assert record["dimensions"]["knowledge"] == "transfer from hse-faceres"
    assert set(record["metrics"]["by_recognizer"]) == {"dlib-resnet", "hse-faceres"}
    assert np.array(record["metrics"]["map"]["0.01"]["matrix"]).shape == (2, 2)


def test_schema_baseline_and_refusals(tmp_path: Path) -> None:
    """`facesec schema` lists every family's keys; a morph run's baseline compares its headline; morph-only
    nonsense is refused."""
    from facesec.gates import apply_baseline
    from facesec.results import read_results
    from facesec.schema import json_schema

    schema = json_schema()
    assert {"$ref": "#/$defs/MorphPerturbation"} in schema["properties"]["perturbation"]["oneOf"]
    assert "anyOf" in schema["$defs"]["MorphPerturbation"]["properties"]["alpha"]  # a list expands
    run = {"name": "m", "headline": {"metric": "mmpmr", "label": "MMPMR"}, "metrics": {"mmpmr": 0.5}}
    new, old = (read_results({"runs": runs}, "test") for runs in ([run], [{**run, "metrics": {"mmpmr": 0.4}}]))
    [rule] = apply_baseline(new, old, 5).rules
    assert rule.metric == "mmpmr" and rule.passed is False
    for extra, message in (("photo_round_trip: true\n", "photo_round_trip: morphs are photos already"),
                           ("attack: {steps: 5}\n", "attack: landmark morphs are not optimised"),
                           ("gates: [{metric: landmark_mmpmr, value: 1}]\n", "recorded by optimised morphs only")):
        with pytest.raises(ConfigError, match=message):
            load_threat_models(_write(tmp_path, SMALL + extra))
    with pytest.raises(ConfigError, match=r"perturbation: a mapping such as .* \(got 'morph'\)"):
        load_threat_models(_write(tmp_path, "name: x\nperturbation: morph\n"))
    bare = load_threat_models(_write(tmp_path, "name: x\nperturbation: {kind: morph}\n"))[0]
    assert bare.perturbation.pairs is None  # type: ignore[attr-defined]  # one morph per subject
