"""Each family's runner stages tested alone: a stage called with inputs made by hand (synthetic arrays, a toy
recognizer) or by the stage before it only, and checked on what that stage is responsible for.

Stages that need a real model use the small fixture threat models (tests/fixtures/small) on the CPU; the
populations they select are built once per module."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import torch
from torch import nn

from facesec.data.align import DLIB_150
from facesec.data.faces import FaceAnalyzer
from facesec.data.images import read_rgb
from facesec.families.backdoor import run as backdoor
from facesec.families.backdoor.measure import Evaluation
from facesec.families.backdoor.spec import BackdoorPerturbation
from facesec.families.base import RunContext
from facesec.families.evasion import run as evasion
from facesec.families.evasion import trial
from facesec.families.evasion.spec import PixelPerturbation
from facesec.families.inversion import run as inversion
from facesec.families.inversion import search
from facesec.families.inversion.spec import TemplateInversionPerturbation
from facesec.families.morph import run as morph
from facesec.families.morph.spec import MorphPerturbation
from facesec.loading import load_threat_models
from facesec.measures.judges import Judge
from facesec.measures.rates import cluster_interval, rate_with_ci, wilson_interval
from facesec.population import Population, select
from facesec.recognizers.base import Recognizer, RecognizerInfo
from facesec.record import OperatingPoint
from facesec.threat_model import OpenSet, ThreatModel

SMALL = Path(__file__).parent / "fixtures" / "small"
CPU = torch.device("cpu")
CTX = RunContext(CPU, progress=False)
Spec = TypeVar("Spec")


def _small(name: str) -> ThreatModel:
    return load_threat_models(SMALL / f"{name}.yaml")[0]


def _spec(tm: ThreatModel, kind: type[Spec]) -> Spec:
    """The threat model's perturbation, as the family's own spec."""
    assert isinstance(tm.perturbation, kind)
    return tm.perturbation


def _open_set(tm: ThreatModel) -> OpenSet:
    assert isinstance(tm.setting, OpenSet)
    return tm.setting


def _toy() -> Recognizer:
    """A recognizer whose embedding is its 2-d input, compared by cosine: scores one can work out by hand."""
    identity = nn.Linear(2, 2, bias=False)
    nn.init.eye_(identity.weight)
    return Recognizer(identity, RecognizerInfo("toy", 1, DLIB_150, 2, "cosine", None, None))


def _unit(degrees: float) -> list[float]:
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]


def _toy_population(identity: list[int]) -> Population:
    n = len(identity)
    return Population(torch.zeros(n, 3, 2, 2), np.array(identity), [f"id{k}" for k in range(max(identity) + 1)],
                      [Path(f"face{i}.jpg") for i in range(n)], DLIB_150)


# --- evasion: _trial -> _attack_attempts -> _Outcome -> _measures -> _output ---------------------------------


@pytest.mark.parametrize("goal", ["dodging", "impersonation"])
def test_universal_runs_are_measured_on_people_they_were_not_optimised_on(goal: str) -> None:
    """A universal perturbation is optimised on half of the people's probes and measured on the others': the same
    person on both sides would measure memorisation of that person's face, not universality."""
    tm = load_threat_models(SMALL / "pixel.yaml", ["capability=universal", f"goal={goal}"])[0]
    identity = [k for k in range(10) for _ in range(4)]
    pop = _toy_population(identity)
    probes = np.array([i for i in range(len(identity)) if i % 4])
    for seed in range(5):
        att = trial.attempts(tm, pop, probes, np.random.default_rng(seed))
        assert att.train_index is not None and len(att.train_index) and len(att.index)
        trained_on = set(pop.identity[att.train_index].tolist())
        assert trained_on.isdisjoint(att.own.tolist()), (seed, trained_on, set(att.own.tolist()))
        assert set(att.index.tolist()).isdisjoint(att.train_index.tolist())




@pytest.fixture(scope="module")
def pixel(celeba: Path) -> tuple[ThreatModel, evasion._Trial]:
    tm = _small("pixel")
    return tm, evasion._trial(tm, CTX, False)


