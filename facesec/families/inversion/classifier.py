"""Classifier inversion (closed set, the GMI / LOMMA setting): the target is an identification model, the
recognizer with a classification head trained on private identities; the attacker knows a class index and
holds public photos of other people, and searches the generator prior for a face the model assigns to that
class. An evaluation model (another recognizer with its own head trained on the same private identities,
never used by the attacker) judges the reconstructions, as MIBench does."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facesec.data.faces import FaceAnalyzer
from facesec.families.base import RunContext, RunOutput
from facesec.families.inversion import search, students
from facesec.families.inversion.search import aligned, embed_photos, gan_search
from facesec.families.inversion.spec import ClassifierInversionPerturbation
from facesec.gallery import GALLERY_SIZE, GalleryOutput
from facesec.measures.judges import own_view
from facesec.measures.rates import rate_with_ci
from facesec.population import Population, select_with_others
from facesec.priors import dcgan
from facesec.provenance import measured_on
from facesec.recognizers.base import Recognizer, load
from facesec.record import Dimensions, Measured, Validity, skipped
from facesec.threat_model import ThreatModel

HEAD_STEPS = 400
HEAD_LR = 0.05
GAN_LR = 0.05


class Head(nn.Module):
    """A linear classifier on L2-normalised embeddings: the identification model's last layer."""

    def __init__(self, dim: int, classes: int, seed: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, classes)
        with torch.no_grad():
            g = torch.Generator().manual_seed(seed)
            self.linear.weight.copy_(torch.randn(classes, dim, generator=g) * 0.01)
            self.linear.bias.zero_()

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.linear(F.normalize(emb, dim=-1))


def train_head(emb: torch.Tensor, labels: torch.Tensor, classes: int, seed: int,
               soft: torch.Tensor | None = None) -> Head:
    """A head fitted on `emb`: to `labels` (cross-entropy), or to the probabilities `soft` (distillation)."""
    head = Head(emb.shape[1], classes, seed).to(emb.device)
    optimiser = torch.optim.Adam(head.parameters(), lr=HEAD_LR, weight_decay=1e-4)
    for _ in range(HEAD_STEPS):
        logits = head(emb)
        loss = (F.kl_div(logits.log_softmax(1), soft, reduction="batchmean") if soft is not None
                else F.cross_entropy(logits, labels))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return head.eval().requires_grad_(False)


@dataclass
class Classifier:
    """A recognizer and its head, with the embeddings of the population as it sees them."""

    model: Recognizer
    head: Head
    pop: Population
    emb: torch.Tensor


