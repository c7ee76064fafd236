"""Face detection and landmarks with dlib's models from `face_recognition_models`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import dlib
import numpy as np

from facesec.data.align import Template, similarity_transform, warp_to_template
from facesec.dlib_models import models_dir

Detector = Literal["hog", "mmod"]


@dataclass
class Face:
    """One detected face: its box (left, top, right, bottom) and landmarks in image pixels."""

    box: tuple[int, int, int, int]
    landmarks: np.ndarray
    """5 x 2 for the dlib5 scheme (dlib's own points), 68 x 2 for arcface5 (dlib's 68 points)."""
    landmarks68: np.ndarray
    """dlib's 68 points, for accessory regions whatever the template."""


@dataclass
class Detection:
    """What detection finds in an image, before any template: the box and dlib's 5 and 68 points."""

    box: tuple[int, int, int, int]
    landmarks5: np.ndarray
    landmarks68: np.ndarray

    def face(self, template: Template) -> Face:
        """The face with the landmarks `template` aligns by."""
        return Face(self.box, self.landmarks5 if template.landmarks == "dlib5" else self.landmarks68,
                    self.landmarks68)


class NoFace(Exception):
    """Zero or several faces: the image is skipped with this reason."""


MAX_UPSAMPLED_PIXELS = 4_000_000
"""The detector looks at an upsampled copy of a photo only while the copy stays within this many pixels: on a
36-megapixel photo with no face, one upsampling took 16 s and 1.8 GB here (at its own scale: 3 s, 0.4 GB)."""


class FaceAnalyzer:
    """Detects exactly one face, finds its landmarks and aligns it to a template."""

    def __init__(self, detector: Detector = "hog", max_upsample: int = 1) -> None:
        self.detector_name = detector
        self.max_upsample = max_upsample
        self._detector: object | None = None
        self._predictors: dict[int, object] = {}

    @property
    def key(self) -> str:
        """Identifies the detector settings in cache keys."""
        return f"{self.detector_name}-up{self.max_upsample}-within{MAX_UPSAMPLED_PIXELS}"

    def _detect(self, image: np.ndarray) -> list[dlib.rectangle]:
        """Faces at the image's own scale, then upsampled (slower) only when none was found and the upsampled
        copy stays within MAX_UPSAMPLED_PIXELS."""
        if self._detector is None:
            if self.detector_name == "mmod":
                self._detector = dlib.cnn_face_detection_model_v1(str(models_dir() / "mmod_human_face_detector.dat"))
            else:
                self._detector = dlib.get_frontal_face_detector()
        found: list[dlib.rectangle] = []
        for upsample in range(self.max_upsample + 1):
            if upsample and image.shape[0] * image.shape[1] * 4 ** upsample > MAX_UPSAMPLED_PIXELS:
                break
            found = [d.rect if hasattr(d, "rect") else d for d in self._detector(image, upsample)]  # type: ignore[operator]
            if found:
                break
        return found

    def _predictor(self, n_points: int) -> object:
        if n_points not in self._predictors:
            path = models_dir() / f"shape_predictor_{n_points}_face_landmarks.dat"
            self._predictors[n_points] = dlib.shape_predictor(str(path))
        return self._predictors[n_points]

    def detect(self, image: np.ndarray) -> Detection:
        """The single face in an RGB uint8 image with both of dlib's landmark sets (any template can use it)."""
        rects = self._detect(image)
        if len(rects) != 1:
            raise NoFace("no face detected" if not rects else f"{len(rects)} faces detected")
        rect = rects[0]

        def points(n: int) -> np.ndarray:
            shape = self._predictor(n)(image, rect)  # type: ignore[operator]
            return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)

        return Detection((rect.left(), rect.top(), rect.right(), rect.bottom()), points(5), points(68))

    def find_face(self, image: np.ndarray, template: Template) -> Face:
        """The single face in an RGB uint8 image, with the landmarks the template needs."""
        return self.detect(image).face(template)

    @staticmethod
    def crop_transform(face: Face, template: Template) -> np.ndarray:
        """2 x 3 affine matrix from image pixels to the aligned crop's pixels."""
        if template.dlib_padding is None:
            return similarity_transform(five_points(face.landmarks), np.array(template.points))
        details = dlib.get_face_chip_details(_dlib_shape(face), template.size, template.dlib_padding)
        r, angle = details.rect, details.angle
        centre = np.array([(r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2])
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        corners = np.array([[r.left(), r.top()], [r.right(), r.top()], [r.right(), r.bottom()]])
        src = (corners - centre) @ rot.T + centre  # dlib rotates the chip's rectangle about its centre
        dst = np.array([[0, 0], [details.cols - 1, 0], [details.cols - 1, details.rows - 1]])
        return cv2.getAffineTransform(src.astype(np.float32), dst.astype(np.float32)).astype(np.float64)

    @staticmethod
    def align(image: np.ndarray, face: Face, template: Template) -> np.ndarray:
        """The aligned crop (size x size x 3, uint8) for `template`."""
        if template.dlib_padding is not None:
            shape = _dlib_shape(face)
            return np.asarray(dlib.get_face_chip(image, shape, size=template.size, padding=template.dlib_padding))
        return warp_to_template(image, five_points(face.landmarks), template)


def _dlib_shape(face: Face) -> dlib.full_object_detection:
    return dlib.full_object_detection(dlib.rectangle(*face.box),
                                      [dlib.point(int(x), int(y)) for x, y in face.landmarks])


def map_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2 x 3 affine matrix to N x 2 points."""
    return np.asarray(points, np.float64) @ matrix[:, :2].T + matrix[:, 2]


def five_points(landmarks68: np.ndarray) -> np.ndarray:
    """ArcFace's five points from dlib's 68: eye centres, nose tip, mouth corners."""
    lm = np.asarray(landmarks68)
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])