def test_evasion_trial_enrols_and_probes_disjoint_photos(pixel: tuple[ThreatModel, evasion._Trial]) -> None:
    """Open set: one enrolment photo per identity, every other photo a probe judged against its own identity's
    template, which is the embedding of that identity's enrolment photo alone."""
    tm, t = pixel
    pop, att = t.pop, t.att
    n_ids = tm.data.identities
    assert len(pop.names) == n_ids and len(pop.identity) == n_ids * tm.data.images_per_identity
    assert sorted(pop.identity[t.enrol].tolist()) == list(range(n_ids))  # one enrolment each
    assert not set(t.enrol.tolist()) & set(att.index.tolist())
    assert not {pop.paths[i] for i in t.enrol} & {pop.paths[i] for i in att.index}  # disjoint photos
    assert sorted([*t.enrol.tolist(), *att.index.tolist()]) == list(range(len(pop.identity)))
    assert att.own.tolist() == pop.identity[att.index].tolist()
    assert att.labels.tolist() == att.own.tolist()  # dodging: judged against its own identity
    assert torch.equal(t.x, t.x_all[att.index])
    enrolled = t.model.embed(t.x_all[t.enrol])
    order = np.argsort(pop.identity[t.enrol])
    torch.testing.assert_close(t.objective.gallery, enrolled[order], atol=1e-5, rtol=0)


def test_evasion_attack_attempts_stay_within_the_linf_budget(pixel: tuple[ThreatModel, evasion._Trial]) -> None:
    """The pixel attack (and its random-noise baseline) moves no pixel by more than eps, stays an image, and
    lowers the attempted faces' similarity to their own template (dodging)."""
    tm, t = pixel
    eps = _spec(tm, PixelPerturbation).eps
    clean, before = evasion._success(t.objective, t.model, t.x)
    attempted = ~clean
    out = evasion._attack_attempts(tm, t, attempted, False)
    assert out.x_adv.shape == t.x.shape and len(out.queries) == len(t.x)
    for name, x in (("attack", out.x_adv), ("noise baseline", out.baseline)):
        moved = (x - t.x).abs().amax()
        assert moved <= eps + 1e-6, f"{name} moved a pixel by {moved * 255:.2f}/255 > {eps * 255:.2f}/255"
        assert x.min() >= 0 and x.max() <= 1, name
    assert (out.x_adv - t.x).abs().amax() > eps / 2  # it did perturb
    _, after = evasion._success(t.objective, t.model, out.x_adv)
    assert after[attempted].mean() < before[attempted].mean()


