"""What keeps an optimised accessory printable: smooth (total variation) and in the printer's gamut.

The non-printability score here is each accessory pixel's distance to its nearest printable
colour, averaged over the accessory. Sharif et al. (2016) multiply the distances to every palette
colour instead; that product vanishes as a palette grows, the nearest distance does not.
"""

from __future__ import annotations

import itertools

import torch

from facesec.families.evasion.accessories.palette import read_palette

_LEVELS = (0.12, 0.45, 0.78)


def default_palette() -> torch.Tensor:
    """27 colours (three levels per channel, kept away from the extremes a printer cannot reach).

    A stand-in for a measured palette: print a colour chart, photograph it under the camera's
    light, and pass the colours you read back as `palette: my-printer.csv`.
    """
    return torch.tensor(list(itertools.product(_LEVELS, repeat=3)), dtype=torch.float32)


def load_palette(spec: str) -> torch.Tensor:
    """`default`, or the colours of a palette file (facesec.families.evasion.accessories.palette), in [0, 1]."""
    if spec == "default":
        return default_palette()
    return torch.tensor(read_palette(spec), dtype=torch.float32)


def non_printability(pattern: torch.Tensor, mask: torch.Tensor, palette: torch.Tensor) -> torch.Tensor:
    """Per sample: mean over the mask of the distance to the nearest palette colour."""
    n = pattern.shape[0]
    colours = pattern.permute(0, 2, 3, 1).reshape(n, -1, 3)
    nearest = torch.cdist(colours, palette.to(pattern).unsqueeze(0).expand(n, -1, -1)).amin(-1)
    weight = mask.expand(n, -1, -1).reshape(n, -1).to(pattern.dtype)
    return (nearest * weight).sum(1) / weight.sum(1).clamp_min(1)


def total_variation(pattern: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per sample: mean absolute colour difference between neighbours that both lie in the mask."""
    m = mask.expand(pattern.shape[0], -1, -1).to(pattern.dtype).unsqueeze(1)
    dx = (pattern[..., :, 1:] - pattern[..., :, :-1]).abs() * m[..., :, 1:] * m[..., :, :-1]
    dy = (pattern[..., 1:, :] - pattern[..., :-1, :]).abs() * m[..., 1:, :] * m[..., :-1, :]
    area = m.flatten(1).sum(1).clamp_min(1)
    return (dx.flatten(1).sum(1) + dy.flatten(1).sum(1)) / (3 * area)
