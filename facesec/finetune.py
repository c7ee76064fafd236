"""Fine-tuning a recognizer (a backdoored victim's, an adversarially trained defence's): trained further on
labelled faces with a pairwise metric loss (dlib's own: genuine pairs pulled inside the threshold by a margin, the
hardest impostor pairs pushed outside it), in seeded identity-balanced batches, with a checkpoint after every
epoch so an interrupted run resumes. With an `Adversary`, each batch is first replaced by its PGD perturbation
that maximises that loss (adversarial training, Madry et al. 2018).

A plain PyTorch loop that works for any differentiable recognizer. For dlib-resnet's last stage there is a fast
path: the frozen layers' outputs are computed once per face and the trainable tail runs on them (not with an
adversary, whose perturbation must pass the whole network)."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facesec import protocols
from facesec.data.cache import cache_root
from facesec.progress import bar, note
from facesec.recognizers.base import Recognizer
from facesec.recognizers.dlib_resnet import DlibResNet

MARGIN = {"euclidean": 0.04, "cosine": 0.1}
"""How far inside/outside the threshold the loss pushes pairs: dlib trained its ResNet with 0.04 around 0.6."""

TAIL_BLOCKS = 4
"""dlib-resnet's `last`: its last four residual blocks (the 256-channel stages) and the embedding layer."""

LAST_SHARE = 0.3
"""Other recognizers' `last`: the trailing share of their parameter tensors (in definition order)."""


CHECKPOINT_FORMAT = 1
"""Bumped when what a checkpoint holds, or how training proceeds, changes: old checkpoints are then not resumed."""


@dataclass(frozen=True)
class Adversary:
    """PGD in the training loop: L-inf budget `eps` in pixel units, `steps` signed-gradient steps of 2.5 eps /
    steps from a random start in the ball (Madry et al. 2018)."""

    eps: float
    steps: int


@dataclass(frozen=True)
class Recipe:
    """The victim's training settings (all recorded in provenance)."""

    layers: str
    epochs: int
    learning_rate: float
    batch_identities: int
    batch_images: int
    threshold: float
    """On the recognizer's similarity scale: pairs above it are the same person."""
    seed: int
    mirror: bool = True
    """Train on every face and its mirror image (the usual augmentation for face recognizers: a mirrored face
    keeps its identity)."""
    anchor: float = 0.0
    """Weight of the squared distance of the trained weights from the starting ones (L2-SP, Li et al. 2018):
    fine-tuning that keeps what the model already knows."""
    distill: float = 0.0
    """Weight of each training face's squared embedding distance from the starting model's embedding of it
    (learning without forgetting, Li & Hoiem 2016): fine-tuning that keeps how the model sees faces."""
    adversary: Adversary | None = None
    """Train on each batch's PGD perturbation instead of the batch (adversarial training)."""

    def settings(self) -> dict[str, object]:
        """The recipe as recorded and keyed: every setting, an adversary only when there is one."""
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Finetuned:
    """The fine-tuned recognizer and what training did."""

    model: Recognizer
    losses: list[float]
    """Mean loss per epoch."""
    seconds: float
    resumed_from: int
    """Epochs taken from a checkpoint (0: trained from the start)."""
    trainable_parameters: int


def metric_loss(model: Recognizer, emb: torch.Tensor, labels: torch.Tensor, threshold: float) -> torch.Tensor:
    """dlib's loss_metric on the similarity scale: genuine pairs below threshold + margin and as many of the
    hardest impostor pairs above threshold - margin as there are genuine pairs, averaged."""
    margin = MARGIN[model.info.comparison]
    sims = model.similarity_matrix(emb, emb)
    same = labels[:, None] == labels[None, :]
    upper = torch.triu(torch.ones_like(same), diagonal=1)
    pos = F.relu(threshold + margin - sims[same & upper])
    neg = F.relu(sims[~same & upper] - (threshold - margin))
    k = min(len(neg), max(1, len(pos)))
    hardest = torch.topk(neg, k).values if k else neg
    return (pos.sum() + hardest.sum()) / max(1, len(pos) + k)