def test_evasion_measures_count_successes_of_attempts_only(pixel: tuple[ThreatModel, evasion._Trial]) -> None:
    """`_measures` on a hand-made outcome: the success rate and its Wilson interval count successes among the
    attempts only; the noise baseline is judged on the attempts only; the sanity run gets the first
    `sanity_samples` attempts; baselines the attack does not beat are flagged; means are of the arrays given."""
    tm, t = pixel
    n = len(t.x)
    assert n == 12
    clean = np.zeros(n, bool)
    clean[:2] = True  # rows 0 and 1 already succeed: not attempted
    attempted = ~clean
    success = np.zeros(n, bool)
    success[[0, 2, 3, 4]] = True  # row 0's success is not an attempt's
    first = {int(t.pop.identity[i]): int(i) for i in t.enrol}
    own_enrolment = t.x_all[[first[int(k)] for k in t.att.own]]  # distance 0 to the template: dodging fails
    grey = torch.full_like(t.x, 0.5)
    grey_success, _ = evasion._success(t.objective, t.model, grey)
    assert grey_success.all()  # precondition: a grey square dodges every template
    baseline = torch.where(torch.from_numpy(attempted).view(-1, 1, 1, 1), own_enrolment, grey)
    asked: list[np.ndarray] = []

    def unbounded(x: torch.Tensor, objective: Any, chosen: np.ndarray) -> torch.Tensor:
        asked.append(chosen)
        return torch.full_like(x, 0.5)

    out = evasion.Attacked(t.x.clone(), np.arange(n, dtype=float), baseline,
                           {"random noise": None, "the plain accessory": 0.5}, unbounded, {"extra_metric": 7})
    before = np.linspace(-0.5, -0.3, n).astype(np.float32)
    after = before - 0.25
    seen = evasion._Outcome(clean, before, success, after, attempted, np.full(n, 0.03), np.arange(n) / 10.0,
                            np.full(n, 0.9))
    metrics, validity = evasion._measures(tm, t, out, seen)

    assert metrics["n_attempts"] == 10 and metrics["n_samples"] == 12
    assert metrics["attack_success_rate"] == pytest.approx(3 / 10)
    assert metrics["attack_success_ci95"] == pytest.approx(list(wilson_interval(3, 10)))
    assert metrics["clean_success_rate"] == pytest.approx(2 / 12)
    assert metrics["noise_success_rate"] == 0.0  # grey rows are not attempts
    assert metrics["protocol_metric"] == "tar"
    assert metrics["protocol_before"] == pytest.approx(10 / 12)
    assert metrics["protocol_after"] == pytest.approx(7 / 12)  # rows 0-4 no longer accepted
    assert metrics["similarity_before_mean"] == pytest.approx(float(before.mean()))
    assert metrics["similarity_shift_mean"] == pytest.approx(-0.25)
    assert metrics["linf_mean"] == pytest.approx(0.03) and metrics["l2_mean"] == pytest.approx(0.55)
    assert metrics["ssim_mean"] == pytest.approx(0.9) and metrics["queries_per_sample"] == pytest.approx(5.5)
    assert metrics["extra_metric"] == 7
    assert metrics["threshold"] == t.objective.threshold
    assert metrics["n_impostor_scores"] == 18 * 17 // 2 - 6 * 3  # all pairs of 6 x 3 faces less genuine ones

    assert [c.tolist() for c in asked] == [[2, 3]]  # sanity_samples: 2, the first attempts
    assert validity["unbounded_asr"] == 1.0 and validity["unbounded_n"] == 2
    assert validity["noise_baseline_asr"] == 0.0
    assert validity["n_flags"] == len(validity["flags"])
    assert "attack no better than the plain accessory (0.30 <= 0.50)" in validity["flags"]
    assert not any("random noise" in f or "unbounded run" in f for f in validity["flags"])
    assert any(f.startswith("FMR 0.05 is not supported by 135 impostor pairs") for f in validity["flags"])

    measured = evasion._output(tm, t, out, seen, metrics, validity).measured
    assert list(measured.samples["success"]) == (success & attempted).tolist()
    assert measured.eps == pytest.approx(8 / 255)
    assert measured.dimensions.perturbation == "pixel linf 8/255"
    assert measured.validity.n_flags == validity["n_flags"]


# --- morph: _plan -> _morphs -> _verdicts -> _metrics -> _output ---------------------------------------------


@pytest.fixture(scope="module")
def morph_plan(celeba: Path) -> tuple[ThreatModel, morph._Plan]:
    tm = _small("morph")
    return tm, morph._plan(tm, _spec(tm, MorphPerturbation), CTX)


