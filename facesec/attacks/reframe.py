"""A surrogate that aligns faces its own way, attacked through the target's crops.

The perturbation lives in the target's aligned crop (its budget is in those pixels). The surrogate
sees the same photo through its own template: its own clean crop plus the perturbation carried
over by the map between the two crops (a similarity, fitted on the 68 landmarks both crops hold).
Resampling is bilinear, so gradients flow back to the target's pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from facesec.attacks.objectives import Objective
from facesec.data.align import similarity_transform


def crop_grid(target_landmarks: np.ndarray, own_landmarks: np.ndarray, target_size: int,
              own_size: int) -> torch.Tensor:
    """N x S x S x 2 `grid_sample` coordinates: where each pixel of the surrogate's crop lies in the target's."""
    ys, xs = np.mgrid[0:own_size, 0:own_size]
    pixels = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)], 1)
    grids = []
    for tgt, own in zip(target_landmarks, own_landmarks, strict=True):
        m = similarity_transform(own, tgt)  # surrogate crop pixels -> target crop pixels
        where = pixels @ m.T
        grids.append(((2 * where + 1) / target_size - 1).reshape(own_size, own_size, 2))
    return torch.from_numpy(np.stack(grids)).float()


def photo_crop_grid(transform: np.ndarray, height: int, width: int, size: int) -> torch.Tensor:
    """S x S x 2 `grid_sample` coordinates: where each pixel of the aligned crop lies in the photo."""
    back = cv2.invertAffineTransform(transform.astype(np.float64))
    ys, xs = np.mgrid[0:size, 0:size]
    where = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)], 1) @ back.T
    grid = np.stack([(2 * where[:, 0] + 1) / width - 1, (2 * where[:, 1] + 1) / height - 1], 1)
    return torch.from_numpy(grid.reshape(size, size, 2)).float()


@dataclass
class Reframed:
    """A surrogate's objective for faces given in the target's crops (see the module docstring)."""

    objective: Objective
    clean: torch.Tensor
    """The target's clean crops of these samples."""
    own: torch.Tensor
    """The surrogate's clean crops of the same samples."""
    grid: torch.Tensor
    """From `crop_grid`."""

    def view(self, x: torch.Tensor, index: torch.Tensor | slice) -> torch.Tensor:
        """What the surrogate sees of images `x` (target crops) of the samples at `index`."""
        moved = F.grid_sample(x - self.clean[index], self.grid[index], mode="bilinear", padding_mode="zeros",
                              align_corners=False)
        return (self.own[index] + moved).clamp(0, 1)

    def score(self, x: torch.Tensor, index: torch.Tensor | slice,
              autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
        return self.objective.score(self.view(x, index), index, autocast_dtype)

    def success(self, margin: torch.Tensor) -> torch.Tensor:
        return self.objective.success(margin)

    def subset(self, index: torch.Tensor) -> Reframed:
        return Reframed(self.objective.subset(index), self.clean[index], self.own[index], self.grid[index])