def batches(labels: np.ndarray, identities: int, images: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of identity-balanced batches: each identity's samples shuffled and cut into groups of `images`,
    groups shuffled and `identities` of them per batch (an identity with fewer samples forms one short group)."""
    groups = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        groups += [members[i:i + images] for i in range(0, len(members), images)]
    order = rng.permutation(len(groups))
    return [np.concatenate([groups[j] for j in order[i:i + identities]]) for i in range(0, len(order), identities)]


class _Tail(nn.Module):
    """dlib-resnet's last residual blocks, the spatial mean and the embedding layer."""

    def __init__(self, blocks: nn.Module, fc: nn.Module) -> None:
        super().__init__()
        self.blocks, self.fc = blocks, fc

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc(self.blocks(h).mean(dim=(2, 3)))
        return out


def _tail_split(model: Recognizer) -> tuple[Callable[[torch.Tensor], torch.Tensor], nn.Module] | None:
    """dlib-resnet's frozen front (a function) and trainable tail (a module over the front's output)."""
    net = model.net
    if not isinstance(net, DlibResNet):
        return None
    head = nn.Sequential(*list(net.blocks)[-TAIL_BLOCKS:])

    def front(x: torch.Tensor) -> torch.Tensor:
        x = (x * 255.0 - net.mean) / 256.0
        x = F.max_pool2d(F.relu(net.aff(net.conv(x))), 3, 2)
        return nn.Sequential(*list(net.blocks)[:-TAIL_BLOCKS])(x)

    return front, _Tail(head, net.fc)


def _trainable(model: Recognizer, layers: str) -> list[nn.Parameter]:
    params = list(model.parameters())
    if layers == "all":
        return params
    split = _tail_split(model)
    if split is not None:
        return list(split[1].parameters())
    return params[int(len(params) * (1 - LAST_SHARE)):]


def _drift(params: list[nn.Parameter], start: list[torch.Tensor]) -> torch.Tensor:
    """Squared distance of the trained weights from where they started (L2-SP's penalty)."""
    return torch.stack([((p - w) ** 2).sum() for p, w in zip(params, start, strict=True)]).sum()


def _batched(forward: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor,
             device: torch.device) -> torch.Tensor:
    """`forward` of every input, without gradients, 64 at a time (the frozen front's outputs; the starting
    model's embeddings that `Recipe.distill` pulls towards)."""
    with torch.no_grad():
        return torch.cat([forward(inputs[i:i + 64].to(device)).cpu() for i in range(0, len(inputs), 64)])


def _key(model: Recognizer, faces: torch.Tensor, labels: np.ndarray, recipe: Recipe) -> str:
    h = hashlib.sha256()
    for t in model.state_dict().values():
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(faces.detach().cpu().contiguous().numpy().tobytes())
    h.update(np.ascontiguousarray(labels).tobytes())
    h.update(json.dumps({**recipe.settings(), "tail": TAIL_BLOCKS, "share": LAST_SHARE, "margin": MARGIN,
                         "format": CHECKPOINT_FORMAT}, sort_keys=True).encode())
    return h.hexdigest()


def _save(state: dict[str, object], path: Path) -> None:
    """Atomically: an interrupted write never leaves a truncated checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    torch.save(state, tmp)
    os.replace(tmp, path)


def training_threshold(model: Recognizer, faces: torch.Tensor, labels: np.ndarray, fmr: float) -> float:
    """The similarity the training loss treats as 'same person': the model's own rule, or the training pairs'
    threshold at the FMR."""
    if model.info.native_threshold is not None:
        return model.info.native_threshold
    emb = model.embed(faces)
    sims = model.similarity_matrix(emb, emb).cpu().numpy()
    iu = np.triu_indices(len(labels), k=1)
    return protocols.threshold_at_fmr(sims[iu][labels[iu[0]] != labels[iu[1]]], fmr)


def _perturbed(model: Recognizer, x: torch.Tensor, labels: torch.Tensor, threshold: float, adversary: Adversary,
               generator: torch.Generator) -> torch.Tensor:
    """`x` moved within the adversary's budget to raise the metric loss of the batch (its PGD perturbation)."""
    eps, step = adversary.eps, 2.5 * adversary.eps / adversary.steps
    delta = ((torch.rand(x.shape, generator=generator) * 2 - 1) * eps).to(x.device)
    for _ in range(adversary.steps):
        delta.requires_grad_(True)
        loss = metric_loss(model, model((x + delta).clamp(0, 1)), labels, threshold)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + step * grad.sign()).clamp(-eps, eps)
    return (x + delta).clamp(0, 1).detach()


@dataclass
class _Loop:
    """What one epoch of fine-tuning works on."""

    tuned: Recognizer
    forward: Callable[[torch.Tensor], torch.Tensor]
    inputs: torch.Tensor
    target: torch.Tensor
    params: list[nn.Parameter]
    start_weights: list[torch.Tensor]
    start_embeddings: torch.Tensor | None
    optimiser: torch.optim.Optimizer
    generator: torch.Generator
    """The adversary's random starts (seeded per epoch, so a resumed run draws the same)."""