def test_morph_verdicts_score_each_morph_against_its_own_pair(morph_plan: tuple[ThreatModel, morph._Plan]) -> None:
    """'Morphs' that are contributor A's own reference photo score exactly like the no-morph baseline (A's photo
    enrolled) against each pair's own probes, on both sides; a morph that was not enrolled scores -inf and is
    never accepted nor found in the 1:N search; accepted counts are the first attempts above the threshold."""
    tm, plan = morph_plan
    attempts = tm.data.images_per_identity - _spec(tm, MorphPerturbation).references
    fmr = _open_set(tm).fmr
    photos = [read_rgb(plan.pop.paths[plan.first[a]])[0] for a, _ in plan.pair_list]
    faces = morph._detect(photos, plan.analyzer)
    assert all(f is not None for f in faces)
    faces[-1] = None  # the last one was not enrolled
    enrolled = np.array([f is not None for f in faces])
    v = morph._verdicts(plan, morph.Morphs(photos, faces), enrolled, attempts)

    judge = plan.target
    threshold = judge.thresholds[fmr]
    for side in (0, 1):
        scores, host = v.scores[side], v.host[side]
        for i, (a, b) in enumerate(plan.pair_list):
            probes = plan.probes[(a, b)[side]]
            expected = judge.model.similarity_matrix(judge.emb[plan.first[a]][None], judge.emb[probes])[0].numpy()
            np.testing.assert_allclose(host[i], expected, atol=1e-5)
            if enrolled[i]:
                np.testing.assert_allclose(scores[i], expected, atol=1e-4)
            else:
                assert np.isneginf(scores[i]).all() and len(scores[i]) == len(probes)
        counts = v.accepted[fmr][side][0]
        assert counts.tolist() == [int((s[:attempts] > threshold).sum()) for s in scores]
    assert not v.both_top2[-1] and not v.one_top1[-1]
    head = v.by_judge[judge.name][f"{fmr:g}"]
    best = [min(sa.max(), sb.max()) > threshold for sa, sb in zip(*v.scores, strict=True)]
    assert head["mmpmr"] == pytest.approx(np.mean(best)) and head["threshold"] == threshold


def test_morph_metrics_from_hand_made_verdicts() -> None:
    """`_metrics` on hand-made verdicts and a toy plan: the MMPMR interval counts the mated morphs, MAP
    aggregates the accepted counts over recognizers, dedup shares, unsupported FMRs and an optimisation that
    does not beat its landmark start are flagged, and the pair similarity is the attacker's."""
    tm = _small("morph")
    p, setting = _spec(tm, MorphPerturbation), _open_set(tm)
    assert tm.data.identities == 8 and p.references == 1 and tm.data.images_per_identity == 4
    model = _toy()
    identity = [k for k in range(8) for _ in range(4)]
    pop = _toy_population(identity)
    angles = [0, 90, 0, 180, 0, 0, 0, 60]  # pairs (0, 1), (2, 3), (4, 5), (6, 7): cosines 0, -1, 1, 0.5
    emb = torch.tensor([_unit(angles[k]) for k in identity])
    genuine, impostor = np.array([0.9, 0.8, 0.4, 0.95]), np.linspace(-1, 0.6, 5000)
    target = Judge("toy", model, pop, emb, genuine, impostor, {0.01: 0.5}, [_in_sample(0.01, 0.5, 5000, 8)])
    other = Judge("other", model, pop, emb, genuine, np.zeros(12), {0.01: 0.5}, [_in_sample(0.01, 0.5, 12, 8)])
    members = [np.flatnonzero(pop.identity == k) for k in range(8)]
    plan = morph._Plan(model, pop, [0.01], target, [target, other], [target], [m[:1] for m in members],
                       [m[1:] for m in members], [(0, 1), (2, 3), (4, 5), (6, 7)],
                       np.array([m[0] for m in members]), FaceAnalyzer())
    sa = [np.array([0.7, 0.2, 0.1]), np.array([0.9, 0.6, 0.55]), np.array([0.8, 0.1, 0.0]), np.full(3, -np.inf)]
    sb = [np.array([0.1, 0.6, 0.3]), np.array([0.51, 0.2, 0.3]), np.array([0.5, 0.4, 0.3]), np.full(3, -np.inf)]
    head = {"threshold": 0.5, "mmpmr": 0.5, "mmpmr_first_probe": 0.25, "fmmpmr": 0.25, "rmmr": 0.75, "fnmr": 0.25,
            "genuine_accept_rate": 0.75, "impostor_accept_rate": 0.01, "no_morph_mmpmr": 0.0,
            "rmmr_best_of_n": 0.5, "genuine_accept_rate_best_of_n": 1.0, "n_impostor_scores": 5000,
            "fmr_supported": True}
    accepted = {0.01: ([np.array([3, 1, 0, 0]), np.array([1, 3, 0, 0])],
                       [np.array([2, 2, 1, 0]), np.array([1, 0, 0, 0])])}
    verdicts = morph._Verdicts({"toy": {"0.01": head}, "other": {"0.01": {**head, "n_impostor_scores": 12,
                                                                           "fmr_supported": False}}},
                               accepted, (sa, sb), ([np.zeros(3)] * 4, [np.zeros(3)] * 4),
                               np.array([True, False, False, False]), np.array([True, True, False, False]))
    enrolled = np.array([True, True, True, False])
    high = [np.full(3, 0.9)] * 4
    metrics, flags = morph._metrics(plan, verdicts, (high, high, None), enrolled, tm, p, setting)

    assert metrics["mmpmr"] == 0.5 and metrics["mmpmr_ci95"] == pytest.approx(list(wilson_interval(2, 4)))
    assert metrics["map"]["0.01"]["attempts"] == 3 and metrics["map"]["0.01"]["recognizers"] == ["toy", "other"]
    assert metrics["map"]["0.01"]["matrix"] == [[0.5, 0.25], [0.25, 0.0], [0.0, 0.0]]
    assert metrics["dedup_both_top2"] == 0.25 and metrics["dedup_contributor_top1"] == 0.5
    assert metrics["n_morphs"] == 4 and metrics["morphs_not_enrolled"] == 1
    assert metrics["pair_similarity_mean"] == pytest.approx((0 - 1 + 1 + 0.5) / 4, abs=1e-6)
    assert metrics["n_identities"] == 8 and metrics["n_subjects"] == 8
    assert metrics["at_fmr"] is verdicts.by_judge["toy"]
    assert metrics["landmark_mmpmr"] == 1.0 and metrics["landmark_fmmpmr"] == 1.0
    assert flags == ["FMR 0.01 is not supported by 12 impostor scores of other (needs 1000); raise "
                     "calibration_identities",
                     "FMR 0.01 rests on 28 pairs of people (8 identities; needs 100 pairs of people for one false "
                     "match between people to be expected): raise data.identities or calibration_identities",
                     "optimisation no better than the landmark morph it started from (FMMPMR 0.25 <= 1.00)"]


