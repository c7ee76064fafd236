"""Where an accessory sits on a face, from the face's own 68 landmarks in the aligned crop.

Regions are boolean masks in crop pixels, so they fit any recognizer template and any face.
Wearing an accessory replaces pixels inside its mask and leaves every other pixel untouched.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
import torch

Anchor = Literal["forehead", "left-cheek", "right-cheek", "nose"]


def _canvas(size: int) -> np.ndarray:
    return np.zeros((size, size), np.uint8)


def eyeglasses(landmarks: np.ndarray, size: int, frame_width: float = 0.035) -> np.ndarray:
    """Two elliptical rims around the eyes and the bridge between their inner edges.

    `frame_width` is the rim's thickness as a fraction of the crop; the default covers roughly the
    6-7% of the face that Sharif et al. (2016) printed as frames.
    """
    mask = _canvas(size)
    thickness = max(1, round(frame_width * size))
    ends: list[float] = []
    for eye in (landmarks[36:42], landmarks[42:48]):
        centre = eye.mean(0)
        half_width = 0.95 * np.ptp(eye[:, 0])
        axes = (round(half_width), round(0.7 * half_width))
        cv2.ellipse(mask, (round(centre[0]), round(centre[1])), axes, 0, 0, 360, 1, thickness)
        ends.append(centre[0] + half_width if not ends else centre[0] - half_width)
    if ends[0] < ends[1]:  # the bridge joins the rims' inner edges (nothing to join when they touch)
        y = round(landmarks[36:48, 1].mean())
        cv2.line(mask, (round(ends[0]), y), (round(ends[1]), y), 1, thickness)
    return mask.astype(bool)


def sticker(landmarks: np.ndarray, size: int, anchor: Anchor = "forehead",
            width: float = 0.25, height: float = 0.12) -> np.ndarray:
    """An axis-aligned rectangle (`width` x `height` of the crop) centred on a facial anchor."""
    brows, nose = landmarks[17:27], landmarks[30]
    eye_gap = landmarks[42:48].mean(0)[0] - landmarks[36:42].mean(0)[0]
    centres = {
        "forehead": (brows[:, 0].mean(), brows[:, 1].min() - 0.6 * height * size),
        "left-cheek": (landmarks[36:42, 0].mean() - 0.15 * eye_gap, (nose[1] + landmarks[48, 1]) / 2),
        "right-cheek": (landmarks[42:48, 0].mean() + 0.15 * eye_gap, (nose[1] + landmarks[54, 1]) / 2),
        "nose": (nose[0], landmarks[27:31, 1].mean()),
    }
    cx, cy = centres[anchor]
    w, h = width * size / 2, height * size / 2
    mask = _canvas(size)
    cv2.rectangle(mask, (round(cx - w), round(cy - h)), (round(cx + w), round(cy + h)), 1, -1)
    return mask.astype(bool)


def facemask(landmarks: np.ndarray, size: int) -> np.ndarray:
    """From the nose bridge down to the chin, between the cheeks: the jaw line closed over the nose."""
    outline = np.concatenate([landmarks[2:15], landmarks[[29]]])
    mask = _canvas(size)
    cv2.fillPoly(mask, [np.round(outline).astype(np.int32)], 1)
    return mask.astype(bool)


def grid_cells(mask: np.ndarray, rows: int = 8, cols: int = 16) -> np.ndarray:
    """Cell index (0 .. rows*cols-1) of each pixel over the mask's bounding box, -1 outside the mask.

    A colour grid (FACESEC used 16 columns x 8 rows) makes a mask printable: one colour per cell.
    """
    ys, xs = np.nonzero(mask)
    cells = np.full(mask.shape, -1, np.int64)
    if len(ys) == 0:
        return cells
    top, left = ys.min(), xs.min()
    h, w = ys.max() - top + 1, xs.max() - left + 1
    r = np.minimum((ys - top) * rows // h, rows - 1)
    c = np.minimum((xs - left) * cols // w, cols - 1)
    cells[ys, xs] = r * cols + c
    return cells


def wear(x: torch.Tensor, mask: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
    """Faces wearing the accessory: `pattern` inside `mask` (N or 1 x H x W), `x` bit for bit outside."""
    return torch.where(mask.unsqueeze(1) if mask.dim() == 3 else mask, pattern.to(x.dtype), x)
