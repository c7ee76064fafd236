"""Searching a face generator's latent space for faces that meet per-goal scores on the attacker's recognizers,
and handling the results as photos: every face is detected and aligned as an enrolment photo would be."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable

import cv2
import numpy as np
import torch

from facesec.attacks.reframe import photo_crop_grid
from facesec.data.faces import FaceAnalyzer, NoFace
from facesec.priors import dcgan
from facesec.progress import bar
from facesec.recognizers.base import Recognizer
from facesec.recognizers.dlib_resnet import eroded

ROUNDS = 3
"""The search runs in this many rounds; after each, every face is detected again and the next round
optimises it through the crop its detected landmarks give (as a judge will align it)."""

CHUNK = 256
"""Latents optimised together, so memory stays bounded however many goals; each latent's objective is its own
(Adam is per element), so chunking changes only which random jitter each latent draws."""

START_SPREAD = 0.25
"""Searches from given latents: how far (per restart) the starts are scattered around them."""

Score = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(embeddings, goal index per row) -> how well each row meets its goal."""


def gan_search(generator: dcgan.Generator, attackers: list[tuple[Recognizer, Score]], n: int, restarts: int,
               steps: int, lr: float, jitter: float, seed: int, analyzer: FaceAnalyzer,
               pick: Callable[[list[np.ndarray], torch.Tensor], torch.Tensor], progress: bool,
               start: torch.Tensor | None = None, erosion: float = 0.0, refine_steps: int = 0,
               refine_radius: float = 0.0) -> list[np.ndarray]:
    """Per goal (n of them), the photo of the best of `restarts` latents searched on the attackers' scores in
    ROUNDS rounds that re-detect each face, CHUNK latents at a time; `pick` scores all restarts' photos for
    their goals as the attacker's own pipeline sees them (-inf where no face is found); the highest is kept.
    The latents start random, or from `start` (n x LATENT, e.g. a decoder's): restart r adds noise of scale
    START_SPREAD * r. With `erosion`, the first attacker (the target, a dlib-resnet) is a random ghost of itself
    at every step (`dlib_resnet.eroded`); picking, re-detection and judging see it as it is. With `refine_steps`,
    each face is then refined on the generator's first feature maps through its last detected crop
    (`dcgan.refine`, within `refine_radius`) before the pick."""
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn(n * restarts, dcgan.LATENT, generator=rng)
    if start is not None:
        spread = START_SPREAD * torch.arange(restarts, dtype=z.dtype).repeat_interleave(n)[:, None]
        z = start.cpu().repeat(restarts, 1) + spread * z
    goal = torch.arange(n).repeat(restarts)
    framed = [dcgan.target(generator, model, score, analyzer, seed) for model, score in attackers]
    grids: list[torch.Tensor | None] = [None] * len(framed)
    photos: list[np.ndarray] = []
    for r in bar(range(ROUNDS), desc="inversion rounds", unit="round", enabled=progress):
        for first in range(0, len(z), CHUNK):
            part = slice(first, first + CHUNK)
            targets = [t if g is None else dataclasses.replace(t, grid=g[part]) for t, g in zip(framed, grids,
                                                                                                strict=True)]
            with eroded(attackers[0][0].net, erosion, rng) if erosion else contextlib.nullcontext():
                z[part] = dcgan.search(generator, targets, z[part], goal[part],
                                       steps // ROUNDS + (1 if r < steps % ROUNDS else 0), lr, jitter, rng).cpu()
        photos = _photos(generator, z)
        grids = [_grids(photos, t, analyzer) for t in framed]
    if refine_steps:
        photos = []
        for first in range(0, len(z), CHUNK):
            part = slice(first, first + CHUNK)
            targets = [dataclasses.replace(t, grid=g[part]) for t, g in zip(framed, grids, strict=True)
                       if g is not None]
            photos += dcgan.photos(dcgan.refine(generator, targets, z[part], goal[part], refine_steps, refine_radius,
                                                jitter, rng))
    best = pick(photos, goal).cpu().view(restarts, n).argmax(0)
    return [photos[int(best[i]) * n + i] for i in range(n)]


def _photos(generator: dcgan.Generator, z: torch.Tensor) -> list[np.ndarray]:
    device = next(generator.parameters()).device
    with torch.no_grad():
        return [photo for start in range(0, len(z), CHUNK)
                for photo in dcgan.photos(generator(z[start:start + CHUNK].to(device)))]


def _grids(photos: list[np.ndarray], t: dcgan.Target, analyzer: FaceAnalyzer) -> torch.Tensor:
    """Per photo, the crop grid of the face detected in it (the generator's framing where none is found)."""
    template = t.model.info.template
    grids = []
    for photo in photos:
        try:
            transform = analyzer.crop_transform(analyzer.find_face(photo, template), template)
        except NoFace:
            grids.append(t.grid[0])
            continue
        grids.append(photo_crop_grid(transform, dcgan.PHOTO, dcgan.PHOTO, template.size).to(t.grid.device))
    return torch.stack(grids)


def to_photos(images: torch.Tensor) -> list[np.ndarray]:
    """Crops or generated faces ([0, 1], B x 3 x H x W) as uint8 RGB photos of the generator's photo size."""
    arr = (images.detach().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
    return [cv2.resize(a, (dcgan.PHOTO, dcgan.PHOTO), interpolation=cv2.INTER_CUBIC) for a in arr]


def embed_photos(model: Recognizer, photos: list[np.ndarray], analyzer: FaceAnalyzer,
                  device: torch.device) -> tuple[torch.Tensor, np.ndarray]:
    """Each photo detected and aligned to the model's template as an enrolment photo would be, and embedded;
    rows of photos without a single detectable face are zeros and flagged False."""
    crops, found = aligned(model, photos, analyzer)
    size = model.info.template.size
    batch = torch.stack([c if c is not None else torch.zeros(3, size, size) for c in crops])
    return model.embed(batch.to(device)), found


def aligned(model: Recognizer, photos: list[np.ndarray],
             analyzer: FaceAnalyzer) -> tuple[list[torch.Tensor | None], np.ndarray]:
    """The photos as the model's aligned crops (None where no single face was found)."""
    t = model.info.template
    out: list[torch.Tensor | None] = []
    for photo in photos:
        try:
            crop = analyzer.align(photo, analyzer.find_face(photo, t), t)
        except NoFace:
            out.append(None)
            continue
        out.append(torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float() / 255.0)
    return out, np.array([c is not None for c in out])
