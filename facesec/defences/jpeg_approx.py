"""A differentiable stand-in for baseline JPEG, the second form of BPDA (Athalye et al. 2018; the soft rounding
of Shin and Song 2017): the codec's own steps (JFIF YCbCr, 4:2:0 chroma averaging, 8 x 8 DCT, the quality's
scaled quantisation tables) with each rounding replaced by round(z) + (z - round(z))^3, whose gradient vanishes
only where z is whole: a block flat throughout (a black border) gets none, so an attack without a random start
leaves such blocks as they are. Its value is close to libjpeg's, not equal: the adaptive attacker
differentiates it, the system sees the real codec. It is computed in float32 even under autocast (the DCT's
products lose the gradient's direction in bfloat16), and not clipped, so black pixels beside texture keep theirs."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_LUMA = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
         14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
         49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)
_CHROMA = (17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
           47, 66, 99, 99, 99, 99, 99, 99) + (99,) * 32
"""The example tables of the JPEG standard (ITU-T T.81, Annex K), which libjpeg scales by quality."""

_TO_YCBCR = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_FROM_YCBCR = torch.linalg.inv(_TO_YCBCR)
_OFFSET = torch.tensor([0.0, 128.0, 128.0]).view(1, 3, 1, 1)


def quantisation(quality: int) -> tuple[torch.Tensor, torch.Tensor]:
    """libjpeg's luma and chroma tables at `quality` (its jpeg_quality_scaling, baseline: entries 1-255)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality

    def scaled(table: tuple[int, ...]) -> torch.Tensor:
        return ((torch.tensor(table, dtype=torch.float32) * scale + 50) // 100).clamp(1, 255).view(8, 8)

    return scaled(_LUMA), scaled(_CHROMA)


def _dct_matrix() -> torch.Tensor:
    k, n = torch.arange(8.0).view(8, 1), torch.arange(8.0).view(1, 8)
    d = torch.cos((2 * n + 1) * k * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d


_DCT = _dct_matrix()


def soft_round(z: torch.Tensor) -> torch.Tensor:
    """round(z) in value up to a cubic remainder, with gradient 3 (z - round z)^2 instead of zero almost everywhere."""
    return torch.round(z) + (z - torch.round(z)) ** 3


def _code(plane: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """One level-shifted plane (N x 1 x H x W, H and W multiples of 8) through DCT, soft quantisation, IDCT."""
    n, _, h, w = plane.shape
    blocks = plane.view(n, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)
    d = _DCT.to(plane)
    q = table.to(plane)
    coeff = d @ blocks @ d.T
    blocks = d.T @ (soft_round(coeff / q) * q) @ d
    return blocks.permute(0, 1, 3, 2, 4).reshape(n, 1, h, w)


def approximate_jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Images in [0, 1] (N x 3 x H x W) through the differentiable codec at `quality`, edges padded as libjpeg
    pads its 16 x 16 units (the last row and column repeated); float32, in x's dtype."""
    with torch.autocast(x.device.type, enabled=False):
        return _approximate(x.float(), quality).to(x.dtype)


def _approximate(x: torch.Tensor, quality: int) -> torch.Tensor:
    _, _, h, w = x.shape
    pad_h, pad_w = -h % 16, -w % 16
    rgb = F.pad(x * 255, (0, pad_w, 0, pad_h), mode="replicate")
    ycc = torch.einsum("ij,njhw->nihw", _TO_YCBCR.to(x), rgb) + _OFFSET.to(x)
    luma, chroma = quantisation(quality)
    planes = [_code(ycc[:, :1] - 128, luma) + 128]
    for c in (1, 2):
        small = F.avg_pool2d(ycc[:, c:c + 1], 2)
        coded = _code(small - 128, chroma) + 128
        planes.append(F.interpolate(coded, scale_factor=2, mode="bilinear", align_corners=False))
    ycc = torch.cat(planes, 1) - _OFFSET.to(x)
    rgb = torch.einsum("ij,njhw->nihw", _FROM_YCBCR.to(x), ycc)
    return rgb[:, :, :h, :w] / 255