def _score(c: Classifier, loss: str, public_mean: torch.Tensor | None, weight: float) -> search.Score:
    """The attacker's per-face objective: its goal is a class index."""

    def score(emb: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = c.head(emb)
        if loss == "ce":
            return -F.cross_entropy(logits, y, reduction="none")
        target = logits.gather(1, y[:, None]).squeeze(1)
        if public_mean is None or not weight:
            return target
        return target - weight * (F.normalize(emb, dim=-1) - public_mean).pow(2).sum(1)

    return score


@dataclass
class _Setup:
    """The target classifier (a head on the recognizer's embeddings of the private identities), the evaluation
    model's classifier, and the faces: private and public."""

    model: Recognizer
    pop: Population
    emb: torch.Tensor
    public: torch.Tensor
    target: Classifier
    evaluator: Classifier
    held_out: float
    """The evaluation model's accuracy on one held-out photo per private identity."""
    analyzer: FaceAnalyzer
    generator: Any


def run_threat_model(tm: ThreatModel, ctx: RunContext) -> RunOutput:
    """Invert each private class of the target classifier; judge the faces with the evaluation model."""
    p = tm.perturbation
    assert isinstance(p, ClassifierInversionPerturbation)
    t_start = time.perf_counter()
    setup = _setup(tm, p, ctx)
    attackers, distillation = _attackers(setup, tm, p, ctx)
    t_attack = time.perf_counter()
    own_score = attackers[0][1]

    def pick(photos: list[np.ndarray], goal: torch.Tensor) -> torch.Tensor:
        e, found = embed_photos(setup.model, photos, setup.analyzer, ctx.device)
        s = own_score(e, goal.to(ctx.device))
        return s.masked_fill(~torch.from_numpy(found).to(s.device), -torch.inf)

    n = tm.data.identities
    reconstructions = gan_search(setup.generator, attackers, n, p.restarts, tm.attack.steps,
                                 tm.attack.step_size or GAN_LR, p.jitter, tm.data.seed, setup.analyzer, pick,
                                 ctx.progress)
    attack_time = time.perf_counter() - t_attack
    with torch.no_grad():
        random_faces = dcgan.photos(setup.generator(torch.randn(n, dcgan.LATENT, generator=torch.Generator()
                                                                .manual_seed(tm.data.seed + 1)).to(ctx.device)))
    return _output(setup, reconstructions, random_faces, distillation, len(attackers) - 1, tm, p, ctx.device,
                   {"attack_time_s": attack_time, "t_start": t_start})


def _setup(tm: ThreatModel, p: ClassifierInversionPerturbation, ctx: RunContext) -> _Setup:
    device, progress, seed, n = ctx.device, ctx.progress, tm.data.seed, tm.data.identities
    model = load(tm.target, device)
    pop = select_with_others(tm.data, p.public_identities, "perturbation.public_identities", model.info.template,
                             progress)
    private = torch.from_numpy(np.flatnonzero(pop.identity < n))
    labels = torch.from_numpy(pop.identity).long().to(device)
    emb = model.embed(pop.faces, progress=progress)
    target = Classifier(model, train_head(emb[private], labels[private], n, seed), pop, emb)
    evaluator_model = load(p.evaluator, device)
    ev_pop, ev_emb = own_view(evaluator_model, pop, progress)
    last = torch.tensor([int(np.flatnonzero(pop.identity == i)[-1]) for i in range(n)])
    fit = torch.from_numpy(np.setdiff1d(private.numpy(), last.numpy()))
    evaluator = Classifier(evaluator_model, train_head(ev_emb[fit], labels[fit], n, seed + 1), ev_pop, ev_emb)
    with torch.no_grad():
        held_out = float((evaluator.head(ev_emb[last]).argmax(1).cpu() == torch.arange(n)).float().mean())
    return _Setup(model, pop, emb, torch.from_numpy(np.flatnonzero(pop.identity >= n)), target, evaluator, held_out,
                  FaceAnalyzer(), dcgan.load_generator(device))


def _attackers(setup: _Setup, tm: ThreatModel, p: ClassifierInversionPerturbation,
               ctx: RunContext) -> tuple[list[tuple[Recognizer, Any]], dict[str, Any]]:
    """The scores the search climbs: the target's, and with model augmentation each student's (a head trained
    on the target's answers); what distilling the students cost."""
    device, progress, seed, n = ctx.device, ctx.progress, tm.data.seed, tm.data.identities
    model, pop, emb, public, target = setup.model, setup.pop, setup.emb, setup.public, setup.target
    public_mean = F.normalize(emb[public], dim=-1).mean(0) if p.loss == "logit" else None
    attackers = [(model, _score(target, p.loss, public_mean, p.feature_weight))]
    distillation: dict[str, Any] = {"training_queries": 0}
    if not p.model_augmentation:
        return attackers, distillation
    with torch.no_grad():
        soft = target.head(emb[public]).softmax(1)
    # (student, its features of the distillation faces, the target's probabilities for those faces,
    # its embeddings of the population)
    heads_on: list[tuple[Recognizer, torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for spec in p.students:
        student = load(spec, device)
        s_emb = own_view(student, pop, progress)[1]
        heads_on.append((student, s_emb[public], soft, s_emb))
    if p.distil:
        grid = dcgan.crop_grid(setup.generator, model.info.template, setup.analyzer, seed)
        faces = students.training_faces(pop.faces[public], setup.generator, grid, p.distil_generated, seed)
        distilled = students.distil(model, faces, p.distil, seed, progress, p.distil_epochs)
        with torch.no_grad():
            soft_all = target.head(distilled.teacher.to(device)).softmax(1)
        heads_on += [(s, s.embed(faces.to(device)), soft_all, own_view(s, pop, progress)[1])
                     for s in distilled.students]
        distillation = {"training_queries": distilled.queries, "students_centred_cosine": distilled.centred_cosine}
    for i, (student, feats, probs, s_emb) in enumerate(heads_on):
        head = train_head(feats, probs.argmax(1), n, seed + 2 + i, soft=probs)
        s_mean = F.normalize(feats, dim=-1).mean(0) if p.loss == "logit" else None
        attackers.append((student, _score(Classifier(student, head, pop, s_emb), p.loss, s_mean, p.feature_weight)))
    return attackers, distillation


def _output(setup: _Setup, reconstructions: list[np.ndarray], random_faces: list[np.ndarray],
            distillation: dict[str, Any], n_students: int, tm: ThreatModel, p: ClassifierInversionPerturbation,
            device: torch.device, times: dict[str, float]) -> RunOutput:
    """The evaluation model's verdicts, the metrics, and the record with its gallery."""
    n, pop, analyzer = tm.data.identities, setup.pop, setup.analyzer
    judged = {key: _judge(setup.evaluator, photos, analyzer, device, n)
              for key, photos in (("reconstruction", reconstructions), ("random_prior_sample", random_faces))}
    own_top1 = _judge(setup.target, reconstructions, analyzer, device, n)["top1"]
    rec = judged["reconstruction"]
    knn = _knn(setup.evaluator, reconstructions, analyzer, device, n)
    metrics: dict[str, Any] = {
        "attack_accuracy_top1": rec["top1"].mean(), "attack_accuracy_top1_ci95":
            rate_with_ci(int(rec["top1"].sum()), n)["ci95"],
        "attack_accuracy_top5": rec["top5"].mean(), "attack_accuracy_top5_ci95":
            rate_with_ci(int(rec["top5"].sum()), n)["ci95"],
        "knn_distance": float(np.nanmean(knn)) if np.isfinite(knn).any() else None,
        "chance_top1": 1 / n, "chance_top5": min(5, n) / n,
        "target_accuracy_top1": float(own_top1.mean()),
        "random_prior_sample_top1": float(judged["random_prior_sample"]["top1"].mean()),
        "random_prior_sample_top5": float(judged["random_prior_sample"]["top5"].mean()),
        "evaluator_accuracy": setup.held_out, "reconstructions_detected": float(rec["found"].mean()),
        "queries_per_sample": (tm.attack.steps + search.ROUNDS) * p.restarts, **distillation,
        "n_identities": n, "n_public_identities": len(pop.names) - n, "attack_time_s": times["attack_time_s"],
        "n_skipped_images": len(pop.skipped), "wall_time_s": time.perf_counter() - times["t_start"],
    }
    flags = [] if setup.held_out >= 0.5 else [f"the evaluation model recognises only {setup.held_out:.0%} of "
                                              "held-out private photos; its verdicts are weak"]
    samples = {
        "index": np.arange(n), "identity": pop.names[:n], "detected": rec["found"], "evaluator_top1": rec["top1"],
        "evaluator_top5": rec["top5"], "evaluator_rank": rec["rank"], "target_top1": own_top1, "knn_distance": knn,
    }
    first = [int(np.flatnonzero(pop.identity == i)[0]) for i in range(n)]
    shown, _ = aligned(setup.model, reconstructions[:GALLERY_SIZE], analyzer)
    images = [{"private": pop.faces[first[i]], "reconstruction": shown[i]} for i in range(min(GALLERY_SIZE, n))]
    fields = [{"identity": pop.names[i], "evaluator_top1": bool(rec["top1"][i]), "evaluator_rank": int(rec["rank"][i]),
               "detected": bool(rec["found"][i]), "knn_distance": None if np.isnan(knn[i]) else float(knn[i])}
              for i in range(len(images))]
    measured = Measured(
        dimensions=Dimensions(
            recognizer=setup.model.info.name, perturbation=f"classifier inversion, {p.loss} loss"
            + (f" + {n_students} student(s)" if p.model_augmentation else ""),
            knowledge="white-box", goal="a face the model assigns to the class", capability=tm.capability,
            setting=f"closed-set, {n} private identities",
            attack=f"Adam, {tm.attack.steps} steps x {p.restarts} restarts"),
        eps=None, metrics=metrics, validity=Validity(n_flags=len(flags), flags=flags),
        skipped_images=skipped(pop.skipped), provenance=measured_on(setup.model, pop.manifest_sha256),
        samples=samples)
    return GalleryOutput(measured, images, fields)


def _judge(c: Classifier, photos: list[np.ndarray], analyzer: FaceAnalyzer, device: torch.device,
           n: int) -> dict[str, np.ndarray]:
    """Per class, whether the classifier (after detection and alignment) ranks it first / in its top 5."""
    e, found = embed_photos(c.model, photos, analyzer, device)
    with torch.no_grad():
        logits = c.head(e).cpu()
    rank = (logits > logits.gather(1, torch.arange(n)[:, None])).sum(1).numpy() + 1
    rank = np.where(found, rank, n + 1)
    return {"top1": rank == 1, "top5": rank <= 5, "rank": rank, "found": found}


def _knn(c: Classifier, photos: list[np.ndarray], analyzer: FaceAnalyzer, device: torch.device,
         n: int) -> np.ndarray:
    """Per class, the cosine distance from the reconstruction to the nearest private photo of that class in the
    evaluation model's feature space (nan when no face was found)."""
    e, found = embed_photos(c.model, photos, analyzer, device)
    out = np.full(n, np.nan)
    for i in range(n):
        if found[i]:
            own = torch.from_numpy(np.flatnonzero(c.pop.identity == i))
            sims = F.normalize(c.emb[own], dim=-1) @ F.normalize(e[i], dim=0)
            out[i] = float(1 - sims.max())
    return out