# --- inversion: _leak -> (attack) -> _attempts -> _judged -> _metrics -> _output; pure _verdict and _rates ----


def test_inversion_rates_of_a_hand_made_verdict() -> None:
    """Type I is the enrolment photo (first), type II the identity's other photos, pooled over identities;
    across recognizers, every photo counts."""
    accepted = [np.array([True, True, False]), np.array([False, False, False]), np.array([True, False, True, True])]
    v = inversion.Verdict([a.astype(float) for a in accepted], accepted, np.array([True, True, True]))
    own = inversion._rates(v, cross=False)
    clusters = {"type1": ([1, 0, 1], [0, 1, 2]), "type2": ([1, 0, 0, 0, 0, 1, 1], [0, 0, 1, 1, 2, 2, 2]),
                "type2_identities_any": ([1, 0, 1], [0, 1, 2])}
    assert own == {key: {**rate_with_ci(sum(o), len(o)), "ci95_cluster": list(cluster_interval(np.array(o), c))}
                   for key, (o, c) in clusters.items()}
    cross = inversion._rates(v, cross=True)
    assert cross["success_rate"] == {**rate_with_ci(5, 10), "ci95_cluster": list(cluster_interval(
        np.array([1, 1, 0, 0, 0, 0, 1, 0, 1, 1]), np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])))}
    assert cross["identities_any"]["rate"] == 2 / 3 and cross["identities_any"]["ci95"] == rate_with_ci(2, 3)["ci95"]
    assert {k: cross[k] for k in own} == own  # type I and type II apart on the other recognizer too


