"""Model augmentation (LOMMA): small students distilled from the target during the run, on the attacker's own
data only (public faces, and faces drawn from the generator prior), so that a search which pleases the target
and its students together leans on what they share (the person) more than on the target's quirks.

Each student is a small CNN on a 64 x 64 copy of the target's crop, trained to regress the target's
embedding of every training face (the target answers once per face: those are the distillation queries).
Students differ by seed (initialisation, data order) and width.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from facesec.priors import dcgan
from facesec.progress import bar
from facesec.recognizers.base import Recognizer
from facesec.surrogates.distill import learning_rate, loss_fn

SIZE = 64
BATCH = 64
LR = 2e-3
WIDTHS = (32, 48)


class SmallNet(nn.Module):
    """The crop resized (antialiased) to SIZE x SIZE, then four stride-2 stages of two 3 x 3 convolutions
    (64 -> 4 pixels) and a linear embedding."""

    def __init__(self, width: int, embedding_size: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c in (width, width * 2, width * 4, width * 8):
            layers += [nn.Conv2d(c_in, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                       nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.embedding = nn.Linear(c_in * 4 * 4, embedding_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != SIZE:
            x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False, antialias=True)
        return self.embedding(torch.flatten(self.features((x - 0.5) / 0.5), 1))


@dataclass
class Distilled:
    """The students (as recognizers with the target's template and comparison) and what they cost."""

    students: list[Recognizer]
    queries: int
    """Target forwards spent on distillation (one per training face), for all students together."""
    centred_cosine: list[float]
    """Per student, mean centred cosine to the target on the tenth of the faces it never trained on."""
    teacher: torch.Tensor
    """The target's embeddings of the distillation faces (CPU)."""


def training_faces(public: torch.Tensor, generator: dcgan.Generator, grid: torch.Tensor, n_generated: int,
                   seed: int) -> torch.Tensor:
    """The attacker's distillation set in the target's crop ([0, 1] float, on the CPU): the public crops, then
    `n_generated` faces from the prior placed by the generator's framing (`grid`, from `dcgan.crop_grid`)."""
    public = public.cpu()
    faces = [public.float().div(255.0) if public.dtype == torch.uint8 else public.float()]
    rng = torch.Generator().manual_seed(seed)
    device = next(generator.parameters()).device
    for start in range(0, n_generated, 256):
        z = torch.randn(min(256, n_generated - start), dcgan.LATENT, generator=rng).to(device)
        with torch.no_grad():
            faces.append(dcgan.crop(generator, z, grid).cpu())
    return torch.cat(faces)


_LAST: dict[tuple[object, ...], Distilled] = {}
"""The last students distilled in this process, by what made them: runs of one suite that differ only in
what the students are used for (an ablation over the loss) train them once."""


def distil(target: Recognizer, faces: torch.Tensor, count: int, seed: int, progress: bool,
           epochs: int) -> Distilled:
    """`count` students of `target` trained on `faces` (its crops, [0, 1]); a seeded tenth of them is held out
    to measure agreement. The same request again in this process returns the same students."""
    key = (target.info, hashlib.sha256(faces.numpy().tobytes()).hexdigest(), count, seed, epochs, SIZE, BATCH, LR,
           WIDTHS)
    if key not in _LAST:
        _LAST.clear()
        _LAST[key] = _distil(target, faces, count, seed, progress, epochs)
    return _LAST[key]


def _distil(target: Recognizer, faces: torch.Tensor, count: int, seed: int, progress: bool,
            epochs: int) -> Distilled:
    device = next(target.parameters()).device
    teacher = target.embed(faces.to(device)).cpu()
    order = torch.randperm(len(faces), generator=torch.Generator().manual_seed(seed))
    n_held = max(1, len(faces) // 10)
    held, train = order[:n_held], order[n_held:]
    mean = teacher[train].mean(0)
    scale = float(((teacher[train] - mean) ** 2).mean())
    small = F.interpolate(faces, size=(SIZE, SIZE), mode="bilinear", align_corners=False, antialias=True)
    students, cosines = [], []
    for i in range(count):
        torch.manual_seed(seed + 101 * i)
        net = SmallNet(WIDTHS[i % len(WIDTHS)], target.info.embedding_size).to(device)
        optimiser = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=5e-4)
        rng = torch.Generator().manual_seed(seed + 101 * i)
        steps = max(1, len(train) // BATCH)
        for epoch in bar(range(epochs), desc=f"distilling student {i + 1}/{count}", unit="epoch",
                         enabled=progress):
            net.train()
            perm = train[torch.randperm(len(train), generator=rng)]
            for step in range(steps):
                index = perm[step * BATCH:(step + 1) * BATCH]
                x = small[index].to(device)
                flip = torch.rand(len(x), generator=rng) < 0.5  # a mirrored face keeps its identity
                x = torch.where(flip.view(-1, 1, 1, 1).to(device), x.flip(-1), x)
                loss = loss_fn(net(x), teacher[index].to(device), mean.to(device), scale)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                for group in optimiser.param_groups:
                    group["lr"] = learning_rate(LR, epoch * steps + step, epochs * steps)
                optimiser.step()
        net.eval().requires_grad_(False)
        with torch.no_grad():
            out = net(small[held].to(device)).cpu()
        cosines.append(float(F.cosine_similarity(out - mean, teacher[held] - mean, dim=1).mean()))
        info = replace(target.info, name=f"student-{i + 1}-of-{target.info.name}", weights_sha256=None)
        students.append(Recognizer(net, info).eval())
    return Distilled(students, len(faces), cosines, teacher)
