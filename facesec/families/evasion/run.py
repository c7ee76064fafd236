"""The evasion families' runner: perturb probes (pixel noise or an accessory), judge them against the gallery."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import JsonValue

from facesec import attacks, distributed, metrics, photos, protocols
from facesec.attacks import Attack, Budget, Criterion, Expectation, Objective
from facesec.attacks.adapters.art_query import HopSkipJumpAttack
from facesec.attacks.query import Oracle
from facesec.attacks.worst_case import WorstCase, restarts
from facesec.errors import TooFewIdentities
from facesec.families.base import RunContext, RunOutput
from facesec.families.evasion import artefacts, defended, knowledge, trial
from facesec.families.evasion.accessories import export
from facesec.families.evasion.accessories import run as accessory_run
from facesec.families.evasion.spec import AccessoryPerturbation, PixelPerturbation
from facesec.measures.rates import cluster_interval, wilson_interval
from facesec.population import Population, select
from facesec.provenance import measured_on
from facesec.recognizers.base import Recognizer, load
from facesec.record import Dimensions, Measured, OperatingPoint, Validity, plain, skipped
from facesec.threat_model import EnsembleMember, ThreatModel, Transfer

UNBOUNDED = {"linf": 1.0, "l2": 1000.0}
SANITY_MIN_ASR = 0.95
SANITY_STEPS = 10
GALLERY_SIZE = 6
Unbounded = Callable[[torch.Tensor, Criterion, np.ndarray], torch.Tensor]
"""The validity check's unconstrained attack on some attempts (their faces, objective and indices)."""


@dataclass
class WornAccessory:
    """One optimised accessory to show and print: its pattern (3 x H x W), mask and the wearer's eye distance."""

    label: str
    pattern: torch.Tensor
    mask: torch.Tensor
    eye_distance_px: float


@dataclass
class EvasionOutput(RunOutput):
    """A run's record and the tensors behind its gallery images (first rows: clean and attacked faces)."""

    clean: torch.Tensor
    adversarial: torch.Tensor
    eps: float | None
    """The pixel budget; None for accessories (colours are free inside the region)."""
    accessories: list[WornAccessory] | None = None
    """Accessory runs: one per gallery row (individual) or the single one (universal)."""

    def write_artefacts(self, run_dir: Path, rel: str, samples: pd.DataFrame) -> dict[str, JsonValue]:
        return artefacts.write(self, run_dir, rel, samples)

    def faceless(self, run_dir: Path) -> set[str]:
        return artefacts.faceless(run_dir)


