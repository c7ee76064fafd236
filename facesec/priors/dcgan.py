"""A pretrained face generator as an image prior: faces found by searching its latent space for one whose
embedding matches a template (GAN morphs interpolate two such latents; template inversion keeps one).

The generator is gan-face-generate's DCGAN (100-d latent, 64 x 64 RGB, trained on the synthetic
DigiFace-1M faces, whose licence is non-commercial). Its checkpoint is fetched with `facesec models fetch
gan-face-generate` and loaded with `weights_only=True` into the module below; the package itself is
never imported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facesec.attacks.reframe import photo_crop_grid
from facesec.data.align import Template
from facesec.data.faces import FaceAnalyzer, NoFace
from facesec.errors import WeightsError
from facesec.recognizers import packaged
from facesec.recognizers.base import Recognizer
from facesec.recognizers.builtin import unloadable

LATENT = 100
PHOTO = 256
"""Generated faces are upsampled to this size before detection and splicing (dlib's detector needs the room)."""
FRAMING_SAMPLES = 32
Z_WEIGHT = 1e-3
"""Pull of the latent towards the prior's shell (|z|^2 about LATENT), so inversion stays on faces."""
REFINE_LR = 0.02
"""Adam's learning rate on the generator's first feature maps (`refine`)."""


class Generator(nn.Module):
    """DCGAN generator: 100-d latent -> 64 x 64 RGB in [-1, 1] (parameter names as in the checkpoint)."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        sizes = [LATENT, width * 8, width * 4, width * 2, width]
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(sizes, sizes[1:], strict=False)):
            layers += [nn.ConvTranspose2d(cin, cout, 4, 1 if i == 0 else 2, 0 if i == 0 else 1, bias=False),
                       nn.BatchNorm2d(cout), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(width, 3, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Faces in [0, 1], B x 3 x 64 x 64, from latents B x LATENT."""
        return self.render(self.features(z))

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """The first block's feature maps (B x 512 x 4 x 4): where `refine` lets a face leave the latent's span."""
        return self.main[:3](z.view(len(z), LATENT, 1, 1))

    def render(self, h: torch.Tensor) -> torch.Tensor:
        """Faces in [0, 1] from first-block feature maps (`features`)."""
        return (self.main[3:](h) + 1) / 2


def load_generator(device: torch.device) -> Generator:
    """The fetched generator (hashes checked), in eval mode, without gradients on its weights."""
    path = packaged.installed("gan-face-generate") / "weights.tar"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        generator = Generator()
        generator.load_state_dict(state["netG_state_dict"], strict=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise WeightsError(f"{path}: not gan-face-generate's generator checkpoint ({unloadable(exc)})") from exc
    generator.eval().requires_grad_(False)
    return generator.to(device)


def photos(faces: torch.Tensor) -> list[np.ndarray]:
    """Generated faces as uint8 RGB photos of PHOTO x PHOTO pixels."""
    arr = (faces.detach().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
    return [cv2.resize(a, (PHOTO, PHOTO), interpolation=cv2.INTER_CUBIC) for a in arr]


def framing(generator: Generator, template: Template, analyzer: FaceAnalyzer, seed: int) -> np.ndarray:
    """Where the generator puts a face: the mean crop transform (photo -> `template`'s crop) of the faces
    detected in FRAMING_SAMPLES seeded samples; the generator's faces are all framed alike."""
    z = torch.randn(FRAMING_SAMPLES, LATENT, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        samples = photos(generator(z.to(next(generator.parameters()).device)))
    transforms = []
    for image in samples:
        try:
            transforms.append(analyzer.crop_transform(analyzer.find_face(image, template), template))
        except NoFace:
            continue
    if not transforms:
        raise WeightsError("the face generator's samples hold no detectable face; is it the right checkpoint?")
    return np.mean(transforms, axis=0)


@dataclass
class Target:
    """One recognizer's view of the generated faces and what the latents are pulled towards."""

    model: Recognizer
    grid: torch.Tensor
    """1 x S x S x 2 (the generator's framing) or one per latent, from `photo_crop_grid`."""
    score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    """(embeddings, goal index per row) -> how well each row meets its goal (higher is better)."""


def matching(model: Recognizer, templates: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The score of being close to one template per goal (rows of `templates`)."""

    def score(emb: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        return model.similarity(emb, templates[goal])

    return score


def invert(generator: Generator, targets: list[Target], n: int, steps: int, seed: int,
           lr: float = 0.05) -> torch.Tensor:
    """`n` latents whose faces best meet their goals on the targets, from seeded random starts."""
    z = torch.randn(n, LATENT, generator=torch.Generator().manual_seed(seed))
    return search(generator, targets, z, torch.arange(n), steps, lr)


def search(generator: Generator, targets: list[Target], z: torch.Tensor, goal: torch.Tensor, steps: int,
           lr: float = 0.05, jitter: float = 0.0, rng: torch.Generator | None = None) -> torch.Tensor:
    """`z` (latent i serving goal `goal[i]`) moved by Adam on the summed scores of its faces on the targets,
    held near the prior's
    shell. With `jitter`, every step sees each face shifted and scaled at random by up to that share of the
    crop (an expectation over transformations, so that the match survives another alignment)."""
    device = next(generator.parameters()).device
    rng = rng if rng is not None else torch.Generator().manual_seed(0)
    z = z.clone().to(device).requires_grad_(True)
    goal = goal.to(device)
    optimiser = torch.optim.Adam([z], lr=lr)
    for _ in range(steps):
        loss = Z_WEIGHT * ((z * z).sum(1) - LATENT).abs().sum() - match(generator, z, goal, targets, jitter,
                                                                         rng).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return z.detach()


def refine(generator: Generator, targets: list[Target], z: torch.Tensor, goal: torch.Tensor, steps: int,
           radius: float, jitter: float, rng: torch.Generator) -> torch.Tensor:
    """Faces (B x 3 x 64 x 64, [0, 1]) of the latents `z` refined by Adam on their first feature maps for `steps`
    steps on the summed scores, each map kept within `radius` of its own norm from where the latent put it
    (intermediate-layer optimisation, Daras et al. 2021): the face may leave the latent's 100-d span, never the
    generator's later layers."""
    device = next(generator.parameters()).device
    goal = goal.to(device)
    with torch.no_grad():
        start = generator.features(z.to(device))
        limit = radius * start.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    delta = torch.zeros_like(start, requires_grad=True)
    optimiser = torch.optim.Adam([delta], lr=REFINE_LR)
    for _ in range(steps):
        loss = -match(lambda _: generator.render(torch.relu(start + delta)), delta, goal, targets, jitter, rng).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            delta.mul_((limit / delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1).clamp_min(1e-12)).clamp(max=1.0))
    with torch.no_grad():
        return generator.render(torch.relu(start + delta))


def match(generator: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, goal: torch.Tensor,
          targets: list[Target], jitter: float, rng: torch.Generator) -> torch.Tensor:
    """Per latent, the summed score of its face (`generator(z)`) on every target (a grid per latent, or one for
    all)."""
    face = F.interpolate(generator(z), size=(PHOTO, PHOTO), mode="bilinear", align_corners=False)
    total = torch.zeros(len(z), device=z.device)
    for t in targets:
        grid = t.grid.expand(len(z), -1, -1, -1) if len(t.grid) == 1 else t.grid
        if jitter:
            scale = 1 + (torch.rand(len(z), 1, 1, 1, generator=rng) * 2 - 1) * jitter
            shift = (torch.rand(len(z), 1, 1, 2, generator=rng) * 2 - 1) * 2 * jitter  # grid spans 2 units
            grid = grid * scale.to(z.device) + shift.to(z.device)
        crop = F.grid_sample(face, grid, mode="bilinear", padding_mode="border", align_corners=False)
        total = total + t.score(t.model(crop), goal)
    return total


def target(generator: Generator, model: Recognizer, score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
           analyzer: FaceAnalyzer, seed: int) -> Target:
    """A recognizer's view of the generator's faces (its crop, from the generator's framing)."""
    return Target(model, crop_grid(generator, model.info.template, analyzer, seed), score)


def crop(generator: Generator, z: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """The faces of latents `z` cut to a recognizer's crop by `grid` (from `crop_grid`), differentiably."""
    face = F.interpolate(generator(z), size=(PHOTO, PHOTO), mode="bilinear", align_corners=False)
    return F.grid_sample(face, grid.expand(len(z), -1, -1, -1), mode="bilinear", padding_mode="border",
                         align_corners=False)


def crop_grid(generator: Generator, template: Template, analyzer: FaceAnalyzer, seed: int) -> torch.Tensor:
    """1 x S x S x 2: where `template`'s crop lies in a generated face (PHOTO pixels), from the framing."""
    grid = photo_crop_grid(framing(generator, template, analyzer, seed), PHOTO, PHOTO, template.size)
    return grid[None].to(next(generator.parameters()).device)
