"""Sanity checks that can fail, per attack: zero budget, unbounded budget, more steps, budgets kept."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from facesec import attacks
from facesec.attacks import Budget, Objective
from facesec.engine import RunOutput, run_threat_model
from facesec.population import select
from facesec.recognizers.base import Recognizer, load
from facesec.threat_model import Data, ThreatModel

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


@pytest.fixture(scope="module")
def faces(celeba: Any) -> tuple[Recognizer, torch.Tensor, torch.Tensor, np.ndarray]:
    """dlib-resnet, a 4-identity gallery (first image each) and the other 8 real faces as probes."""
    model = load("dlib-resnet")
    pop = select(Data(identities=4, images_per_identity=3, seed=1), model.info.template)
    first = np.array([np.flatnonzero(pop.identity == i)[0] for i in range(4)])
    probes = np.setdiff1d(np.arange(len(pop.identity)), first)
    with torch.no_grad():
        gallery = model(pop.faces[first])
    return model, gallery, pop.faces[probes], pop.identity[probes]


@pytest.mark.parametrize(("library", "method"), ATTACKS, ids=lambda v: str(v))
@pytest.mark.parametrize("goal", ["dodging", "impersonation"])
def test_zero_budget_is_the_clean_rate(faces: Any, library: str, method: str, goal: str) -> None:
    model, gallery, x, own = faces
    labels = own if goal == "dodging" else (own + 1) % len(gallery)
    objective = Objective(model, "closed-set", goal, gallery, torch.from_numpy(labels).long())
    # ART refuses a zero step: any step is projected back onto the zero ball
    attack = attacks.create(library, method, steps=3, step_size=1e-3 if library == "art" else None)
    x_adv = attack.run(x, objective, Budget("linf", 0.0), torch.Generator().manual_seed(0)).x_adv
    assert torch.equal(x_adv, x)
    with torch.no_grad():
        clean = objective.success(objective.margin(model(x), slice(None)))
        adv = objective.success(objective.margin(model(x_adv), slice(None)))
    assert torch.equal(adv, clean)


OPEN, CLOSED = {"kind": "open-set", "fmr": 0.01}, {"kind": "closed-set"}


@pytest.mark.parametrize(("library", "method", "setting"),
                         [(lib, m, OPEN) for lib, m in ATTACKS] + [("native", "pgd", CLOSED), ("art", "pgd", CLOSED)])
def test_unbounded_budget_reaches_about_all(celeba: Any, library: str, method: str, setting: dict[str, Any]) -> None:
    out = run(attack__library=library, attack__method=method, attack__steps=10, perturbation__eps=1.0,
              goal="impersonation", setting=setting)
    if method != "fgsm":  # one full-budget step overshoots: FGSM's check is the engine's PGD sanity run
        assert out.record.to_json()["metrics"]["attack_success_rate"] >= 0.95
    validity = out.record.to_json()["validity"]
    flags = validity["flags"]
    assert validity["unbounded_asr"] >= 0.95
    assert [f for f in flags if not f.startswith(("FMR ", "in-sample operating point"))] == []


def test_an_fmr_the_impostor_pairs_cannot_support_is_flagged(celeba: Any) -> None:
    """4 identities x 3 faces give 54 impostor pairs: FMR 1e-3 needs 10,000 (flagged), FMR 0.2 needs 50 (not)."""
    out = run(setting={"kind": "open-set", "fmr": 1e-3}, attack__steps=1)
    assert out.record.to_json()["metrics"]["n_impostor_scores"] == 54
    flags = out.record.to_json()["validity"]["flags"]
    assert any(f.startswith("FMR 0.001 is not supported by 54 impostor pairs") for f in flags)
    out = run(setting={"kind": "open-set", "fmr": 0.2}, attack__steps=1)
    assert not any(f.startswith("FMR ") for f in out.record.to_json()["validity"]["flags"])


@pytest.mark.parametrize("method", ["pgd", "mi-fgsm", "cw"])
@pytest.mark.parametrize("goal", ["dodging", "impersonation"])
def test_more_steps_never_lower_success(celeba: Any, goal: str, method: str) -> None:
    """Native attacks keep their first successful iterate (torchattacks and ART return the last one)."""
    common = {"goal": goal, "perturbation__eps": 2 / 255, "attack__step_size": 0.5 / 255,
              "attack__method": method, "setting": {"kind": "closed-set"}}
    few, many = run(attack__steps=2, **common), run(attack__steps=6, **common)
    s_few, s_many = few.samples()["success"], many.samples()["success"]
    assert np.all(s_many >= s_few)
    assert s_many.sum() > s_few.sum() or s_few.all()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_budget_is_kept(celeba: Any, norm: str) -> None:
    eps = 4 / 255 if norm == "linf" else 1.0
    out = run(perturbation__norm=norm, perturbation__eps=eps)
    column = out.samples()[norm]
    assert np.all(column <= eps + 1e-5) and column.max() > 0.5 * eps


def test_universal_is_one_perturbation(celeba: Any) -> None:
    out = run(capability="universal", perturbation__eps=8 / 255, attack__steps=3)
    kept = out.output
    delta = kept.adversarial - kept.clean
    inside = (kept.clean > 0.05) & (kept.clean < 0.95)  # away from clipping, every face got the same delta
    same = (delta - delta[:1]).abs()[inside & inside[:1]]
    assert same.max() < 1e-5
    record = out.record.to_json()
    assert record["metrics"]["n_samples"] > 0 and record["dimensions"]["capability"] == "universal"


def test_noise_baseline_and_validity_fields(celeba: Any) -> None:
    out = run()
    v = out.record.to_json()["validity"]
    assert 0.0 <= v["noise_baseline_asr"] <= 1.0 and v["unbounded_n"] > 0 and v["unbounded_asr"] >= 0.95
    m = out.record.to_json()["metrics"]
    lo, hi = m["attack_success_ci95"]
    assert lo <= m["attack_success_rate"] <= hi
