"""Attack families as plug-ins: the registry, validation against what a family supports, and the move of
pixel and accessory onto the interface leaving their metrics unchanged."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from facesec import families
from facesec.engine import run_threat_model
from facesec.errors import ConfigError
from facesec.families import Family, MetricInfo, RunContext, RunOutput, Supports
from facesec.fields import PerturbationSpec
from facesec.loading import load_threat_models
from facesec.measures.rates import wilson_interval
from facesec.record import Dimensions, Measured, Validity

FIXTURE = Path(__file__).parent / "fixtures" / "evasion_metrics.json"
SMALL = ["data.identities=6", "data.images_per_identity=3", "attack.steps=5", "setting.calibration=in-sample"]
"""Small runs, calibrated in sample as when the fixture was recorded."""


def test_builtin_families_registered() -> None:
    known = families.kinds()
    assert {"pixel", "accessory", "morph"} <= set(known)
    for kind in ("pixel", "accessory", "morph"):
        family = families.get(kind)
        assert family.name == kind and family.headline in family.metrics


def test_unknown_kind_lists_families(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("name: x\nperturbation: {kind: hat}\n")
    with pytest.raises(ConfigError, match=r"x.yaml: .*'hat' is not an attack family; "
                       r"use one of 'pixel', 'accessory', 'morph'"):
        load_threat_models(path)


def test_gate_metric_must_belong_to_family(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("name: g\ngates: [{metric: mmpmr, value: 0.1}]\n")
    with pytest.raises(ConfigError, match=r"field 'gates.0.metric': 'mmpmr' is not a metric "
                       r"of perturbation.kind pixel"):
        load_threat_models(path)


class Echo(Family):
    """A family from 'another package': records the seed it was given; supports dodging only."""

    name: ClassVar[str] = "echo"

    class Spec(PerturbationSpec):
        kind: str = "echo"
        level: int = 1

    supports: ClassVar[Supports] = Supports(goals=("dodging",))
    metrics: ClassVar[dict[str, MetricInfo]] = {"level_seen": MetricInfo("the level it was given")}
    headline: ClassVar[str] = "level_seen"

    def run(self, tm: Any, ctx: RunContext) -> RunOutput:
        return RunOutput(Measured(Dimensions(), {"level_seen": tm.perturbation.level}, Validity(), {"i": [0]}))


class _EntryPoint:
    name, value = "echo", "tests.test_families:Echo"

    def load(self) -> type[Family]:
        return Echo


def test_family_from_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from facesec import registry

    monkeypatch.setattr(registry, "entry_points", lambda group: [_EntryPoint()] if group == "facesec.families"
                        else [])
    monkeypatch.setattr(families, "_INSTANCES", {})
    path = tmp_path / "e.yaml"
    path.write_text("name: e\nperturbation: {kind: echo, level: 3}\n"
                    "gates: [{metric: level_seen, op: '==', value: 3}]\n")
    tm = load_threat_models(path)[0]
    assert tm.model_dump(mode="json")["perturbation"] == {"kind": "echo", "level": 3}
    out = run_threat_model(tm, torch.device("cpu"))
    assert out.record.to_json()["metrics"] == {"level_seen": 3} and out.record.to_json()["family"] == "echo"
    assert out.record.to_json()["validity"] == {"n_flags": 0, "flags": []}  # written whole, even when empty
    assert out.record.to_json()["headline"]["metric"] == "level_seen"
    path.write_text("name: e\nperturbation: {kind: echo, level: x}\n")
    with pytest.raises(ConfigError, match=r"field 'perturbation.level'"):
        load_threat_models(path)
    path.write_text("name: e\nperturbation: {kind: echo}\ngoal: impersonation\n")
    with pytest.raises(ConfigError, match=r"goal: perturbation.kind echo supports dodging \(got impersonation\)"):
        load_threat_models(path)


RATES = {"attack_success_rate": "n_attempts", "noise_success_rate": "n_attempts",
         "plain_accessory_success_rate": "n_attempts", "eot_success_rate": "n_attempts",
         "clean_success_rate": "n_samples", "protocol_before": "n_samples", "protocol_after": "n_samples"}
"""Shares of decisions, and what they are shares of: each may move by one decision between machines."""
OPTIMISED = {"similarity_after_mean": (0.01, 0.0), "similarity_shift_mean": (0.01, 0.0),
             "l2_mean": (0.0, 0.05), "linf_mean": (0.0, 0.05), "ssim_mean": (0.005, 0.0)}
"""Means over optimised faces: (absolute, relative) tolerance."""
ONE_PASS = 1e-4
"""Relative tolerance of every other float (thresholds, clean similarities: one forward pass, no optimisation)."""


@pytest.mark.numerics
def test_evasion_metrics_unchanged_by_the_move(celeba: Path) -> None:
    """Small quickstart and accessory runs give the metrics recorded in the fixture: first before families became
    plug-ins (b3b87bc), recorded again when attacks moved into shards with random numbers of their own (success
    rates unchanged; random starts, fresh transforms and the random-colour baseline drew other numbers).

    The fixture holds one machine's numbers, and an optimisation amplifies the last bits in which CPUs differ
    (oneDNN and MKL pick AVX2 or AVX-512 kernels by the processor). Tolerances were chosen from the spread of these
    metrics over seven numerics on one machine (2026-12-06: 1, 2 and 3 threads; oneDNN + MKL held to AVX2; ATen
    too; SSE4.1): the thread count changed nothing, the instruction set moved the accessory runs by at most 1 of
    80 EOT decisions, no attack decision, 0.0017 in mean similarity, 0.8% in L2, 1.5% in L-inf and 0.0006 in SSIM,
    and one-pass values by 2e-7 relative; each tolerance is three (L-inf) to ten times that."""
    expected = json.loads(FIXTURE.read_text())
    seen = {}
    for f in ("threat_models/quickstart.yaml", "threat_models/accessory-eyeglasses-dodging.yaml",
              "threat_models/accessory-sticker-universal.yaml"):
        for tm in load_threat_models(Path(__file__).parents[1] / f, SMALL):
            metrics = run_threat_model(tm, torch.device("cpu"), f, progress=False).record.to_json()["metrics"]
            seen[tm.name] = {k: v for k, v in metrics.items() if not k.endswith("time_s")}
    assert seen.keys() == expected.keys()
    for name, metrics in expected.items():
        assert seen[name].keys() == metrics.keys(), name
        different = {k: (v, seen[name][k]) for k, v in metrics.items() if not _close(k, v, metrics, seen[name])}
        assert not different, f"{name}: {different}"


def _close(key: str, a: Any, recorded: dict[str, Any], seen: dict[str, Any]) -> bool:
    """Whether metric `key` of the fixture (`a`) and of this run agree within what machines change."""
    b = seen[key]
    n = seen["n_attempts"]
    wilson = wilson_interval(round(seen["attack_success_rate"] * n), n)
    if key == "attack_success_ci95":  # the Wilson interval of this run's count (the count is checked as a rate)
        return bool(np.allclose(b, wilson, atol=1e-9))
    if key == "attack_success_ci95_cluster":  # resampled people: this run's own, never narrower than Wilson's
        return bool(0 <= b[0] <= wilson[0] + 1e-9 and wilson[1] - 1e-9 <= b[1] <= 1)
    if key in ("eot_success_ci95_cluster", "plain_accessory_success_ci95_cluster"):  # may move by a decision
        return bool(len(a) == len(b) == 2 and all(abs(x - y) <= 0.05 + 2 / n for x, y in zip(a, b, strict=True)))
    if not isinstance(a, float) or not isinstance(b, float):
        return bool(a == b)
    if key in RATES:
        return abs(a - b) <= 1 / max(1, recorded[RATES[key]]) + 1e-9
    absolute, relative = OPTIMISED.get(key, (0.0, ONE_PASS))
    return math.isclose(a, b, rel_tol=relative, abs_tol=max(absolute, 1e-9))