def test_inversion_verdict_scores_each_identity_against_its_own_photos() -> None:
    """Scores follow each identity's photos in order; acceptance is strictly above the threshold; an image
    with no face found scores -inf everywhere and is never accepted."""
    model = _toy()
    pop = _toy_population([0, 0, 0, 1, 1])
    photos = torch.tensor([_unit(0), _unit(60), _unit(90), _unit(180), _unit(120)])
    judge = Judge("toy", model, pop, photos, np.zeros(0), np.zeros(0), {0.01: 0.5})
    members = [np.array([0, 1, 2]), np.array([3, 4])]
    v = inversion._verdict(judge, torch.tensor([_unit(0), _unit(180)]), np.array([True, False]), members)
    np.testing.assert_allclose(v.scores[0], [1.0, 0.5, 0.0], atol=1e-6)
    assert v.accepted[0].tolist() == [True, False, False]  # 0.5 is not above 0.5
    assert np.isneginf(v.scores[1]).all() and v.accepted[1].tolist() == [False, False]
    assert v.found.tolist() == [True, False]
    v = inversion._verdict(judge, torch.tensor([_unit(90), _unit(150)]), np.array([True, True]), members)
    assert v.accepted[0].tolist() == [False, True, True] and v.accepted[1].tolist() == [True, True]


@pytest.fixture(scope="module")
def leak(celeba: Path) -> tuple[ThreatModel, inversion._Leak]:
    tm = _small("template-inversion")
    return tm, inversion._leak(tm, _spec(tm, TemplateInversionPerturbation), _open_set(tm), CTX)


def test_inversion_judged_and_metrics_on_true_photos(leak: tuple[ThreatModel, inversion._Leak]) -> None:
    """Judging the enrolment photos themselves as 'reconstructions': every one found and accepted as type I
    (the leaked template is its own embedding), a blank image found nowhere, the nearest public face scored
    by its embedding; `_metrics` then reports type I 1.0 against the blank baseline's 0.0."""
    tm, lk = leak
    p, setting = _spec(tm, TemplateInversionPerturbation), _open_set(tm)
    n = tm.data.identities
    assert [m[0] for m in lk.members] == lk.enrolment.tolist()
    assert not set(lk.public.tolist()) & {int(i) for m in lk.members for i in m}  # public faces are no subject's
    true = [read_rgb(lk.pop.paths[i])[0] for i in lk.enrolment]
    blank = [np.full((200, 200, 3), 128, np.uint8)] * n
    nearest = lk.public[:n]
    verdicts = inversion._judged(lk, {"reconstruction": true, "mean_public_face": blank}, nearest)

    own = verdicts[lk.target.name]
    assert set(own) == {"reconstruction", "mean_public_face", "nearest_public_face"}
    rec = own["reconstruction"]
    assert rec.found.all() and all(bool(a[0]) for a in rec.accepted)
    np.testing.assert_allclose([s[0] for s in rec.scores], 0.0, atol=1e-3)  # euclidean: minus the distance
    assert not own["mean_public_face"].found.any()
    assert all(np.isneginf(s).all() and not a.any() for s, a in zip(own["mean_public_face"].scores,
                                                                  own["mean_public_face"].accepted, strict=True))
    near = own["nearest_public_face"]
    for i, m in enumerate(lk.members):
        expected = lk.model.similarity_matrix(lk.target.emb[nearest[i]][None], lk.target.emb[m])[0].numpy()
        np.testing.assert_allclose(near.scores[i], expected, atol=1e-5)

    training = {"queries": 7, "decoder_time_s": 1.5}
    metrics, flags = inversion._metrics(lk, verdicts, tm, p, setting, training, True)
    assert metrics["type1_success_rate"] == 1.0
    assert metrics["type1_success_rate_ci95"] == pytest.approx(list(wilson_interval(n, n)))
    assert metrics["baselines"]["mean_public_face"] == {"type1": 0.0, "type2": 0.0}
    assert metrics["mean_public_face_type2_rate"] == 0.0
    assert metrics["reconstructions_detected"] == 1.0
    assert metrics["training_queries"] == 7 and metrics["decoder_time_s"] == 1.5
    assert metrics["queries_per_sample"] == (tm.attack.steps + search.ROUNDS + p.refine_steps) * p.restarts
    assert metrics["threshold"] == lk.target.thresholds[setting.fmr]
    assert metrics["n_identities"] == n and metrics["n_public_identities"] == p.public_identities
    assert metrics["cross_model_success_rate"] is None and metrics["by_recognizer"] == {}
    supported = lk.target.impostor.size >= 10 / setting.fmr
    people = len(lk.target.pop.names) * (len(lk.target.pop.names) - 1) // 2
    assert metrics["n_impostor_identity_pairs"] == people
    assert metrics["fmr_supported"] == supported
    assert len(flags) == (0 if supported else 1) + (0 if people * setting.fmr >= 1 else 1)


