"""The template-inversion runner: leak one template per enrolled identity, search the prior for a face that
matches it, and judge that face as a photo (detected and aligned) on the target and on other recognizers,
against the leaked template (type I) and the identity's other photos (type II), beside three baselines."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from facesec.data.faces import FaceAnalyzer
from facesec.errors import ConfigError
from facesec.families.base import RunContext, RunOutput
from facesec.families.inversion import decoder, search, students
from facesec.families.inversion.search import aligned, embed_photos, gan_search, to_photos
from facesec.families.inversion.spec import TemplateInversionPerturbation
from facesec.gallery import GALLERY_SIZE, GalleryOutput, finite
from facesec.measures.judges import Judge, calibrated_judge
from facesec.measures.rates import rate_with_intervals
from facesec.population import Population, select_with_others
from facesec.priors import dcgan
from facesec.progress import bar
from facesec.protocols import people_flag, supported_fmr
from facesec.provenance import measured_on
from facesec.recognizers.base import Recognizer, load
from facesec.recognizers.dlib_resnet import DlibResNet
from facesec.record import Dimensions, Measured, Validity, skipped
from facesec.threat_model import OpenSet, ThreatModel

PIXEL_LR = 0.01
GAN_LR = 0.05


@dataclass
class Verdict:
    """How one judge treated one set of images (one per private identity)."""

    scores: list[np.ndarray]
    """Per identity, similarity to each of its real photos (the enrolment first); -inf when not detected."""
    accepted: list[np.ndarray]
    found: np.ndarray


def _verdict(judge: Judge, emb: torch.Tensor, found: np.ndarray, members: list[np.ndarray]) -> Verdict:
    (threshold,) = judge.thresholds.values()
    scores = []
    for i, index in enumerate(members):
        s = judge.model.similarity(emb[i:i + 1], judge.emb[torch.from_numpy(index)]).cpu().numpy().astype(float)
        scores.append(s if found[i] else np.full(len(index), -np.inf))
    return Verdict(scores, [s > threshold for s in scores], found)


def _rates(v: Verdict, cross: bool) -> dict[str, Any]:
    """Type I (the enrolment photo the template came from) and type II (the identity's other photos); on another
    recognizer (`cross`) also pooled over all of the identity's real photos. Photos of one identity cluster
    (`ci95_cluster`)."""
    n = len(v.scores)
    whose = np.arange(n)
    split = {"type1": rate_with_intervals(np.array([a[0] for a in v.accepted], dtype=bool), whose),
             "type2": _photos(v.accepted, 1),
             "type2_identities_any": rate_with_intervals(np.array([a[1:].any() for a in v.accepted], dtype=bool),
                                                         whose)}
    if cross:  # also pooled over all photos, the leaked one included (type I and II mixed), as first reported
        return {"success_rate": _photos(v.accepted, 0), "identities_any": rate_with_intervals(
            np.array([a.any() for a in v.accepted], dtype=bool), whose), **split}
    return split


def _photos(accepted: list[np.ndarray], first: int) -> dict[str, Any]:
    """The share of each identity's photos (from `first` on) accepted, photos clustered by identity."""
    hits = np.concatenate([a[first:] for a in accepted]).astype(bool) if accepted else np.zeros(0, bool)
    whose = np.concatenate([np.full(max(len(a) - first, 0), i) for i, a in enumerate(accepted)]) if accepted \
        else np.zeros(0, int)
    return rate_with_intervals(hits, whose)


def _gan_inversion(generator: dcgan.Generator, attackers: list[Recognizer], templates: torch.Tensor,
                   tm: ThreatModel, analyzer: FaceAnalyzer, progress: bool,
                   start: torch.Tensor | None = None) -> list[np.ndarray]:
    """Per template, a face searched on the attackers' recognizers; of the restarts, the one the target matches
    most closely after detection and alignment (a white-box attacker can run that pipeline)."""
    p = tm.perturbation
    assert isinstance(p, TemplateInversionPerturbation)
    model = attackers[0]

    def pick(photos: list[np.ndarray], goal: torch.Tensor) -> torch.Tensor:
        emb, found = embed_photos(model, photos, analyzer, templates.device)
        score = dcgan.matching(model, templates)(emb, goal.to(templates.device))
        return score.masked_fill(~torch.from_numpy(found).to(score.device), -torch.inf)

    return gan_search(generator, [(a, dcgan.matching(a, templates)) for a in attackers], len(templates), p.restarts,
                      tm.attack.steps, tm.attack.step_size or GAN_LR, p.jitter, tm.data.seed, analyzer, pick, progress,
                      start, p.erosion, p.refine_steps, p.refine_radius)


def _gan_attack(generator: dcgan.Generator, model: Recognizer, target: Judge, templates: torch.Tensor,
                public: np.ndarray, tm: ThreatModel, analyzer: FaceAnalyzer,
                progress: bool) -> tuple[list[np.ndarray], list[np.ndarray] | None, dict[str, Any]]:
    """The attack on the generator prior: students distilled and a decoder trained first when asked, then the
    search (or the decoder alone). Returns the reconstructions, the decoder's own faces (None without one),
    and what training cost (target queries, times, agreement)."""
    p = tm.perturbation
    assert isinstance(p, TemplateInversionPerturbation)
    device, seed = templates.device, tm.data.seed
    if p.erosion and not isinstance(model.net, DlibResNet):
        raise ConfigError(f"field 'perturbation.erosion': needs a residual network facesec builds (dlib-resnet); "
                          f"{model.info.name} is not one: set it to 0")
    attackers = [model] + [load(s, device) for s in p.augment]
    for a in attackers[1:]:
        if a.info.embedding_size != model.info.embedding_size:
            raise ConfigError(f"field 'perturbation.augment': {a.info.name} gives {a.info.embedding_size}-d "
                              f"embeddings, not the target's {model.info.embedding_size}: augment with students "
                              "of the target (`facesec surrogate train`)")
    grid = dcgan.crop_grid(generator, model.info.template, analyzer, seed)
    training: dict[str, Any] = {"queries": 0}
    if p.distil:
        faces = students.training_faces(target.pop.faces[torch.from_numpy(public)], generator, grid,
                                        p.distil_generated, seed)
        distilled = students.distil(model, faces, p.distil, seed, progress, p.distil_epochs)
        attackers += distilled.students
        training["queries"] += distilled.queries
        training["students_centred_cosine"] = distilled.centred_cosine
    if p.method == "optimise":
        return _gan_inversion(generator, attackers, templates, tm, analyzer, progress), None, training
    trained = decoder.train(model, generator, grid, target.emb[torch.from_numpy(public)], p.decoder_samples,
                            p.decoder_steps, seed, progress)
    training.update(queries=training["queries"] + trained.queries, decoder_time_s=trained.seconds,
                    decoder_final_similarity=trained.final_similarity)
    start = decoder.decode(trained.decoder, templates)
    with torch.no_grad():
        decoded = dcgan.photos(generator(start.to(device)))
    if p.method == "decoder":
        return decoded, decoded, training
    return _gan_inversion(generator, attackers, templates, tm, analyzer, progress, start), decoded, training


def _pixel_inversion(target: Judge, templates: torch.Tensor, start: torch.Tensor, steps: int, lr: float,
                     tv_weight: float, progress: bool = False) -> torch.Tensor:
    """The target's crops (B x 3 x S x S) optimised from the mean public face to match the templates, smoothed
    by a total-variation penalty: what an attacker gets without a face prior."""
    x = start.expand(len(templates), -1, -1, -1).clone().requires_grad_(True)
    optimiser = torch.optim.Adam([x], lr=lr)
    for _ in bar(range(steps), desc="pixel inversion", unit="step", enabled=progress):
        img = x.clamp(0, 1)
        tv = (img[..., 1:, :] - img[..., :-1, :]).abs().mean((1, 2, 3)) + \
            (img[..., :, 1:] - img[..., :, :-1]).abs().mean((1, 2, 3))
        loss = (tv_weight * tv - target.model.similarity(target.model(img), templates)).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return x.detach().clamp(0, 1)


def _leaked(model: Recognizer, emb: torch.Tensor) -> torch.Tensor:
    """Templates as stored: the embedding itself (normalised when the recognizer compares by cosine)."""
    return F.normalize(emb, dim=-1) if model.info.comparison == "cosine" else emb


@dataclass
class _Leak:
    """The leaked templates and who judges what is rebuilt from them: the target (its threshold), the other
    recognizers, the private identities' photos and the public ones the attacker may use."""

    model: Recognizer
    pop: Population
    target: Judge
    others: list[Judge]
    members: list[np.ndarray]
    public: np.ndarray
    enrolment: np.ndarray
    templates: torch.Tensor
    analyzer: FaceAnalyzer


def run_threat_model(tm: ThreatModel, ctx: RunContext) -> RunOutput:
    """Invert each enrolled identity's leaked template and judge the reconstructions and the baselines."""
    p, setting = tm.perturbation, tm.setting
    assert isinstance(p, TemplateInversionPerturbation) and isinstance(setting, OpenSet)
    t_start = time.perf_counter()
    leak = _leak(tm, p, setting, ctx)
    t_attack = time.perf_counter()
    generator = dcgan.load_generator(ctx.device) if p.prior == "gan" else None
    mean_face = leak.target.pop.faces[torch.from_numpy(leak.public)].mean(0, keepdim=True)
    training: dict[str, Any] = {"queries": 0}
    decoded = None
    if generator is not None:
        reconstructions, decoded, training = _gan_attack(generator, leak.model, leak.target, leak.templates,
                                                         leak.public, tm, leak.analyzer, ctx.progress)
    else:
        crops = _pixel_inversion(leak.target, leak.templates, mean_face.to(ctx.device), tm.attack.steps,
                                 tm.attack.step_size or PIXEL_LR, p.tv_weight, ctx.progress)
        reconstructions = to_photos(crops)
    attack_time = time.perf_counter() - t_attack
    attempts, nearest = _attempts(leak, tm, p, reconstructions, decoded, generator, mean_face, ctx.device)
    verdicts = _judged(leak, attempts, nearest)
    metrics, flags = _metrics(leak, verdicts, tm, p, setting, training, generator is not None)
    metrics["attack_time_s"] = attack_time
    metrics["wall_time_s"] = time.perf_counter() - t_start
    return _output(leak, verdicts, nearest, reconstructions, metrics, flags, tm, p, setting, generator is not None)


def _leak(tm: ThreatModel, p: TemplateInversionPerturbation, setting: OpenSet, ctx: RunContext) -> _Leak:
    model = load(tm.target, ctx.device)
    n_private = tm.data.identities
    pop = select_with_others(tm.data, p.public_identities, "perturbation.public_identities", model.info.template,
                             ctx.progress, ctx.reserved())
    target = calibrated_judge(model, pop, [setting.fmr], ctx.progress, ctx.calibration)
    others = [calibrated_judge(load(s, ctx.device), pop, [setting.fmr], ctx.progress, ctx.calibration)
              for s in p.recognizers]
    members = [np.flatnonzero(pop.identity == i) for i in range(n_private)]
    enrolment = np.array([m[0] for m in members])
    templates = _leaked(model, target.emb[torch.from_numpy(enrolment)]).to(ctx.device)
    return _Leak(model, pop, target, others, members, np.flatnonzero(pop.identity >= n_private), enrolment,
                 templates, FaceAnalyzer())


def _attempts(leak: _Leak, tm: ThreatModel, p: TemplateInversionPerturbation, reconstructions: list[np.ndarray],
              decoded: list[np.ndarray] | None, generator: Any, mean_face: torch.Tensor,
              device: torch.device) -> tuple[dict[str, list[np.ndarray]], np.ndarray]:
    """The reconstructions and the baselines to judge (the mean public face, the decoder's start, a random face
    of the prior), and each template's nearest public face (judged by its embedding)."""
    n_private = tm.data.identities
    with torch.no_grad():
        prior = dcgan.load_generator(device) if generator is None and _gan_available() else generator
        random_faces = (dcgan.photos(prior(torch.randn(n_private, dcgan.LATENT, generator=torch.Generator()
                                                       .manual_seed(tm.data.seed + 1)).to(device)))
                        if prior is not None else None)
    public_sims = leak.model.similarity_matrix(leak.templates,
                                               leak.target.emb[torch.from_numpy(leak.public)].to(device)).cpu()
    attempts = {"reconstruction": reconstructions,
                "mean_public_face": to_photos(mean_face.expand(n_private, -1, -1, -1))}
    if p.method == "decoder-optimise" and decoded is not None:
        attempts["decoded_face"] = decoded  # the search's start: what the decoder alone gave
    if random_faces is not None:
        attempts["random_prior_sample"] = random_faces
    return attempts, leak.public[public_sims.argmax(1).numpy()]


def _judged(leak: _Leak, attempts: dict[str, list[np.ndarray]], nearest: np.ndarray) -> dict[str, dict[str, Verdict]]:
    """Every judge's verdict on every attempt, by judge and attempt."""
    verdicts: dict[str, dict[str, Verdict]] = {}
    for judge in [leak.target, *leak.others]:
        verdicts[judge.name] = {}
        for key, photos in attempts.items():
            emb, found = embed_photos(judge.model, photos, leak.analyzer, judge.emb.device)
            verdicts[judge.name][key] = _verdict(judge, emb, found, leak.members)
        near = judge.emb[torch.from_numpy(nearest)]
        verdicts[judge.name]["nearest_public_face"] = _verdict(judge, near, np.ones(len(nearest), bool),
                                                               leak.members)
    return verdicts


def _metrics(leak: _Leak, verdicts: dict[str, dict[str, Verdict]], tm: ThreatModel,
             p: TemplateInversionPerturbation, setting: OpenSet, training: dict[str, Any],
             gan: bool) -> tuple[dict[str, Any], list[str]]:
    """Type-I and type-II success, the baselines, each other recognizer's view, and the validity flags."""
    target, others = leak.target, leak.others
    point = target.point(setting.fmr)
    own = verdicts[target.name]
    results = {key: _rates(v, cross=False) for key, v in own.items()}
    cross = {j.name: {key: _rates(v, cross=True) for key, v in verdicts[j.name].items()} for j in others}
    head = results["reconstruction"]
    queries = (0 if p.method == "decoder" else (tm.attack.steps + search.ROUNDS + p.refine_steps) * p.restarts
               if gan else tm.attack.steps)
    metrics: dict[str, Any] = {
        "type1_success_rate": head["type1"]["rate"], "type1_success_rate_ci95": head["type1"]["ci95"],
        "type2_success_rate": head["type2"]["rate"], "type2_success_rate_ci95": head["type2"]["ci95"],
        "type1_success_rate_ci95_cluster": head["type1"]["ci95_cluster"],
        "type2_success_rate_ci95_cluster": head["type2"]["ci95_cluster"],
        "type2_identities_any": head["type2_identities_any"]["rate"],
        "type2_identities_any_ci95_cluster": head["type2_identities_any"]["ci95_cluster"],
        "cross_model_success_rate": cross[others[0].name]["reconstruction"]["success_rate"]["rate"]
        if others else None,
        "cross_model_identities_any": cross[others[0].name]["reconstruction"]["identities_any"]["rate"]
        if others else None,
        **_cross_split(cross[others[0].name]["reconstruction"] if others else None),
        "baselines": {key: {"type1": r["type1"]["rate"], "type2": r["type2"]["rate"]}
                      for key, r in results.items() if key != "reconstruction"},
        "by_recognizer": {name: {key: r["success_rate"]["rate"] for key, r in rows.items()}
                          for name, rows in cross.items()},
        "detail": {"target": results, "cross_model": cross},
        "reconstructions_detected": float(own["reconstruction"].found.mean()),
        "queries_per_sample": queries, "training_queries": training["queries"],
        **{k: v for k, v in training.items() if k != "queries"},
        "restart_choice": "target-template" if gan and p.method != "decoder" and p.restarts > 1 else "none",
        "threshold": target.thresholds[setting.fmr], "n_impostor_scores": point.impostor_pairs,
        "n_impostor_identity_pairs": point.identity_pairs,
        "fmr_supported": supported_fmr(point.impostor_pairs, setting.fmr),
        "n_identities": tm.data.identities, "n_public_identities": len(leak.pop.names) - tm.data.identities,
        "n_skipped_images": len(leak.pop.skipped),
    }
    for base, r in results.items():
        if base != "reconstruction":
            metrics[f"{base}_type2_rate"] = r["type2"]["rate"]
    if not target.in_sample():  # the engine flags a calibration too small for the FMR
        return metrics, []
    flags = [] if metrics["fmr_supported"] else [
        f"FMR {setting.fmr:g} is not supported by {target.impostor.size} impostor scores (needs "
        f"{10 / setting.fmr:.0f}); raise perturbation.public_identities"]
    flags += [f"{j.name}: FMR {setting.fmr:g} is not supported by {j.impostor.size} impostor scores"
              for j in others if not supported_fmr(j.impostor.size, setting.fmr)]
    people = people_flag(len(target.pop.names), setting.fmr, "data.identities or perturbation.public_identities")
    return metrics, flags + ([people] if people is not None else [])


def _output(leak: _Leak, verdicts: dict[str, dict[str, Verdict]], nearest: np.ndarray,
            reconstructions: list[np.ndarray], metrics: dict[str, Any], flags: list[str], tm: ThreatModel,
            p: TemplateInversionPerturbation, setting: OpenSet, gan: bool) -> RunOutput:
    """The record (dimensions, metrics, validity, per-identity samples) and its gallery."""
    pop, n_private, enrolment = leak.pop, tm.data.identities, leak.enrolment
    v = verdicts[leak.target.name]["reconstruction"]
    samples = {
        "index": np.arange(n_private), "identity": [pop.names[i] for i in range(n_private)],
        "enrolment_photo": [str(pop.paths[i]) for i in enrolment], "detected": v.found,
        "type1_score": [s[0] for s in v.scores], "type1": [bool(a[0]) for a in v.accepted],
        "type2_best_score": [s[1:].max() if len(s) > 1 else -np.inf for s in v.scores],
        "type2_accepted": [int(a[1:].sum()) for a in v.accepted], "type2_photos": [len(a) - 1 for a in v.accepted],
        "nearest_public_identity": [pop.names[pop.identity[i]] for i in nearest],
        **{f"cross_{j.name}_accepted": [int(a.sum()) for a in verdicts[j.name]["reconstruction"].accepted]
           for j in leak.others},
    }
    shown, _ = aligned(leak.model, reconstructions[:GALLERY_SIZE], leak.analyzer)
    images = [{"enrolment": leak.target.pop.faces[enrolment[i]], "reconstruction": shown[i],
               "probe": leak.target.pop.faces[leak.members[i][1]]} for i in range(min(GALLERY_SIZE, n_private))]
    fields = [{"identity": pop.names[i], "type1_score": finite(v.scores[i][0]), "type1": bool(v.accepted[i][0]),
               "type2_accepted": int(v.accepted[i][1:].sum()), "type2_photos": len(v.accepted[i]) - 1,
               "detected": bool(v.found[i])} for i in range(len(images))]
    measured = Measured(
        dimensions=Dimensions(
            recognizer=leak.model.info.name,
            perturbation=f"template inversion, {p.prior} prior" + (f", {p.method}" if gan else ""),
            knowledge="white-box" + (f" + {len(p.augment) + p.distil} augmenting model(s)"
                                     if p.augment or p.distil else ""),
            goal="a face accepted as the enrolled person", capability=tm.capability,
            setting=f"open-set FMR {setting.fmr:g}",
            attack=f"Adam, {tm.attack.steps} steps" + (f" x {p.restarts} restarts" if gan else "")),
        eps=None, metrics=metrics, validity=Validity(n_flags=len(flags), flags=flags),
        skipped_images=skipped(pop.skipped), provenance=measured_on(leak.model, pop.manifest_sha256),
        samples=samples, operating_points=[j.point(setting.fmr) for j in [leak.target, *leak.others]])
    return GalleryOutput(measured, images, fields)


def _cross_split(rates: dict[str, Any] | None) -> dict[str, Any]:
    """The first other recognizer's type I and type II success apart (None without one)."""
    keys = ("type1", "type2", "type2_identities_any")
    names = ("cross_model_type1_success_rate", "cross_model_type2_success_rate", "cross_model_type2_identities_any")
    intervals = {f"{name}_ci95_cluster": rates[key]["ci95_cluster"] for name, key in
                 zip((*names, "cross_model_success_rate", "cross_model_identities_any"),
                     (*keys, "success_rate", "identities_any"), strict=True)} if rates else {}
    return {name: rates[key]["rate"] if rates else None for name, key in zip(names, keys, strict=True)} | intervals


def _gan_available() -> bool:
    """Whether the generator is fetched (the random-prior baseline needs it; the pixel prior itself does not)."""
    from facesec.errors import WeightsError
    from facesec.recognizers import packaged

    try:
        packaged.installed("gan-face-generate")
    except WeightsError:
        return False
    return True
