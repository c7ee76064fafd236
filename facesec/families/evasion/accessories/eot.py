"""Expectation over transformation: the physical world's variation, applied to a worn accessory.

An accessory is printed, put on and photographed: it lands a little shifted, rotated and scaled,
its colours change with the light, and the camera softens it. Each draw moves the accessory's
pattern and mask together (one affine warp about the crop centre), scales and offsets its
colours, and blurs it; the face itself is never changed outside the moved mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Variation:
    """Half-widths of the uniform ranges each transform is drawn from (0 disables it)."""

    shift: float = 0.02
    """Translation, as a fraction of the crop's side."""
    rotation: float = 4.0
    """Degrees."""
    scale: float = 0.04
    """Relative size change."""
    brightness: float = 0.08
    """Added to every colour channel."""
    contrast: float = 0.1
    """Relative change of the colours' spread around mid-grey."""
    blur: float = 0.8
    """Largest Gaussian sigma, in pixels (drawn uniformly from 0)."""


@dataclass
class Draw:
    """One transform per sample: affine matrices (N x 2 x 3, normalised coordinates) and photometrics."""

    theta: torch.Tensor
    brightness: torch.Tensor
    contrast: torch.Tensor
    sigma: float

    @staticmethod
    def identity(n: int) -> Draw:
        eye = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).expand(n, 2, 3).clone()
        return Draw(eye, torch.zeros(n), torch.ones(n), 0.0)


def sample(n: int, variation: Variation, generator: torch.Generator) -> Draw:
    """`n` random transforms (on CPU, from the run's generator); one blur sigma for the whole draw."""

    def uniform(half: float, size: int = n) -> torch.Tensor:
        return (torch.rand(size, generator=generator) * 2 - 1) * half

    angle = uniform(math.radians(variation.rotation))
    scale = 1 + uniform(variation.scale)
    shift = uniform(2 * variation.shift, 2 * n).view(n, 2)  # normalised coordinates span 2 per side
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    sigma = float(torch.rand(1, generator=generator)) * variation.blur
    return Draw(theta, uniform(variation.brightness), 1 + uniform(variation.contrast), sigma)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma < 0.1:
        return x
    radius = max(1, math.ceil(2.5 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def apply(pattern: torch.Tensor, mask: torch.Tensor, draw: Draw) -> tuple[torch.Tensor, torch.Tensor]:
    """The accessory after `draw`: its pattern (N x 3 x H x W) and boolean mask (N x H x W).

    `pattern` and `mask` may have a batch of 1 (one accessory for everyone); the draw sets N.
    """
    n = len(draw.theta)
    dev = pattern.device
    theta = draw.theta.to(dev, pattern.dtype)
    size = (n, 3, *pattern.shape[-2:])
    grid = F.affine_grid(theta, list(size), align_corners=False)
    moved = F.grid_sample(pattern.expand(n, -1, -1, -1), grid, mode="bilinear", padding_mode="border",
                          align_corners=False)
    m = F.grid_sample(mask.to(pattern.dtype).unsqueeze(1).expand(n, -1, -1, -1), grid, mode="bilinear",
                      padding_mode="zeros", align_corners=False)
    contrast = draw.contrast.to(dev, pattern.dtype).view(-1, 1, 1, 1)
    brightness = draw.brightness.to(dev, pattern.dtype).view(-1, 1, 1, 1)
    moved = ((moved - 0.5) * contrast + 0.5 + brightness).clamp(0, 1)
    return _gaussian_blur(moved, draw.sigma), m.squeeze(1) > 0.5