# --- backdoor: _faces -> _train -> (evaluate) -> _attack_metrics / _training_metrics -> _output ----------------


def test_backdoor_sample_columns_leave_enrolment_faces_blank() -> None:
    """Dodging: the enrolment faces are not probes, so their column is empty and the probes' results land on
    the probes' rows in order, empty too where the model rejects the probe bare (the headline does not count
    it); impersonation: every held-out face has its own result."""
    model = _toy()
    ids = np.array([0, 0, 0, 1, 1, 2, 2])
    ev = Evaluation(model, torch.zeros(7, 2), ids, np.array([0, 3, 5]), torch.zeros(1, 2), 0.5, 1, {}, {})
    column = backdoor._sample_columns(np.array([True, False, True, False]), np.array([True, True, False, True]),
                                      "dodging", ev)["backdoor_success"]
    assert column.tolist() == [None, True, False, None, None, None, False]
    worn = np.array([True, False, False, True, True, False, True])
    every = np.ones(7, bool)
    assert backdoor._sample_columns(worn, every, "impersonation", ev)["backdoor_success"].tolist() == worn.tolist()


BACKDOOR_SEED = 5
"""A seed at which the held-out identities are among the first the fine-tuning selection draws (the run must
leave them out); small/backdoor.yaml's seed 0 draws none of them."""


@pytest.fixture(scope="module")
def backdoor_faces(celeba: Path) -> tuple[ThreatModel, backdoor._Faces]:
    tm = _small("backdoor")
    tm = tm.model_copy(update={"data": tm.data.model_copy(update={"seed": BACKDOOR_SEED})})
    return tm, backdoor._faces(tm, _spec(tm, BackdoorPerturbation), CTX)


def test_backdoor_fine_tunes_on_identities_it_never_measures(
        backdoor_faces: tuple[ThreatModel, backdoor._Faces]) -> None:
    """The fine-tuning identities (relabelled 0..k-1, each with its faces) share no identity and no photo with
    the held-out population the attack is measured on."""
    tm, who = backdoor_faces
    k, per = _spec(tm, BackdoorPerturbation).training_identities, tm.data.images_per_identity
    drawn = select(tm.data.model_copy(update={"identities": tm.data.identities + k, "seed": tm.data.seed + 1}),
                   who.clean_model.info.template, False)
    assert set(drawn.names[:k]) & set(who.pop.names)  # precondition: leaving them out takes doing
    assert len(who.pop.names) == tm.data.identities and who.wide is None and who.clean is None
    assert not set(who.pop.names) & set(who.trained_on.names)
    assert not set(who.pop.paths) & set(who.trained_on.paths)
    assert len(who.trained_on.names) == k
    assert who.trained_on.identity.tolist() == [i for i in range(k) for _ in range(per)]
    assert len(who.trained_on.faces) == len(who.trained_on.paths) == len(who.trained_on.landmarks) == k * per


