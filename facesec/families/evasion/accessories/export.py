"""Print files of an optimised accessory: transparent PNGs at template scale and at life size.

Life size assumes 63 mm between the pupils (an adult average) and prints at 300 dpi; pixels are
enlarged by nearest neighbour so a colour grid's cells stay sharp.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

PRINT_DPI = 300
PUPIL_DISTANCE_MM = 63.0


def eye_distance(landmarks: np.ndarray) -> float:
    """Pixels between the eye centres of 68 landmarks."""
    return float(np.linalg.norm(landmarks[42:48].mean(0) - landmarks[36:42].mean(0)))


def rgba(pattern: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """H x W x 4 uint8: the pattern's colours inside the mask, transparent outside."""
    rgb = (pattern.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    alpha = mask.cpu().numpy().astype(np.uint8) * 255
    return np.dstack([rgb, alpha])


def write(pattern: torch.Tensor, mask: torch.Tensor, eye_distance_px: float, folder: Path, stem: str
          ) -> dict[str, str]:
    """Write `stem`.png (template scale), `stem`-print.png (life size) and `stem`-mask.png; their names."""
    folder.mkdir(parents=True, exist_ok=True)
    image = rgba(pattern, mask)
    ys, xs = np.nonzero(image[..., 3])
    if len(ys):
        image = image[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
    scale = PRINT_DPI / 25.4 * PUPIL_DISTANCE_MM / max(eye_distance_px, 1.0)
    h, w = image.shape[:2]
    big = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_NEAREST)
    names = {"png": f"{stem}.png", "print_png": f"{stem}-print.png", "mask_png": f"{stem}-mask.png"}
    Image.fromarray(image, "RGBA").save(folder / names["png"])
    Image.fromarray(big, "RGBA").save(folder / names["print_png"], dpi=(PRINT_DPI, PRINT_DPI))
    Image.fromarray(big[..., 3], "L").save(folder / names["mask_png"], dpi=(PRINT_DPI, PRINT_DPI))
    return names
