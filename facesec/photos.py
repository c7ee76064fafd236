"""Attacks pasted back into their original photos, then found and aligned again by the detector.

A deployed system is handed photos, not facesec's aligned crops: an attack counts there only if it
survives being resampled into the photo, stored at 8 bits, and re-detected, re-landmarked and
re-aligned by the system's own pipeline (dlib's detector, landmarks and chips for dlib's model).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from facesec.data.align import Template
from facesec.data.faces import FaceAnalyzer, NoFace
from facesec.data.images import read_rgb


@dataclass
class RoundTrip:
    """The crops the pipeline makes from the attacked photos; `found` is False where it lost the face."""

    crops: torch.Tensor
    """N x 3 x size x size float in [0, 1]; the unattacked crop where the face was lost."""
    found: np.ndarray


def paste(image: np.ndarray, delta: np.ndarray, crop_transform: np.ndarray) -> np.ndarray:
    """The photo (RGB uint8) plus a crop-space change (size x size x 3, [0, 1] units), rounded to 8 bits."""
    h, w = image.shape[:2]
    back = cv2.warpAffine(delta.astype(np.float32), crop_transform, (w, h),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return np.clip(np.round(image.astype(np.float32) + 255.0 * back), 0, 255).astype(np.uint8)


def round_trip(paths: Sequence[Path], x: torch.Tensor, x_adv: torch.Tensor, template: Template,
               analyzer: FaceAnalyzer | None = None) -> RoundTrip:
    """Paste each `x_adv - x` into its photo and crop the face again the way the clean crop was made."""
    analyzer = analyzer or FaceAnalyzer()
    delta = (x_adv - x).detach().permute(0, 2, 3, 1).cpu().numpy()
    crops = x.detach().cpu().clone()
    found = np.zeros(len(paths), dtype=bool)
    for i, path in enumerate(paths):
        image, _ = read_rgb(Path(path))
        face = analyzer.find_face(image, template)  # found before: that is how the clean crop was made
        attacked = paste(image, delta[i], analyzer.crop_transform(face, template))
        try:
            again = analyzer.find_face(attacked, template)
        except NoFace:
            continue
        found[i] = True
        crop = analyzer.align(attacked, again, template)
        crops[i] = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float() / 255.0
    return RoundTrip(crops, found)
