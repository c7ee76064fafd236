"""Model stealing by distillation: train a student to reproduce a teacher's embeddings from queries.

The attacker owns face images and can query the target (the teacher) for embeddings; every
teacher forward on an image counts as one query. The student sees randomly flipped, shifted and
re-lit faces, a share of them blended in pairs (mixup: "function matching", Beyer et al. 2022,
which makes a few thousand faces go much further), and a share pushed along the student's own
most sensitive direction (Jacobian-style augmentation, Papernot et al. 2017: the teacher's answers
there correct the student's gradients, which is what a transfer attack uses), and regresses the
teacher's embedding of exactly the image it saw, in centred form
(dlib's mean embedding alone scores 0.91 cosine against any face, so agreement is measured after
subtracting the teacher's mean). Identities held out from training measure what was learned.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from facesec import __version__, metrics, protocols
from facesec.data.dataset import load_dataset
from facesec.data.pipeline import align_faces
from facesec.errors import ConfigError, DataError
from facesec.progress import bar as progress_bar
from facesec.recognizers.base import Recognizer, load
from facesec.recognizers.students import build

CHECKPOINT = "checkpoint.pt"
STUDENT = "student.pt"
CARD = "surrogate.json"
PRECISIONS = ("bf16", "fp32")


@dataclass
class Settings:
    """How a student is trained: teacher, architecture, data, held-out share and optimisation."""

    teacher: str
    arch: str
    data: str
    epochs: int = 5
    batch_size: int = 64
    lr: float = 2e-3
    holdout: float = 0.2
    seed: int = 0
    mix: float = 0.5
    probe: float = 0.25
    probe_eps: float = 8 / 255
    precision: str = "bf16"


@dataclass
class Faces:
    """Aligned crops (uint8, N x H x W x 3) with identities, split into training and held-out people."""

    crops: np.ndarray
    labels: np.ndarray
    train: np.ndarray
    held_out: np.ndarray
    manifest_sha256: str


def load_faces(settings: Settings, teacher: Recognizer, progress: bool) -> Faces:
    """All usable faces of the dataset in the teacher's template; a seeded share of identities held out."""
    ds = load_dataset(settings.data)
    faces = align_faces([p for p, _ in ds.items], teacher.info.template, progress=progress)
    label_of = {str(p): ident for p, ident in ds.items}
    labels = np.array([label_of[str(p)] for p in faces.paths])
    people = np.array(sorted(set(labels.tolist())))
    if len(people) < 4:
        raise DataError(f"dataset '{settings.data}' has {len(people)} identities; a student needs at least 4")
    rng = np.random.default_rng(settings.seed)
    n_out = max(2, round(settings.holdout * len(people)))
    out_people = set(rng.permutation(people)[:n_out].tolist())
    held = np.array([lab in out_people for lab in labels])
    digest = hashlib.sha256()
    for path, lab in zip(faces.paths, labels, strict=True):
        digest.update(f"{path.relative_to(ds.root).as_posix()},{lab}\n".encode())
    return Faces(faces.crops, labels, np.flatnonzero(~held), np.flatnonzero(held), digest.hexdigest())


