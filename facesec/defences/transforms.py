"""The built-in input defences (registered in `facesec.plugins.DEFENCES`)."""

from __future__ import annotations

import io
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from facesec.defences.base import InputDefence
from facesec.defences.jpeg_approx import approximate_jpeg


def _uint8(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


class Jpeg(InputDefence):
    """JPEG at `quality` (Pillow's libjpeg, its default 4:2:0 chroma subsampling), on the CPU, as a deployed
    pipeline would compress an upload. `bpda`: what the adaptive attacker differentiates in its place, the
    differentiable codec of `jpeg_approx` (the default) or the identity."""

    differentiable: ClassVar[bool] = False

    def __init__(self, generator: torch.Generator, quality: int = 75, bpda: str | None = None) -> None:
        super().__init__(generator)
        if bpda not in (None, "differentiable", "identity"):
            raise ValueError(f"bpda is differentiable or identity, not {bpda!r}")
        self.quality = quality
        self.stand_in = "the identity" if bpda == "identity" else "a differentiable JPEG"

    def approximation(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.stand_in == "the identity" else approximate_jpeg(x, self.quality)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        images = _uint8(x.detach()).permute(0, 2, 3, 1).cpu().numpy()
        out = np.empty_like(images)
        for i, image in enumerate(images):
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="JPEG", quality=self.quality)
            out[i] = np.asarray(Image.open(buffer).convert("RGB"))
        return torch.from_numpy(out).permute(0, 3, 1, 2).to(x.device, torch.float32).div_(255.0)


class BitDepth(InputDefence):
    """Each colour channel rounded to `bits` bits."""

    differentiable: ClassVar[bool] = False

    def __init__(self, generator: torch.Generator, bits: int = 4) -> None:
        super().__init__(generator)
        self.levels = 2 ** bits - 1

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x.clamp(0, 1) * self.levels) / self.levels


class Median(InputDefence):
    """The median of each pixel's `size` x `size` window per channel, edges mirrored (as scipy's median_filter
    in mode='mirror'); its gradient reaches the pixel each median picks."""


    def __init__(self, generator: torch.Generator, size: int = 3) -> None:
        super().__init__(generator)
        self.size = size

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        if not len(x):
            return x.clone()
        half = self.size // 2
        padded = F.pad(x, (half, half, half, half), mode="reflect")
        windows = padded.unfold(2, self.size, 1).unfold(3, self.size, 1)
        return windows.reshape(*x.shape, -1).median(dim=-1).values


class ResizePad(InputDefence):
    """R&P: each image shrunk by a random factor in [min_scale, 1] and placed at a random position on a black
    canvas of its own size (one bilinear warp per batch)."""

    randomised: ClassVar[bool] = True

    def __init__(self, generator: torch.Generator, min_scale: float = 0.85) -> None:
        super().__init__(generator)
        self.min_scale = min_scale

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        n = len(x)
        if not n:
            return x.clone()
        scale = self.min_scale + (1 - self.min_scale) * torch.rand(n, generator=self.generator)
        shift = (1 - scale)[:, None] * (2 * torch.rand(n, 2, generator=self.generator) - 1)  # canvas: [-1, 1]
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
        theta[:, :, 2] = -shift / scale[:, None]
        grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class GaussianNoise(InputDefence):
    """Gaussian noise of standard deviation `sigma`, drawn anew for every image, clipped to [0, 1]."""

    randomised: ClassVar[bool] = True

    def __init__(self, generator: torch.Generator, sigma: float = 0.03) -> None:
        super().__init__(generator)
        self.sigma = sigma

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(tuple(x.shape), generator=self.generator).to(x)
        return (x + self.sigma * noise).clamp(0, 1)
