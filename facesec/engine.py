"""Runs one threat model end to end: recognizer, faces, protocol, attack, validity checks, metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import torch

from facesec import attacks, metrics, protocols
from facesec.attacks import Attack, Budget, Objective
from facesec.errors import ConfigError
from facesec.population import Population, select
from facesec.provenance import provenance
from facesec.recognizers import Recognizer, load
from facesec.spec import ClosedSet, ThreatModel

UNBOUNDED = {"linf": 1.0, "l2": 1000.0}
SANITY_MIN_ASR = 0.95
SANITY_STEPS = 10
GALLERY_SIZE = 6


@dataclass
class Attempts:
    """The probes attacked, the gallery index each is judged against, and the identity it belongs to."""

    index: np.ndarray
    labels: np.ndarray
    own: np.ndarray
    train_index: np.ndarray | None = None
    """Universal runs: the probes the perturbation is optimised on (disjoint from `index`)."""


@dataclass
class RunOutput:
    """A run's record (results.json schema) and the tensors behind its gallery images."""

    record: dict[str, Any]
    clean: torch.Tensor
    adversarial: torch.Tensor
    eps: float


def _split(pop: Population, tm: ThreatModel) -> tuple[np.ndarray, np.ndarray]:
    """Enrolment faces (the first `g` of each identity) and probes (the rest)."""
    g = tm.setting.gallery_images if isinstance(tm.setting, ClosedSet) else 1
    position = np.concatenate([np.arange(np.sum(pop.identity == i)) for i in range(len(pop.names))])
    return np.flatnonzero(position < g), np.flatnonzero(position >= g)


def _gallery(model: Recognizer, emb: torch.Tensor, pop: Population, enrol: np.ndarray) -> torch.Tensor:
    """One template per identity: the mean of its enrolment embeddings (normalised first for cosine)."""
    e = emb[enrol]
    if model.info.comparison == "cosine":
        e = torch.nn.functional.normalize(e, dim=-1)
    ids = torch.from_numpy(pop.identity[enrol])
    return torch.stack([e[ids == i].mean(0) for i in range(len(pop.names))])


def _attempts(tm: ThreatModel, pop: Population, probes: np.ndarray, rng: np.random.Generator) -> Attempts:
    own = pop.identity[probes]
    k = len(pop.names)
    if tm.goal == "dodging":
        labels = own.copy()
        index = probes
    elif tm.capability == "universal":  # one target for everyone: probes of other identities
        target = int(rng.integers(k))
        keep = own != target
        index, own = probes[keep], own[keep]
        labels = np.full(len(index), target)
    else:  # a seeded random other identity per probe
        labels = (own + rng.integers(1, k, size=len(own))) % k
        index = probes
    if tm.capability == "universal":
        perm = rng.permutation(len(index))
        half = len(index) // 2
        train, test = perm[:half], perm[half:]
        return Attempts(index[test], labels[test], own[test], train_index=index[train])
    return Attempts(index, labels, own)


def _train_labels(tm: ThreatModel, pop: Population, attempts: Attempts) -> np.ndarray:
    assert attempts.train_index is not None
    if tm.goal == "dodging":
        return pop.identity[attempts.train_index]
    return np.full(len(attempts.train_index), attempts.labels[0])


def _objective(model: Recognizer, tm: ThreatModel, gallery: torch.Tensor, labels: np.ndarray,
               threshold: float, device: torch.device) -> Objective:
    return Objective(model, tm.setting.kind, tm.goal, gallery.to(device),
                     torch.from_numpy(labels).long().to(device), threshold)


