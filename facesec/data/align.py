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


DLIB_150 = Template("dlib-chip-150", 150, "dlib5", dlib_padding=0.25)
ARCFACE_112 = Template("arcface-112", 112, "arcface5", points=(
    (38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366), (41.5493, 92.3655), (70.7299, 92.2041)))
TEMPLATES = {t.name: t for t in (DLIB_150, ARCFACE_112)}


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