def _success(objective: Objective, model: Recognizer, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Success and similarity to the reference, per sample."""
    emb = model.embed(x)
    idx = slice(None)
    return (objective.success(objective.margin(emb, idx)).cpu().numpy(),
            objective.similarity(emb, idx).float().cpu().numpy())


@torch.no_grad()
def _judge(criterion: Criterion, x: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """Per-sample success of `x` under any criterion (a recognizer's objective or an ensemble)."""
    margins = [criterion.score(x[i:i + batch_size], slice(i, i + batch_size)) for i in range(0, len(x), batch_size)]
    return criterion.success(torch.cat(margins)).cpu().numpy() if margins else np.zeros(0, dtype=bool)


def _noise(x: torch.Tensor, budget: Budget, generator: torch.Generator) -> torch.Tensor:
    """Random noise at the full budget: random signs (L-inf) or a random direction (L2)."""
    if budget.norm == "linf":
        signs = torch.randint(0, 2, tuple(x.shape), generator=generator).float() * 2 - 1
        return (x + budget.eps * signs.to(x)).clamp(0, 1)
    d = torch.randn(tuple(x.shape), generator=generator)
    d = d / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    return (x + budget.eps * d.to(x)).clamp(0, 1)


def _attack(attack: Attack, tm: ThreatModel, x: torch.Tensor, objective: Criterion, budget: Budget,
            generator: torch.Generator, x_train: torch.Tensor | None, train_objective: Criterion | None,
            progress: bool) -> tuple[torch.Tensor, np.ndarray]:
    """The attacked faces and queries per sample: one universal perturbation optimised on `x_train`, or each
    face attacked in shards (spread over torchrun's processes)."""
    if budget.eps == 0:  # nothing to optimise (and some libraries refuse a zero step)
        return x.clone(), np.zeros(len(x))
    if tm.capability == "universal":
        assert x_train is not None and train_objective is not None
        delta = attack.run_universal(x_train, train_objective, budget, generator)
        queries = np.full(len(x), float(getattr(attack, "steps", 0) + 1) * len(x_train) / max(len(x), 1))
        return (x + delta).clamp(0, 1), queries
    starts = getattr(attack, "starts", None)

    def shard(part: slice, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, Any]:
        if isinstance(attack, HopSkipJumpAttack):
            attack.starts = None if starts is None else starts[part]
        out = attack.run(x[part], objective.subset(torch.arange(part.start, part.stop, device=x.device)), budget, g)
        return out.x_adv, out.queries, getattr(attack, "trace", None)

    parts = distributed.map_shards(len(x), tm.attack.shard_size, tm.data.seed, shard, "attack shards", progress)
    if isinstance(attack, HopSkipJumpAttack):
        attack.trace = [t for _, _, trace in parts for t in trace]
    return (torch.cat([a for a, _, _ in parts]).to(x.device),
            torch.cat([q for _, q, _ in parts]).numpy().astype(float))


@dataclass
class _Trial:
    """What an evasion run attacks: the target and its population, the attempts, what the attacker sees."""

    model: Recognizer
    pop: Population
    enrol: np.ndarray
    att: trial.Attempts
    objective: Objective
    x_all: torch.Tensor
    x: torch.Tensor
    view: knowledge.AttackerView
    generator: torch.Generator
    point: OperatingPoint | None
    """The target's operating point (open set)."""
    learnt: frozenset[str]
    """People the surrogates learnt from, left out of the attacked ones."""
    unlisted: list[str]
    """Surrogates trained on this dataset whose cards do not say on whom."""
    guard: defended.Defended | None = None
    """The input defence the target stands behind (None: none)."""
    beside: list[knowledge.AttackerView] = field(default_factory=list)
    """A defended white-box run's other attackers (non-adaptive, oblivious: `defended.views`), results kept."""
    hardening: defended.Hardening | None = None
    """The weights defence that changed the target (None: none)."""

    def defence(self) -> str | None:
        """The defence's label (None: none)."""
        return self.guard.label if self.guard else self.hardening.label if self.hardening else None


@dataclass
class _Outcome:
    """The clean and attacked faces judged by the target: successes and similarities, before and after."""

    clean: np.ndarray
    before: np.ndarray
    success: np.ndarray
    after: np.ndarray
    attempted: np.ndarray
    linf: np.ndarray
    l2: np.ndarray
    ssim: np.ndarray


def run_threat_model(tm: ThreatModel, ctx: RunContext) -> EvasionOutput:
    """Attack the threat model's population and measure everything results.json records."""
    t_start, progress = time.perf_counter(), ctx.progress
    t = _trial(tm, ctx, progress)
    clean, before = _success(t.objective, t.model, t.x)
    t_attack = time.perf_counter()
    out = _attack_attempts(tm, t, ~clean, progress)
    attack_time = time.perf_counter() - t_attack
    success, after = _success(t.objective, t.model, out.x_adv)
    if t.beside:
        faces = [_attack_attempts(tm, replace(t, view=view), ~clean, progress).x_adv for view in t.beside]
        out.extra.update(defended.measures(success, [_success(t.objective, t.model, x)[0] for x in faces], ~clean,
                                           t.att.own))
    linf, l2 = (v.cpu().numpy() for v in metrics.perturbation_norms(t.x, out.x_adv))
    seen = _Outcome(clean, before, success, after, ~clean, linf, l2, metrics.ssim(t.x, out.x_adv).cpu().numpy())
    _extra_measures(tm, t, out, seen, progress)
    metrics_out, validity = _measures(tm, t, out, seen)
    metrics_out.update({"attack_time_s": attack_time, "wall_time_s": time.perf_counter() - t_start,
                        "n_identities": len(t.pop.names), "n_skipped_images": len(t.pop.skipped)})
    return _output(tm, t, out, seen, metrics_out, validity)


def _trial(tm: ThreatModel, ctx: RunContext, progress: bool) -> _Trial:
    device = ctx.device
    model = load(tm.target, device)
    guard = defended.setup(tm, model)
    if guard is not None:
        model = guard.models["deployed"]
    models = knowledge.surrogates(tm, device)
    learnt, unlisted = knowledge.learnt_from(models, tm.data.dataset)
    try:
        pop = select(tm.data, model.info.template, progress, ctx.reserved() | learnt)
    except TooFewIdentities as exc:
        if not learnt:
            raise
        raise TooFewIdentities(f"{exc}; {len(learnt)} of them are people the surrogates learnt from") from exc
    if (hardening := defended.harden(tm, model, pop, ctx.reserved() | learnt, progress)) is not None:
        model = hardening.model
    x_all = pop.faces.to(device)
    enrol, probes = trial.split(pop, tm)
    att = trial.attempts(tm, pop, probes, np.random.default_rng(tm.data.seed))
    target = trial.judges(model, tm, pop, enrol, att, x_all, device, ctx.calibration)
    view = knowledge.attacker_view(tm, model, target, pop, enrol, att, x_all, device, models)
    view, beside = (view, []) if guard is None else defended.views(view, guard)
    return _Trial(model, pop, enrol, att, target.objective, x_all, x_all[att.index], view,
                  torch.Generator().manual_seed(tm.data.seed), target.point, learnt, unlisted, guard, beside,
                  hardening)


def _attack_attempts(tm: ThreatModel, t: _Trial, attempted: np.ndarray, progress: bool) -> Attacked:
    """The perturbation kind's attack on the attempts (pixel noise, or an accessory)."""
    p = tm.perturbation
    assert isinstance(p, PixelPerturbation | AccessoryPerturbation)
    if isinstance(p, AccessoryPerturbation):
        out = _attack_accessory(tm, p, t.model, t.pop, t.att, t.x, t.objective, t.view, attempted, t.generator,
                                progress)
    else:
        starts = None
        if tm.goal == "impersonation":  # decision-based attacks start from an image of the target
            first = {int(t.pop.identity[i]): i for i in t.enrol[::-1]}
            starts = t.x_all[[first[int(k)] for k in t.att.labels]]
        x_train = None if t.att.train_index is None else t.x_all[t.att.train_index]
        out = _attack_pixel(tm, p, t.x, t.view, x_train, t.generator, starts, progress)
    if t.view.transfer:  # how well the attack did on what it could differentiate
        out.extra["surrogate_success_rate"] = _rate(_judge(t.view.objective, out.x_adv), attempted)
    return out


def _extra_measures(tm: ThreatModel, t: _Trial, out: Attacked, seen: _Outcome, progress: bool) -> None:
    """Success after each number of queries (query attacks), and through the photo round trip when asked."""
    if isinstance(t.view.objective, Oracle):  # what the attacker had reached after each number of queries
        budget = t.view.objective.budget
        marks = sorted({m for m in (1, 10, 30, 100, 300, 1000, 3000, 10000) if m < budget} | {budget})
        out.extra["asr_at_queries"] = {str(m): _rate(seen.success & (out.queries <= m), seen.attempted)
                                       for m in marks}
    if tm.photo_round_trip:
        crops, found = _round_trip([t.pop.paths[i] for i in t.att.index], t.x, out.x_adv, t.model, tm, progress)
        photo_success, _ = _success(t.objective, t.model, crops.to(t.x.device))
        out.extra["photo_success_rate"] = _rate(photo_success & found, seen.attempted)
        out.extra["photo_faces_lost"] = int((~found & seen.attempted).sum())


_PROTOCOL_METRIC = {("open-set", "dodging"): "tar", ("open-set", "impersonation"): "target_accept",
                    ("closed-set", "dodging"): "rank1", ("closed-set", "impersonation"): "target_top1"}


def _measures(tm: ThreatModel, t: _Trial, out: Attacked, seen: _Outcome) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's metrics and validity checks."""
    noise_success, _ = _success(t.objective, t.model, out.baseline)
    n_attempts = int(seen.attempted.sum())
    n_success = int((seen.success & seen.attempted).sum())
    asr = n_success / n_attempts if n_attempts else 0.0
    noise_asr = _rate(noise_success, seen.attempted)
    final = seen.clean | seen.success
    holds_before = ~seen.clean if tm.goal == "dodging" else seen.clean
    holds_after = ~final if tm.goal == "dodging" else final
    baselines = {k: noise_asr if v is None else v for k, v in out.baselines.items()}
    validity = _validity(tm, t.x, t.view.objective, seen.attempted, out.unbounded, baselines, asr)
    if (masking := defended.masking_flag(out.extra)) is not None:
        validity["flags"].append(masking)
        validity["n_flags"] = len(validity["flags"])
    n_impostor = _fmr_support(tm, t.pop, validity, in_sample=t.point is None or t.point.source == "in-sample")
    _surrogate_people(t, validity, out.extra)
    return {
        "attack_success_rate": asr,
        "attack_success_ci95": list(wilson_interval(n_success, n_attempts)),
        "attack_success_ci95_cluster": list(cluster_interval(seen.success[seen.attempted],
                                                             t.att.own[seen.attempted])),
        "n_attempts": n_attempts,
        "n_samples": len(t.x),
        "clean_success_rate": float(seen.clean.mean()) if len(t.x) else 0.0,
        "clean_success_ci95_cluster": list(cluster_interval(seen.clean, t.att.own)) if len(t.x) else [0.0, 1.0],
        "noise_success_rate": noise_asr,
        "noise_success_ci95_cluster": list(cluster_interval(noise_success[seen.attempted],
                                                            t.att.own[seen.attempted]))
        if seen.attempted.any() else [0.0, 1.0],
        **out.extra,
        "protocol_metric": _PROTOCOL_METRIC[(tm.setting.kind, tm.goal)],
        "protocol_before": float(holds_before.mean()),
        "protocol_after": float(holds_after.mean()),
        "similarity_before_mean": float(seen.before.mean()),
        "similarity_after_mean": float(seen.after.mean()),
        "similarity_shift_mean": float((seen.after - seen.before).mean()),
        "threshold": t.objective.threshold if tm.setting.kind == "open-set" else None,
        "n_impostor_scores": n_impostor if tm.setting.kind == "open-set" else None,
        "n_impostor_identity_pairs": protocols.identity_pairs(len(t.pop.names))
        if tm.setting.kind == "open-set" else None,
        "linf_mean": float(seen.linf.mean()),
        "l2_mean": float(seen.l2.mean()),
        "ssim_mean": float(seen.ssim.mean()),
        "queries_per_sample": float(out.queries.mean()),
    }, validity


def _surrogate_people(t: _Trial, validity: dict[str, Any], extra: dict[str, Any]) -> None:
    """Transfer: how many people the surrogates learnt from were kept out of the attack, and a flag for each
    surrogate trained on this dataset whose card does not say on whom."""
    if not t.view.transfer:
        return
    extra["n_surrogate_people_left_out"] = len(t.learnt)
    for name in t.unlisted:
        validity["flags"].append(f"surrogate {name} may have trained on this dataset and its card does not say "
                                 "on whom (no list of identities, or a dataset not found here): the attacked people "
                                 "may include people it learnt from (train it again with `facesec surrogate train` "
                                 "to record them)")
    validity["n_flags"] = len(validity["flags"])


def _fmr_support(tm: ThreatModel, pop: Population, validity: dict[str, Any], in_sample: bool) -> int:
    """The population's impostor pairs; flagged in `validity` when they set the threshold (in sample) and are too
    few to support the open-set FMR."""
    n_impostor = protocols.pair_counts(np.bincount(pop.identity).tolist())[1]
    if not in_sample:
        return n_impostor
    if tm.setting.kind == "open-set" and not protocols.supported_fmr(n_impostor, tm.setting.fmr):
        needed = protocols.SUPPORT_COUNT / tm.setting.fmr
        validity["flags"].append(
            f"FMR {tm.setting.fmr:g} is not supported by {n_impostor} impostor pairs (about "
            f"{n_impostor * tm.setting.fmr:.1f} above the threshold; needs {needed:.0f}): raise data.identities or "
            "data.images_per_identity, or the FMR")
    people = protocols.people_flag(len(pop.names), tm.setting.fmr, "data.identities, or the FMR") \
        if tm.setting.kind == "open-set" else None
    if people is not None:
        validity["flags"].append(people)
    validity["n_flags"] = len(validity["flags"])
    return n_impostor


def _output(tm: ThreatModel, t: _Trial, out: Attacked, seen: _Outcome, metrics_out: dict[str, Any],
            validity: dict[str, Any]) -> EvasionOutput:
    """The record (dimensions, metrics, validity, per-attempt samples) and the faces its gallery shows."""
    p = tm.perturbation
    assert isinstance(p, PixelPerturbation | AccessoryPerturbation)
    pop, att = t.pop, t.att
    samples = {
        "index": np.arange(len(t.x)), "identity": [pop.names[i] for i in att.own],
        "target": [pop.names[k] if tm.goal == "impersonation" else "" for k in att.labels],
        "probe_path": [str(pop.paths[i]) for i in att.index], "clean_success": seen.clean,
        "success": seen.success & seen.attempted,
        "attempt_success": [bool(s) if a else None for s, a in zip(seen.success, seen.attempted, strict=True)],
        "similarity_before": seen.before, "similarity_after": seen.after,
        "linf": seen.linf, "l2": seen.l2, "ssim": seen.ssim, "queries": out.queries,
    }
    measured = Measured(
        dimensions=Dimensions(
            recognizer=t.model.info.name, perturbation=_perturbation_text(p), knowledge=t.view.description,
            goal=tm.goal, capability=tm.capability,
            setting=f"open-set FMR {tm.setting.fmr:g}" if tm.setting.kind == "open-set" else "closed-set",
            attack=f"{tm.attack.library}/{tm.attack.method}"
                   + ("" if tm.attack.method == "fgsm" else f" {tm.attack.steps} steps"),
            **({} if t.defence() is None else {"defence": t.defence()})),
        eps=p.eps if isinstance(p, PixelPerturbation) else None, metrics=metrics_out,
        validity=Validity.model_validate(plain(validity)), skipped_images=skipped(pop.skipped),
        provenance=measured_on(t.model, pop.manifest_sha256), samples=samples,
        operating_points=[] if t.point is None else [t.point],
        sections={} if t.hardening is None else {"defence_training": t.hardening.record})
    return EvasionOutput(measured, t.x[:GALLERY_SIZE].cpu(), out.x_adv[:GALLERY_SIZE].detach().cpu(),
                         p.eps if isinstance(p, PixelPerturbation) else None, out.worn)


def _round_trip(paths: list[Path], x: torch.Tensor, x_adv: torch.Tensor, model: Recognizer, tm: ThreatModel,
                progress: bool) -> tuple[torch.Tensor, np.ndarray]:
    """The attacked photos' crops as the pipeline makes them, and where it found the face (in shards)."""
    def shard(part: slice, g: torch.Generator) -> tuple[torch.Tensor, np.ndarray]:
        trip = photos.round_trip(paths[part], x[part], x_adv[part], model.info.template)
        return trip.crops, trip.found

    parts = distributed.map_shards(len(paths), tm.attack.shard_size, tm.data.seed, shard, "photo shards", progress)
    return torch.cat([c for c, _ in parts]), np.concatenate([f for _, f in parts])


def _rate(success: np.ndarray, attempted: np.ndarray) -> float:
    """Mean of `success` (booleans or per-sample rates) over the attempted samples; 0 when none."""
    return float(np.asarray(success, dtype=float)[attempted].mean()) if attempted.any() else 0.0


def _worn(acc: accessory_run.AccessoryOutcome, pop: Population, att: trial.Attempts,
          universal: bool) -> list[WornAccessory]:
    """The accessories to show and print: the gallery rows' own, or the one universal accessory."""
    if universal:
        assert att.train_index is not None
        eyes = export.eye_distance(pop.landmarks[att.train_index].mean(0))
        return [WornAccessory("universal", acc.pattern[0].cpu(), acc.mask[0].cpu(), eyes)]
    return [WornAccessory(f"sample {i}: {pop.names[att.own[i]]}", acc.pattern[i].cpu(), acc.mask[i].cpu(),
                          export.eye_distance(pop.landmarks[att.index[i]]))
            for i in range(min(GALLERY_SIZE, len(att.index)))]


def _perturbation_text(p: PixelPerturbation | AccessoryPerturbation) -> str:
    if isinstance(p, PixelPerturbation):
        return f"pixel {p.norm} {_budget_text(p.norm, p.eps)}"
    where = {"sticker": f" {p.anchor}", "eyeglasses": "", "facemask": ""}[p.shape]
    grid = f" grid {p.grid[0]}x{p.grid[1]}" if p.grid else ""
    return f"accessory {p.shape}{where}{grid}"


@dataclass
class Attacked:
    """What an attack left for measuring: the attacked faces, their queries, a baseline to beat, checks."""

    x_adv: torch.Tensor
    queries: np.ndarray
    baseline: torch.Tensor
    """The same perturbation kind without optimisation: random noise, or a random-colour accessory."""
    baselines: dict[str, float | None]
    """Success rates the attack must beat, by description; None: the baseline's own rate."""
    unbounded: Unbounded
    """The validity check's run without constraints."""
    extra: dict[str, Any]
    """Metrics only this perturbation kind has."""
    worn: list[WornAccessory] | None = None


def _attack_pixel(tm: ThreatModel, p: PixelPerturbation, x: torch.Tensor, view: knowledge.AttackerView,
                  x_train: torch.Tensor | None, generator: torch.Generator, starts: torch.Tensor | None,
                  progress: bool) -> Attacked:
    budget = Budget(p.norm, p.eps)
    attack = build_attack(tm, **_native_overrides(tm, view))
    if tm.attack.restarts > 1:
        attack = restarts(attack, tm.attack.restarts)
    if tm.attack.ensemble:
        attack = WorstCase([attack, *(_member(tm, m) for m in tm.attack.ensemble)])
    if isinstance(attack, HopSkipJumpAttack):
        attack.starts = starts
    x_adv, queries = _attack(attack, tm, x, view.objective, budget, generator, x_train, view.train, progress)
    extra: dict[str, Any] = {}
    if isinstance(attack, HopSkipJumpAttack):
        extra["linf_at_queries"] = _distortion_curve(attack.trace, int(queries.max(initial=0)))
    return Attacked(x_adv, queries, _noise(x, budget, generator), {"random noise": None},
                    _pixel_unbounded(tm, p, view, generator, starts), extra)


EOT_BATCH = 512
"""Faces x EOT draws in one attack batch: the autograd graph of every draw is held until the backward pass, so
the batch shrinks as the draws grow and memory stays that of 64 faces x 8 draws."""


def _native_overrides(tm: ThreatModel, view: knowledge.AttackerView, judged_as_seen: bool = False) -> dict[str, Any]:
    """The native attack's settings for this attacker: no early stop on a surrogate (unless `judged_as_seen`: the
    unbounded check judges on the objective it optimises) or on a random draw of the defence (success seen there
    is not success on a fresh draw), and a batch that bounds EOT's memory."""
    if tm.attack.library != "native":
        return {}
    surrogate = view.transfer and not judged_as_seen
    out: dict[str, Any] = {"early_stop": False} if surrogate or view.noisy else {}
    if isinstance(view.objective, Expectation):
        out["batch_size"] = max(1, min(int(tm.attack.params.get("batch_size", 64)),
                                       EOT_BATCH // view.objective.samples))
    return out


def _distortion_curve(trace: list[list[tuple[int, float]]], most: int) -> dict[str, float | None]:
    """Median L-inf distance to the original face after each number of queries (None: no iterate yet)."""
    marks = sorted({m for m in (10, 30, 100, 300, 1000, 3000, 10000) if m < most} | {most})
    curve: dict[str, float | None] = {}
    for m in marks:
        reached = [min((d for q, d in t if q <= m), default=float("inf")) for t in trace]
        median = float(np.median(reached)) if reached else float("inf")
        curve[str(m)] = None if not np.isfinite(median) else median
    return curve


def _attack_accessory(tm: ThreatModel, p: AccessoryPerturbation, model: Recognizer, pop: Population,
                      att: trial.Attempts, x: torch.Tensor, objective: Objective, view: knowledge.AttackerView,
                      attempted: np.ndarray, generator: torch.Generator, progress: bool) -> Attacked:
    train = None
    if att.train_index is not None:
        assert view.train is not None
        train = (pop.faces[att.train_index].to(x.device), pop.landmarks[att.train_index], view.train)
    acc = accessory_run.attack(tm, x, pop.landmarks[att.index], view.objective, train, generator,
                               judge=lambda faces: _success(objective, model, faces)[0], transfer=view.transfer,
                               progress=progress)
    plain_success, _ = _success(objective, model, acc.plain)
    plain_rate = _rate(plain_success, attempted)
    whose = att.own[attempted]
    extra = {"plain_accessory_success_rate": plain_rate,
             "plain_accessory_success_ci95_cluster": list(cluster_interval(plain_success[attempted], whose))
             if attempted.any() else None,
             "eot_success_rate": None if acc.eot_rate is None else _rate(acc.eot_rate, attempted),
             "eot_success_ci95_cluster": list(cluster_interval(np.asarray(acc.eot_rate)[attempted], whose))
             if acc.eot_rate is not None and attempted.any() else None,
             "eot_draws": None if p.eot is None else p.eot.eval_draws}
    steps = max(tm.attack.steps, SANITY_STEPS)

    def unbounded(faces: torch.Tensor, o: Criterion, chosen: np.ndarray) -> torch.Tensor:
        return accessory_run.unbounded(tm, faces, o, steps, generator)

    return Attacked(acc.x_adv, acc.queries, acc.random_colour,
                    {"a random-colour accessory": None, "the plain accessory": plain_rate}, unbounded, extra,
                    _worn(acc, pop, att, train is not None))


def build_attack(tm: ThreatModel, **override: Any) -> Attack:
    """The threat model's attack; ConfigError naming `attack.*` when it cannot be built or used."""
    a = tm.attack
    kwargs: dict[str, Any] = {"steps": a.steps, "step_size": a.step_size, **a.params}
    if a.random_start is not None:
        kwargs["random_start"] = a.random_start
    kwargs.update(override)
    return attacks.create(a.library, a.method, **kwargs)  # params and universal mode checked at validation


def _member(tm: ThreatModel, member: EnsembleMember) -> Attack:
    """One attack of the ensemble, with the threat model's steps unless it names its own."""
    kwargs: dict[str, Any] = {"steps": member.steps or tm.attack.steps, **member.params}
    return attacks.create(member.library, member.method, **kwargs)


def _pixel_unbounded(tm: ThreatModel, p: PixelPerturbation, view: knowledge.AttackerView,
                     generator: torch.Generator, starts: torch.Tensor | None) -> Unbounded:
    """The pixel attack with an unbounded budget and at least SANITY_STEPS steps (FGSM: a native PGD,
    since one full-budget step overshoots); universal attacks run on the samples directly."""
    if tm.attack.method == "fgsm":
        attack = attacks.create("native", "pgd", steps=SANITY_STEPS)
    else:
        attack = build_attack(tm, steps=max(tm.attack.steps, SANITY_STEPS), step_size=None,
                              **_native_overrides(tm, view, judged_as_seen=True))
    big = Budget(p.norm, UNBOUNDED[p.norm])

    def run(x: torch.Tensor, objective: Criterion, chosen: np.ndarray) -> torch.Tensor:
        if isinstance(attack, HopSkipJumpAttack):
            attack.starts = None if starts is None else starts[chosen]
        if tm.capability == "universal":
            return (x + attack.run_universal(x, objective, big, generator)).clamp(0, 1)
        return attack.run(x, objective, big, generator).x_adv

    return run


def _validity(tm: ThreatModel, x: torch.Tensor, objective: Criterion, attempted: np.ndarray,
              unbounded: Unbounded, baselines: dict[str, float],
              asr: float) -> dict[str, Any]:
    """AutoAttack-style checks: baselines the attack must beat, and an unbounded run that must succeed.

    The unbounded run asks whether the gradients of what the attacker differentiates (the target,
    or its surrogates) lead anywhere at all; it is judged on that same objective.
    """
    flags: list[str] = []
    chosen = np.flatnonzero(attempted)[: tm.attack.sanity_samples]
    unbounded_asr = None
    if len(chosen):
        sub_obj = objective.subset(torch.from_numpy(chosen).to(x.device))
        judge = sub_obj.objective if isinstance(sub_obj, Oracle) else sub_obj  # checking spends no attacker queries
        unbounded_asr = float(_judge(judge, unbounded(x[chosen], sub_obj, chosen)).mean())
        if unbounded_asr < SANITY_MIN_ASR:
            on = " on the surrogate(s)" if isinstance(tm.knowledge, Transfer) else ""
            flags.append(f"gradient masking suspected (or a broken attack): the unbounded run reached "
                         f"{unbounded_asr:.2f}{on} < {SANITY_MIN_ASR}")
    else:
        flags.append("unbounded-budget check not run: every sample already succeeded on the clean input")
    for what, rate in baselines.items():
        if rate > 0 and asr <= rate:
            flags.append(f"attack no better than {what} ({asr:.2f} <= {rate:.2f})")
    return {"noise_baseline_asr": next(iter(baselines.values())), "unbounded_asr": unbounded_asr,
            "unbounded_n": int(len(chosen)), "n_flags": len(flags), "flags": flags}


def _budget_text(norm: str, eps: float) -> str:
    """L-inf budgets in tenths of 255ths (8/255, 0.5/255), or hundredths below 1/255 (0.25/255); anything else as
    the decimal."""
    n = eps * 255
    step = 100 if n < 1 else 10
    return f"{round(n, 2):g}/255" if norm == "linf" and abs(n * step - round(n * step)) < 1e-6 else f"{eps:g}"