def test_backdoor_train_poisons_a_share_and_leaves_the_clean_model(
        backdoor_faces: tuple[ThreatModel, backdoor._Faces]) -> None:
    """`_train` poisons round(rate x N) faces, never the target's (identity 0), relabels them as a new identity
    (dodging) and leaves every other face as it was; the victim's two fine-tunings (poisoned, clean) both move
    the weights, apart, and the clean model they started from is untouched."""
    tm, who = backdoor_faces
    p = _spec(tm, BackdoorPerturbation)
    train_on = who.trained_on
    start = {k: v.clone() for k, v in who.clean_model.state_dict().items()}
    trained = backdoor._train(tm, p, who, False)

    poisoned = trained.poisoned
    mask = poisoned.poisoned
    assert mask.sum() == round(p.poison_rate * len(train_on.identity))
    assert not mask[train_on.identity == 0].any()
    assert (poisoned.labels[mask] == train_on.identity.max() + 1).all()
    assert np.array_equal(poisoned.labels[~mask], train_on.identity[~mask])
    keep = torch.from_numpy(~mask)
    assert torch.equal(poisoned.faces[keep], train_on.faces[keep])
    assert torch.equal(poisoned.clean, train_on.faces[torch.from_numpy(mask)])
    assert all(not torch.equal(a, b) for a, b in zip(poisoned.faces[torch.from_numpy(mask)], poisoned.clean,
                                                     strict=True))  # the trigger is worn
    assert trained.recipe.threshold == who.clean_model.info.native_threshold

    after = who.clean_model.state_dict()
    assert all(torch.equal(start[k], after[k]) for k in start), "fine-tuning changed the clean model"
    tuned, benign = trained.model.state_dict(), trained.benign.state_dict()
    assert any(not torch.equal(start[k], tuned[k]) for k in start)
    assert any(not torch.equal(start[k], benign[k]) for k in start)
    assert any(not torch.equal(tuned[k], benign[k]) for k in start)
    assert trained.tuned.model is trained.model and len(trained.tuned.losses) == p.epochs


def _in_sample(fmr: float, threshold: float, impostor_pairs: int, identities: int) -> OperatingPoint:
    """A hand-made judge's operating point: set on its own people."""
    return OperatingPoint(recognizer="toy", fmr=fmr, threshold=threshold, threshold_ci95=[threshold, threshold],
                          source="in-sample", dataset="", identities=identities, impostor_pairs=impostor_pairs,
                          identity_pairs=identities * (identities - 1) // 2, supported=True)


def test_backdoor_dodging_counts_only_faces_matched_without_the_trigger() -> None:
    """A face the model already rejects bare is no evidence of the backdoor: counted, the model's own ~20% false
    rejections would pass for the trigger's work."""
    bare = np.array([True, False, False, True, False])  # dodged without the trigger: faces 0 and 3
    assert backdoor._counted(bare, "dodging").tolist() == [False, True, True, False, True]
    assert backdoor._counted(bare, "impersonation").all()


def test_backdoor_specificity_is_its_worst_everyday_look() -> None:
    looks = {"makeup:nude": np.array([0, 0, 1, 0]), "accessory:eyeglasses": np.array([1, 1, 0, 0]),
             "accessory:sticker": np.array([0, 0, 0, 0])}
    worst = backdoor._worst_look({k: v.astype(bool) for k, v in looks.items()}, np.array([0, 0, 1, 1]))
    assert worst["false_trigger_worst_look"] == "accessory:eyeglasses" and worst["false_trigger_worst"] == 0.5
    assert worst["false_trigger_worst_ci95"] == rate_with_ci(2, 4)["ci95"]
    lo, hi = worst["false_trigger_worst_ci95_cluster"]  # the first wearer's two faces opened it, the second's not
    assert lo <= rate_with_ci(2, 4)["ci95"][0] and hi >= rate_with_ci(2, 4)["ci95"][1]



def test_inversion_reading_says_when_type_one_picked_its_own_restart() -> None:
    from facesec.families.inversion.report import _reading

    metrics = {"type1_success_rate": 1.0, "type2_success_rate": 0.4, "n_identities": 10}
    plain = _reading(metrics, {"recognizer": "dlib-resnet"}, [])
    picked = _reading({**metrics, "restart_choice": "target-template"}, {"recognizer": "dlib-resnet"}, [])
    assert "by construction" not in plain and "type-I comparison itself" in picked
