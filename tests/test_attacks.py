"""Sanity checks that can fail, per attack: zero budget, unbounded budget, more steps, budgets kept."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from facesec.engine import RunOutput, run_threat_model
from facesec.spec import ThreatModel

CPU = torch.device("cpu")


def run(**overrides: Any) -> RunOutput:
    doc: dict[str, Any] = {"name": "t", "data": {"identities": 4, "images_per_identity": 3, "seed": 1},
                           "attack": {"steps": 5, "sanity_samples": 4}}
    for key, value in overrides.items():
        node = doc
        *parents, last = key.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return run_threat_model(ThreatModel.model_validate(doc), CPU)


ATTACKS = [("native", "pgd"), ("native", "fgsm"), ("native", "mi-fgsm"), ("native", "cw"),
           ("torchattacks", "pgd"), ("art", "pgd")]


GOALS = ("dodging", "impersonation")
ZERO_CASES = [(lib, m, goal) for i, (lib, m) in enumerate(ATTACKS) for goal in (GOALS if i == 0 else [GOALS[i % 2]])]


@pytest.mark.parametrize(("library", "method", "goal"), ZERO_CASES)
def test_zero_budget_is_the_clean_rate(celeba: Any, library: str, method: str, goal: str) -> None:
    out = run(attack__library=library, attack__method=method, perturbation__eps=0.0, goal=goal)
    s = out.record["samples"]
    assert out.record["metrics"]["attack_success_rate"] == 0.0
    assert np.array_equal(s["clean_success"] | s["success"], s["clean_success"])
    assert out.record["metrics"]["linf_mean"] == 0.0


OPEN, CLOSED = {"kind": "open-set", "fmr": 0.01}, {"kind": "closed-set"}


@pytest.mark.parametrize(("library", "method", "setting"),
                         [(lib, m, OPEN) for lib, m in ATTACKS] + [("native", "pgd", CLOSED), ("art", "pgd", CLOSED)])
def test_unbounded_budget_reaches_about_all(celeba: Any, library: str, method: str, setting: dict[str, Any]) -> None:
    out = run(attack__library=library, attack__method=method, attack__steps=10, perturbation__eps=1.0,
              goal="impersonation", setting=setting)
    if method != "fgsm":  # one full-budget step overshoots: FGSM's check is the engine's PGD sanity run
        assert out.record["metrics"]["attack_success_rate"] >= 0.95
    assert out.record["validity"]["unbounded_asr"] >= 0.95 and out.record["validity"]["flags"] == []


@pytest.mark.parametrize("goal", ["dodging", "impersonation"])
def test_more_steps_never_lower_success(celeba: Any, goal: str) -> None:
    common = {"goal": goal, "perturbation__eps": 2 / 255, "attack__step_size": 0.5 / 255,
              "setting": {"kind": "closed-set"}}
    few, many = run(attack__steps=2, **common), run(attack__steps=6, **common)
    s_few, s_many = few.record["samples"]["success"], many.record["samples"]["success"]
    assert np.all(s_many >= s_few)
    assert s_many.sum() > s_few.sum() or s_few.all()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_budget_is_kept(celeba: Any, norm: str) -> None:
    eps = 4 / 255 if norm == "linf" else 1.0
    out = run(perturbation__norm=norm, perturbation__eps=eps)
    column = out.record["samples"][norm]
    assert np.all(column <= eps + 1e-5) and column.max() > 0.5 * eps


def test_universal_is_one_perturbation(celeba: Any) -> None:
    out = run(capability="universal", perturbation__eps=8 / 255, attack__steps=3)
    delta = out.adversarial - out.clean
    inside = (out.clean > 0.05) & (out.clean < 0.95)  # away from clipping, every face got the same delta
    same = (delta - delta[:1]).abs()[inside & inside[:1]]
    assert same.max() < 1e-5
    assert out.record["metrics"]["n_samples"] > 0 and out.record["dimensions"]["capability"] == "universal"


def test_noise_baseline_and_validity_fields(celeba: Any) -> None:
    out = run()
    v = out.record["validity"]
    assert 0.0 <= v["noise_baseline_asr"] <= 1.0 and v["unbounded_n"] > 0 and v["unbounded_asr"] >= 0.95
    m = out.record["metrics"]
    lo, hi = m["attack_success_ci95"]
    assert lo <= m["attack_success_rate"] <= hi