def _batch(crops: np.ndarray, index: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(crops[index]).to(device).permute(0, 3, 1, 2).float().div_(255.0)


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flips, shifts of up to 4 pixels, and brightness/contrast changes of up to 10%."""
    n = len(x)
    flip = torch.rand(n, generator=generator) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(-1), x)
    dx, dy = (int(v) for v in torch.randint(-4, 5, (2,), generator=generator))
    x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    gain = (1 + (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * 0.1).to(x.device)
    offset = ((torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * 0.1).to(x.device)
    return ((x - 0.5) * gain + 0.5 + offset).clamp(0, 1)


def mix(x: torch.Tensor, share: float, generator: torch.Generator) -> torch.Tensor:
    """Blend the first `share` of the batch with other faces of the batch, weights uniform in [0, 1]."""
    n = round(share * len(x))
    if n == 0 or len(x) < 2:
        return x
    partner = torch.randperm(len(x), generator=generator)[:n].to(x.device)
    w = torch.rand(n, 1, 1, 1, generator=generator).to(x.device)
    return torch.cat([w * x[:n] + (1 - w) * x[partner], x[n:]])


def probe(student: torch.nn.Module, x: torch.Tensor, share: float, eps: float, generator: torch.Generator,
          bf16: bool) -> torch.Tensor:
    """The batch plus copies of its last `share` moved by one signed step (from a random start within
    `eps`) that changes the student's embedding most: where it is most likely to disagree with the teacher."""
    n = round(share * len(x))
    if n == 0:
        return x
    base = x[len(x) - n:]
    student.eval()  # running batch-norm statistics stay those of the training faces
    delta = ((torch.rand(base.shape, generator=generator) * 2 - 1) * eps).to(x.device)
    with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        anchor = student(base.contiguous(memory_format=torch.channels_last)).float()
    moved = (base + delta).requires_grad_(True)
    with torch.enable_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        change = (student(moved.contiguous(memory_format=torch.channels_last)).float() - anchor).pow(2).sum()
    (grad,) = torch.autograd.grad(change, moved)
    student.train()
    pushed = (base + (delta + eps * grad.sign()).clamp(-eps, eps)).clamp(0, 1)
    return torch.cat([x, pushed.detach()])


def loss_fn(student: torch.Tensor, teacher: torch.Tensor, mean: torch.Tensor, scale: float) -> torch.Tensor:
    """Regression of the centred embedding (relative to the teacher's spread) plus its cosine distance."""
    s, t = student - mean, teacher - mean
    return F.mse_loss(s, t) / scale + (1 - F.cosine_similarity(s, t, dim=1)).mean()


def _embed(net: torch.nn.Module, crops: np.ndarray, index: np.ndarray, device: torch.device) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([net(_batch(crops, index[i:i + 128], device)).float().cpu()
                          for i in range(0, len(index), 128)])


def centred_cosine(student: torch.nn.Module, teacher_embeddings: torch.Tensor, faces: Faces, index: np.ndarray,
                   mean: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Per face: cosine between student and teacher embeddings after subtracting the teacher's mean."""
    student.eval()
    s, m = _embed(student, faces.crops, index, device), mean.cpu()
    return F.cosine_similarity(s - m, teacher_embeddings - m, dim=1)


def agreement(student: torch.nn.Module, teacher: Recognizer, t: torch.Tensor, faces: Faces, index: np.ndarray,
              mean: torch.Tensor, device: torch.device) -> dict[str, float]:
    """On the held-out people (`t`: the teacher's embeddings of them): centred cosine with the teacher, and
    the student's own TAR at FMR 1e-2 / 1e-3."""
    student.eval()
    s = _embed(student, faces.crops, index, device)
    m = mean.cpu()
    cosine = F.cosine_similarity(s - m, t - m, dim=1)
    labels = faces.labels[index].tolist()
    gen, imp = protocols.verification_pairs(labels, seed=0)
    out = {"centred_cosine_mean": float(cosine.mean()), "centred_cosine_median": float(cosine.median())}
    for name, emb in (("student", s), ("teacher", t)):
        g = teacher.similarity(emb[gen[:, 0]], emb[gen[:, 1]]).numpy()
        i = teacher.similarity(emb[imp[:, 0]], emb[imp[:, 1]]).numpy()
        for fmr in (1e-2, 1e-3):
            out[f"{name}_tar_at_fmr_{fmr:g}"] = metrics.tar_at_fmr(g, i, fmr)[0]
    return out


def learning_rate(peak: float, step: int, total: int) -> float:
    """Linear warm-up over the first 5% of steps, then cosine decay to zero at `total`."""
    warm = max(1, total // 20)
    if step < warm:
        return peak * (step + 1) / warm
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))


def train(settings: Settings, out_dir: Path, device: torch.device, resume: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Train (or resume) a student, checkpointing every epoch; returns the surrogate card it writes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    teacher = load(settings.teacher, device).eval()
    faces = load_faces(settings, teacher, progress)
    torch.manual_seed(settings.seed)
    if settings.precision not in PRECISIONS:
        raise ConfigError(f"precision '{settings.precision}' is not one of {', '.join(PRECISIONS)}")
    student = build(settings.arch, teacher.info.embedding_size).to(device)
    untrained = build(settings.arch, teacher.info.embedding_size).to(device)
    untrained.load_state_dict(student.state_dict())
    optimiser = torch.optim.AdamW(student.parameters(), lr=settings.lr, weight_decay=5e-4)
    steps_per_epoch = max(1, len(faces.train) // settings.batch_size)
    total_steps = settings.epochs * steps_per_epoch
    generator = torch.Generator().manual_seed(settings.seed)
    queries, epoch, history = 0, 0, []
    checkpoint = out_dir / CHECKPOINT
    if resume and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        if {**state["settings"], "epochs": settings.epochs} != asdict(settings):
            raise ConfigError(f"{checkpoint}: saved with other settings {state['settings']}; resume with the same "
                              "arguments (only --epochs may grow) or use another --out")
        student.load_state_dict(state["student"])
        optimiser.load_state_dict(state["optimiser"])
        generator.set_state(state["generator"])
        queries, epoch, history = int(state["queries"]), int(state["epoch"]), list(state["history"])
        mean, scale = state["mean"].to(device), float(state["scale"])
    else:
        with torch.no_grad():
            t_train = teacher.embed(_batch(faces.crops, faces.train, device))
        queries += len(faces.train)
        mean = t_train.mean(0)
        scale = float(((t_train - mean) ** 2).mean())
    # Measurement only (not the attacker's queries): the teacher's view of the held-out people.
    t_held = teacher.embed(_batch(faces.crops, faces.held_out, torch.device("cpu")))
    student = student.to(memory_format=torch.channels_last)
    bf16 = settings.precision == "bf16"
    started = time.perf_counter()
    while epoch < settings.epochs:
        student.train()
        order = faces.train[torch.randperm(len(faces.train), generator=generator).numpy()]
        total = 0.0
        bar = progress_bar(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{settings.epochs}", unit="batch",
                           enabled=progress)
        for step in bar:
            x = mix(augment(_batch(faces.crops, order[step * settings.batch_size:(step + 1) * settings.batch_size],
                                   device), generator), settings.mix, generator)
            x = probe(student, x, settings.probe, settings.probe_eps, generator, bf16)
            with torch.no_grad():
                target = teacher(x).float()
            queries += len(x)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out = student(x.contiguous(memory_format=torch.channels_last))
            loss = loss_fn(out.float(), target, mean, scale)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            for group in optimiser.param_groups:
                group["lr"] = learning_rate(settings.lr, epoch * steps_per_epoch + step, total_steps)
            optimiser.step()
            total += float(loss.detach())
            bar.set_postfix(loss=f"{total / (step + 1):.3f}")
        epoch += 1
        cosine = centred_cosine(student, t_held, faces, faces.held_out, mean, device)
        history.append({"epoch": epoch, "loss": total / steps_per_epoch, "queries": queries,
                        "held_out_centred_cosine": float(cosine.mean())})
        bar.write(f"epoch {epoch}: loss {total / steps_per_epoch:.3f}, held-out centred cosine {cosine.mean():.3f}")
        torch.save({"settings": asdict(settings), "student": student.state_dict(), "optimiser": optimiser.state_dict(),
                    "generator": generator.get_state(), "queries": queries,
                    "epoch": epoch, "history": history, "mean": mean.cpu(), "scale": scale}, checkpoint)
    torch.save(student.state_dict(), out_dir / STUDENT)
    card = _card(settings, teacher, faces, queries, time.perf_counter() - started, history,
                 {"trained": agreement(student, teacher, t_held, faces, faces.held_out, mean, device),
                  "untrained": agreement(untrained, teacher, t_held, faces, faces.held_out, mean, device)})
    (out_dir / CARD).write_text(json.dumps(card, indent=2) + "\n")
    return card


def _card(settings: Settings, teacher: Recognizer, faces: Faces, queries: int, seconds: float,
          history: list[dict[str, Any]], held_out: dict[str, Any]) -> dict[str, Any]:
    """The surrogate card: settings, the teacher it copies, the data, queries spent, and held-out agreement."""
    return {
        "facesec_version": __version__,
        "settings": asdict(settings),
        "architecture": settings.arch,
        "teacher": {"name": teacher.info.name, "weights_sha256": teacher.info.weights_sha256,
                    "template": teacher.info.template.name, "input_size": teacher.info.input_size,
                    "embedding_size": teacher.info.embedding_size, "comparison": teacher.info.comparison,
                    "native_threshold": teacher.info.native_threshold},
        "data": {"dataset": settings.data, "manifest_sha256": faces.manifest_sha256,
                 "train_faces": int(len(faces.train)), "held_out_faces": int(len(faces.held_out)),
                 "held_out_identities": int(len(set(faces.labels[faces.held_out].tolist()))),
                 "train_identities": sorted(set(faces.labels[faces.train].tolist()))},
        "queries": queries,
        "train_seconds_this_session": seconds,
        "history": history,
        "held_out": held_out,
    }
