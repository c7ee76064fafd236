"""Similarity alignment of a face to a recognizer's 5-point template."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

LandmarkScheme = Literal["dlib5", "arcface5"]


@dataclass(frozen=True)
class Template:
    """Where a recognizer expects the face: crop size and how its five points are placed.

    `dlib_padding` set: crops are made exactly as `dlib.get_face_chip(img, shape, size, padding)`
    from dlib's 5-point landmarks (eye corners, nose base). Otherwise `points` (5 x 2, crop pixels)
    are fitted by a least-squares similarity transform to the `landmarks` scheme's points.
    """

    name: str
    size: int
    landmarks: LandmarkScheme
    points: tuple[tuple[float, float], ...] | None = None
    dlib_padding: float | None = None


ARCFACE_POINTS = ((38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366), (41.5493, 92.3655), (70.7299, 92.2041))
"""ArcFace's five points in its 112 x 112 crop."""


def dlib_chip(size: int, padding: float = 0.25) -> Template:
    """`dlib.get_face_chip(img, shape, size, padding)`; padding widens the crop around the face."""
    name = f"dlib-chip-{size}" if padding == 0.25 else f"dlib-chip-{size}-pad{padding:g}"
    return Template(name, size, "dlib5", dlib_padding=padding)


def arcface(size: int, zoom: float = 1.0) -> Template:
    """ArcFace's five-point layout scaled to a `size` x `size` crop; `zoom` < 1 leaves more margin."""
    k, c = size / 112, size / 2
    points = tuple((c + (x * k - c) * zoom, c + (y * k - c) * zoom) if zoom != 1 else (x * k, y * k)
                   for x, y in ARCFACE_POINTS)
    return Template(f"arcface-{size}" if zoom == 1 else f"arcface-{size}-zoom{zoom:g}", size, "arcface5", points=points)


DLIB_150 = dlib_chip(150)
ARCFACE_112 = arcface(112)
HSE_CANDIDATES = (dlib_chip(224, 0.25), dlib_chip(224, 0.4), dlib_chip(224, 0.5), dlib_chip(224, 0.6),
                  dlib_chip(224, 0.8), arcface(224), arcface(224, 0.85), arcface(224, 1.15))
"""Crops tried for hse-faceres (docs/recognizers.md has the measured table)."""
TEMPLATES = {t.name: t for t in (DLIB_150, ARCFACE_112, *HSE_CANDIDATES)}


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2 x 3 matrix of the least-squares similarity (rotation, uniform scale, shift) src -> dst."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rot = u @ sign @ vt
    scale = np.trace(np.diag(sig) @ sign) / s.var(0).sum()
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def warp_to_template(image: np.ndarray, landmarks5: np.ndarray, template: Template) -> np.ndarray:
    """Crop an RGB uint8 image so that its five landmarks land on the template's points."""
    if template.points is None:
        raise ValueError(f"template {template.name} is a dlib chip template; use faces.FaceAnalyzer.align")
    m = similarity_transform(landmarks5, np.array(template.points))
    return cv2.warpAffine(image, m, (template.size, template.size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