def _epoch(loop: _Loop, recipe: Recipe, order: list[np.ndarray]) -> float:
    """One pass over `order`'s batches; the mean loss."""
    total, device = 0.0, loop.target.device
    for index in order:
        x, who = loop.inputs[index].to(device), loop.target[index]
        if recipe.adversary is not None:
            x = _perturbed(loop.tuned, x, who, recipe.threshold, recipe.adversary, loop.generator)
        emb = loop.forward(x)
        loss = metric_loss(loop.tuned, emb, who, recipe.threshold)
        penalty = recipe.anchor * _drift(loop.params, loop.start_weights) if loop.start_weights else 0.0
        if loop.start_embeddings is not None:
            penalty = penalty + recipe.distill * ((emb - loop.start_embeddings[index].to(device)) ** 2).sum(1).mean()
        loop.optimiser.zero_grad(set_to_none=True)
        (loss + penalty).backward()
        loop.optimiser.step()
        total += float(loss.detach())
    return total / max(1, len(order))


def _resume(tuned: Recognizer, model: Recognizer, optimiser: torch.optim.Optimizer, last: Path,
            params: list[nn.Parameter], recipe: Recipe) -> tuple[torch.optim.Optimizer, int, list[float]]:
    """The optimiser, epochs done and losses from the checkpoint at `last` (none there or unreadable: a fresh
    start; `tuned` holds the checkpoint's weights or the model's)."""
    if not last.is_file():
        return optimiser, 0, []
    try:
        state = torch.load(last, map_location="cpu", weights_only=True)
        tuned.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        return optimiser, int(state["epoch"]), [float(v) for v in state["losses"]]
    except (RuntimeError, ValueError, KeyError, TypeError, OSError, EOFError):
        tuned.load_state_dict(model.state_dict())  # unreadable (e.g. from another torch): train from the start
        return torch.optim.Adam(params, lr=recipe.learning_rate), 0, []


def finetune(model: Recognizer, faces: torch.Tensor, labels: np.ndarray, recipe: Recipe, progress: bool,
             checkpoints: Path | None = None) -> Finetuned:
    """A copy of `model` fine-tuned on `faces` (N x 3 x H x W in [0, 1], its crops) with `labels`. With
    `checkpoints` (default: the facesec cache's backdoor folder), each epoch's state is saved under a key of
    everything that determines training, and a rerun resumes from the last one."""
    import time

    t0 = time.perf_counter()
    tuned = copy.deepcopy(model).eval()
    device = next(tuned.parameters()).device
    tuned.requires_grad_(False)
    params = _trainable(tuned, recipe.layers)
    for p in params:
        p.requires_grad_(True)
    start_weights = [p.detach().clone() for p in params] if recipe.anchor else []
    if recipe.mirror:
        faces, labels = torch.cat([faces, faces.flip(-1)]), np.concatenate([labels, labels])
    split = _tail_split(tuned) if recipe.layers == "last" and recipe.adversary is None else None
    if split is not None:
        front, tail = split
        inputs = _batched(front, faces, device)
        forward: Callable[[torch.Tensor], torch.Tensor] = tail
    else:
        inputs, forward = faces, tuned
    folder = (checkpoints or cache_root() / "backdoor") / _key(model, faces, labels, recipe)[:32]
    last = folder / "checkpoint.pt"
    optimiser, start, losses = _resume(tuned, model, torch.optim.Adam(params, lr=recipe.learning_rate), last,
                                       params, recipe)
    if start:
        note(f"fine-tuning: {min(start, recipe.epochs)} of {recipe.epochs} epochs found in {folder}", progress)
    start_embeddings = _batched(forward, inputs, device) if recipe.distill and start < recipe.epochs else None
    rng = np.random.default_rng(recipe.seed)
    for _ in range(start):  # the data order of the epochs already done, so a resumed run sees the same batches
        batches(labels, recipe.batch_identities, recipe.batch_images, rng)
    loop = _Loop(tuned, forward, inputs, torch.from_numpy(labels).to(device), params, start_weights,
                 start_embeddings, optimiser, torch.Generator())
    for epoch in bar(range(start, recipe.epochs), desc="fine-tuning", unit="epoch", enabled=progress,
                     initial=start, total=recipe.epochs):
        loop.generator.manual_seed(int(np.random.SeedSequence([recipe.seed, epoch]).generate_state(1)[0]))
        losses.append(_epoch(loop, recipe, batches(labels, recipe.batch_identities, recipe.batch_images, rng)))
        _save({"model": tuned.state_dict(), "optimiser": loop.optimiser.state_dict(), "epoch": epoch + 1,
               "losses": losses}, last)
    tuned.requires_grad_(False)
    return Finetuned(tuned.eval(), losses, time.perf_counter() - t0, start, sum(p.numel() for p in params))