def _success(objective: Objective, model: Recognizer, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Success and similarity to the reference, per sample."""
    emb = model.embed(x)
    idx = slice(None)
    return (objective.success(objective.margin(emb, idx)).cpu().numpy(),
            objective.similarity(emb, idx).float().cpu().numpy())


def _noise(x: torch.Tensor, budget: Budget, generator: torch.Generator) -> torch.Tensor:
    """Random noise at the full budget: random signs (L-inf) or a random direction (L2)."""
    if budget.norm == "linf":
        signs = torch.randint(0, 2, tuple(x.shape), generator=generator).float() * 2 - 1
        return (x + budget.eps * signs.to(x)).clamp(0, 1)
    d = torch.randn(tuple(x.shape), generator=generator)
    d = d / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    return (x + budget.eps * d.to(x)).clamp(0, 1)


def _attack(attack: Attack, tm: ThreatModel, x: torch.Tensor, objective: Objective, budget: Budget,
            generator: torch.Generator, x_train: torch.Tensor | None, train_objective: Objective | None
            ) -> tuple[torch.Tensor, np.ndarray]:
    if budget.eps == 0:  # nothing to optimise (and some libraries refuse a zero step)
        return x.clone(), np.zeros(len(x))
    if tm.capability == "universal":
        assert x_train is not None and train_objective is not None
        delta = attack.run_universal(x_train, train_objective, budget, generator)
        queries = np.full(len(x), float(getattr(attack, "steps", 0) + 1) * len(x_train) / max(len(x), 1))
        return (x + delta).clamp(0, 1), queries
    out = attack.run(x, objective, budget, generator)
    return out.x_adv, out.queries.numpy().astype(float)


def _threshold(model: Recognizer, emb: torch.Tensor, pop: Population, fmr: float) -> float:
    """Threshold at `fmr` on all clean impostor pairs of the population."""
    sims = model.similarity_matrix(emb, emb).cpu().numpy()
    ids = pop.identity
    iu = np.triu_indices(len(ids), k=1)
    impostor = sims[iu][ids[iu[0]] != ids[iu[1]]]
    return protocols.threshold_at_fmr(impostor, fmr)


def run_threat_model(tm: ThreatModel, device: torch.device, source: str = "", progress: bool = True) -> RunOutput:
    """Attack the threat model's population and measure everything results.json records."""
    started = datetime.now(UTC)
    t_start = time.perf_counter()
    model = load(tm.target, device)
    pop = select(tm.data, model.info.template, progress)
    rng = np.random.default_rng(tm.data.seed)
    generator = torch.Generator().manual_seed(tm.data.seed)
    x_all = pop.faces.to(device)
    emb = model.embed(x_all)
    enrol, probes = _split(pop, tm)
    gallery = _gallery(model, emb, pop, enrol)
    threshold = _threshold(model, emb, pop, tm.setting.fmr) if tm.setting.kind == "open-set" else 0.0
    att = _attempts(tm, pop, probes, rng)
    x = x_all[att.index]
    objective = _objective(model, tm, gallery, att.labels, threshold, device)
    x_train = train_obj = None
    if att.train_index is not None:
        x_train = x_all[att.train_index]
        train_obj = _objective(model, tm, gallery, _train_labels(tm, pop, att), threshold, device)

    budget = Budget(tm.perturbation.norm, tm.perturbation.eps)
    a = tm.attack
    attack = build_attack(tm)
    clean_success, sim_before = _success(objective, model, x)
    t_attack = time.perf_counter()
    x_adv, queries = _attack(attack, tm, x, objective, budget, generator, x_train, train_obj)
    attack_time = time.perf_counter() - t_attack
    adv_success, sim_after = _success(objective, model, x_adv)
    noise_success, _ = _success(objective, model, _noise(x, budget, generator))

    attempted = ~clean_success
    n_attempts = int(attempted.sum())
    n_success = int((adv_success & attempted).sum())
    asr = n_success / n_attempts if n_attempts else 0.0
    noise_asr = float((noise_success & attempted).sum() / n_attempts) if n_attempts else 0.0
    linf, l2 = (t.cpu().numpy() for t in metrics.perturbation_norms(x, x_adv))
    ssim = metrics.ssim(x, x_adv).cpu().numpy()
    final = clean_success | adv_success
    holds_before = ~clean_success if tm.goal == "dodging" else clean_success
    holds_after = ~final if tm.goal == "dodging" else final
    protocol_metric = {("open-set", "dodging"): "tar", ("open-set", "impersonation"): "target_accept",
                       ("closed-set", "dodging"): "rank1", ("closed-set", "impersonation"): "target_top1"}
    validity = _validity(tm, model, x, objective, attempted, budget, generator, x_train, train_obj,
                         noise_asr, asr)
    metrics_out = {
        "attack_success_rate": asr,
        "attack_success_ci95": list(metrics.wilson_interval(n_success, n_attempts)),
        "n_attempts": n_attempts,
        "n_samples": len(x),
        "clean_success_rate": float(clean_success.mean()) if len(x) else 0.0,
        "noise_success_rate": noise_asr,
        "protocol_metric": protocol_metric[(tm.setting.kind, tm.goal)],
        "protocol_before": float(holds_before.mean()),
        "protocol_after": float(holds_after.mean()),
        "similarity_before_mean": float(sim_before.mean()),
        "similarity_after_mean": float(sim_after.mean()),
        "similarity_shift_mean": float((sim_after - sim_before).mean()),
        "threshold": threshold if tm.setting.kind == "open-set" else None,
        "linf_mean": float(linf.mean()),
        "l2_mean": float(l2.mean()),
        "ssim_mean": float(ssim.mean()),
        "queries_per_sample": float(queries.mean()),
        "attack_time_s": attack_time,
        "wall_time_s": time.perf_counter() - t_start,
        "n_identities": len(pop.names),
        "n_skipped_images": len(pop.skipped),
    }
    samples = {
        "index": np.arange(len(x)), "identity": [pop.names[i] for i in att.own],
        "target": [pop.names[t] if tm.goal == "impersonation" else "" for t in att.labels],
        "probe_path": [str(pop.paths[i]) for i in att.index], "clean_success": clean_success,
        "success": adv_success & attempted, "similarity_before": sim_before, "similarity_after": sim_after,
        "linf": linf, "l2": l2, "ssim": ssim, "queries": queries,
    }
    record = {
        "name": tm.name, "source": source, "threat_model": tm.model_dump(mode="json"),
        "dimensions": {
            "recognizer": model.info.name,
            "perturbation": f"pixel {tm.perturbation.norm} {_budget_text(tm.perturbation.norm, tm.perturbation.eps)}",
            "knowledge": tm.knowledge, "goal": tm.goal, "capability": tm.capability,
            "setting": f"open-set FMR {tm.setting.fmr:g}" if tm.setting.kind == "open-set" else "closed-set",
            "attack": f"{a.library}/{a.method}" + ("" if a.method == "fgsm" else f" {a.steps} steps"),
        },
        "eps": tm.perturbation.eps, "metrics": metrics_out, "validity": validity,
        "skipped_images": [{"path": str(p), "reason": r} for p, r in pop.skipped],
        "provenance": provenance(tm, model, pop.manifest_sha256, device, started),
        "samples": samples,
    }
    return RunOutput(record, x[:GALLERY_SIZE].cpu(), x_adv[:GALLERY_SIZE].detach().cpu(), tm.perturbation.eps)


def build_attack(tm: ThreatModel, **override: Any) -> Attack:
    """The threat model's attack; ConfigError naming `attack.*` when it cannot be built or used."""
    a = tm.attack
    kwargs: dict[str, Any] = {"steps": a.steps, "step_size": a.step_size, **a.params}
    if a.random_start is not None:
        kwargs["random_start"] = a.random_start
    kwargs.update(override)
    try:
        attack = attacks.create(a.library, a.method, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"field 'attack.params': {a.library}/{a.method} does not take these parameters "
                          f"({exc})") from exc
    if tm.capability == "universal" and not attack.supports_universal:
        raise ConfigError(f"field 'capability': universal needs library: native ({a.library}/{a.method} "
                          "makes per-image perturbations only)")
    return attack


def _validity(tm: ThreatModel, model: Recognizer, x: torch.Tensor, objective: Objective,
              attempted: np.ndarray, budget: Budget, generator: torch.Generator, x_train: torch.Tensor | None,
              train_obj: Objective | None, noise_asr: float, asr: float) -> dict[str, Any]:
    """AutoAttack-style checks: the random-noise baseline, and an unbounded run that must succeed.

    The unbounded run uses the same attack with at least SANITY_STEPS steps (FGSM: a native PGD):
    the question is whether the objective's gradients lead anywhere.
    """
    flags: list[str] = []
    if tm.attack.method == "fgsm":  # one full-budget step overshoots: check the gradients with a 10-step PGD
        attack = attacks.create("native", "pgd", steps=SANITY_STEPS)
    else:  # the same attack, with at least SANITY_STEPS steps at its default step size for the big budget
        attack = build_attack(tm, steps=max(tm.attack.steps, SANITY_STEPS), step_size=None)
    chosen = np.flatnonzero(attempted)[: tm.attack.sanity_samples]
    unbounded_asr = None
    if len(chosen):
        sub = torch.from_numpy(chosen).to(x.device)
        sub_obj = Objective(model, objective.setting, objective.goal, objective.gallery,
                            objective.labels[sub], objective.threshold)
        big = Budget(budget.norm, UNBOUNDED[budget.norm])
        x_sub = x[sub]
        if tm.capability == "universal":  # the sanity question is about gradients: attack these samples directly
            delta = attack.run_universal(x_sub, sub_obj, big, generator)
            x_big = (x_sub + delta).clamp(0, 1)
        else:
            x_big = attack.run(x_sub, sub_obj, big, generator).x_adv
        ok, _ = _success(sub_obj, model, x_big)
        unbounded_asr = float(ok.mean())
        if unbounded_asr < SANITY_MIN_ASR:
            flags.append(f"attack or gradients broken: unbounded run reached {unbounded_asr:.2f} < {SANITY_MIN_ASR}")
    else:
        flags.append("unbounded-budget check not run: every sample already succeeded on the clean input")
    if noise_asr > 0 and asr <= noise_asr:
        flags.append(f"attack no better than random noise ({asr:.2f} <= {noise_asr:.2f})")
    return {"noise_baseline_asr": noise_asr, "unbounded_asr": unbounded_asr, "unbounded_n": int(len(chosen)),
            "n_flags": len(flags), "flags": flags}


def _budget_text(norm: str, eps: float) -> str:
    """L-inf budgets in tenths of 255ths as 8/255 or 0.5/255; anything else as the decimal."""
    n = eps * 255
    return f"{round(n, 1):g}/255" if norm == "linf" and abs(n * 10 - round(n * 10)) < 1e-6 else f"{eps:g}"
