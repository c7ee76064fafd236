"""Template inversion by a learned decoder (NbNet-style, into the generator's latent space): a network trained
on the attacker's own data to map the target's embeddings to faces, which then inverts a leaked template in
one forward pass, with no query to the target.

Training uses only faces the attacker owns: faces drawn from the generator prior (whose latents are known) and
public photos of other people. First the decoder regresses each generated face's latent from its embedding
(cheap); then it is trained through the generator and the target so that the decoded face's embedding matches
the input embedding (identity loss) while generated faces stay close to the originals (pixel loss). Every
target forward during training is a query, and is counted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from facesec.priors import dcgan
from facesec.progress import bar
from facesec.recognizers.base import Recognizer

HIDDEN = 512
REGRESSION_STEPS = 1500
BATCH = 16
LR = 1e-3
PIXEL_WEIGHT = 1.0


class Decoder(nn.Module):
    """Embedding (centred and scaled by the training embeddings' statistics) -> generator latent."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, dim: int, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.net = nn.Sequential(nn.Linear(dim, HIDDEN), nn.LeakyReLU(0.2), nn.Linear(HIDDEN, HIDDEN),
                                 nn.LeakyReLU(0.2), nn.Linear(HIDDEN, dcgan.LATENT))

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.net((emb - self.mean) / self.std)


@dataclass
class Trained:
    """A decoder and what training it cost."""

    decoder: Decoder
    queries: int
    """Target forwards during training (each identity-loss step costs a forward and a backward per face)."""
    seconds: float
    final_similarity: float
    """Mean similarity (on the target's scale) of decoded faces to their input embeddings, last 20 steps."""


def train(target: Recognizer, generator: dcgan.Generator, grid: torch.Tensor, public: torch.Tensor,
          samples: int, steps: int, seed: int, progress: bool) -> Trained:
    """A decoder for `target` from `samples` generated faces and the public embeddings `public` (the target's
    embeddings of the attacker's public photos): latent regression, then `steps` identity-loss steps."""
    started = time.perf_counter()
    device = next(generator.parameters()).device
    rng = torch.Generator().manual_seed(seed)
    z_all = torch.randn(samples, dcgan.LATENT, generator=rng)
    emb = []
    for start in bar(range(0, samples, 128), desc="decoder: embedding generated faces", unit="batch",
                     enabled=progress):
        with torch.no_grad():
            emb.append(target(dcgan.crop(generator, z_all[start:start + 128].to(device), grid)).float().cpu())
    e_gen, public = torch.cat(emb), public.float().cpu()
    if target.info.comparison == "cosine":  # templates are stored normalised
        e_gen, public = F.normalize(e_gen, dim=-1), F.normalize(public, dim=-1)
    queries = samples
    stats = torch.cat([e_gen, public])
    decoder = Decoder(e_gen.shape[1], stats.mean(0), stats.std(0).clamp_min(1e-6)).to(device)
    optimiser = torch.optim.Adam(decoder.parameters(), lr=LR)
    for _ in bar(range(REGRESSION_STEPS), desc="decoder: latent regression", unit="step", enabled=progress):
        index = torch.randint(0, samples, (128,), generator=rng)
        loss = F.mse_loss(decoder(e_gen[index].to(device)), z_all[index].to(device))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    recent: list[float] = []
    for _ in bar(range(steps), desc="decoder: identity loss", unit="step", enabled=progress):
        n_public = BATCH // 2 if len(public) else 0  # half public photos, when the attacker has any
        gen_index = torch.randint(0, samples, (BATCH - n_public,), generator=rng)
        pub_index = torch.randint(0, max(1, len(public)), (n_public,), generator=rng)
        e = torch.cat([e_gen[gen_index], public[pub_index]]).to(device)
        z = decoder(e)
        crops = dcgan.crop(generator, z, grid)
        sim = target.similarity(target(crops), e)
        pixel = F.mse_loss(crops[:len(gen_index)], dcgan.crop(generator, z_all[gen_index].to(device), grid))
        prior = dcgan.Z_WEIGHT * ((z * z).sum(1) - dcgan.LATENT).abs().mean()
        loss = -sim.mean() + PIXEL_WEIGHT * pixel + prior
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        queries += len(e)
        recent = (recent + [float(sim.detach().mean())])[-20:]
    decoder.eval().requires_grad_(False)
    final = sum(recent) / len(recent) if recent else float("nan")
    return Trained(decoder, queries, time.perf_counter() - started, final)


def decode(decoder: Decoder, templates: torch.Tensor) -> torch.Tensor:
    """The latents a trained decoder gives the templates (no query to the target)."""
    with torch.no_grad():
        return decoder(templates.to(next(decoder.parameters()).device)).cpu()
