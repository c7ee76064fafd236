"""Landmark-based morphs of two real faces: geometry, splice, seams and what a recognizer sees."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from facesec.data.align import DLIB_150, similarity_transform
from facesec.data.faces import FaceAnalyzer, NoFace, map_points
from facesec.data.images import read_rgb
from facesec.families.morph.landmark import landmark_morph


@dataclass
class Photo:
    """A real photo and dlib's 68 landmarks in it."""

    image: np.ndarray
    landmarks: np.ndarray


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    return FaceAnalyzer()


@pytest.fixture(scope="module")
def pair(analyzer: FaceAnalyzer) -> tuple[Photo, Photo]:
    """The first photo with a detectable face in each of the first two identity folders (sorted)."""
    root = Path(os.environ.get("FACESEC_DATA") or "/work/shared/data") / "celeba-mini"
    if not root.is_dir():
        pytest.skip(f"no celeba-mini at {root} (set FACESEC_DATA)")
    photos: list[Photo] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(folder.glob("*.jpg")):
            image, _ = read_rgb(path)
            try:
                photos.append(Photo(image, analyzer.detect(image).landmarks68))
                break
            except NoFace:
                continue
        if len(photos) == 2:
            return photos[0], photos[1]
    pytest.fail(f"fewer than two identities with a detectable face in {root}")


@pytest.fixture(scope="module")
def half(pair: tuple[Photo, Photo]) -> np.ndarray:
    a, b = pair
    return landmark_morph(a.image, a.landmarks, b.image, b.landmarks, 0.5)


def _aligned_b(pair: tuple[Photo, Photo]) -> np.ndarray:
    """B's landmarks in A's frame (the similarity fit the morph makes)."""
    a, b = pair
    return map_points(b.landmarks, similarity_transform(b.landmarks, a.landmarks))


def test_alpha_zero_gives_back_a(pair: tuple[Photo, Photo]) -> None:
    a, b = pair
    out = landmark_morph(a.image, a.landmarks, b.image, b.landmarks, 0.0)
    assert out.shape == a.image.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - a.image).max() <= 2


def test_morph_is_in_a_frame_and_deterministic(pair: tuple[Photo, Photo], half: np.ndarray) -> None:
    a, b = pair
    assert half.shape == a.image.shape and half.dtype == np.uint8
    assert np.array_equal(half, landmark_morph(a.image, a.landmarks, b.image, b.landmarks, 0.5))
    inside = np.abs(half.astype(int) - a.image)[80:170, 80:170]  # the middle of the face changed
    assert inside.mean() > 5


def test_b_size_rotation_and_scale_do_not_matter(pair: tuple[Photo, Photo], half: np.ndarray) -> None:
    """B is aligned to A by a similarity: B rotated, enlarged and shifted on another canvas morphs the same."""
    a, b = pair
    m = cv2.getRotationMatrix2D((125.0, 125.0), 12.0, 1.2)
    m[:, 2] += np.array([30.0, 10.0])
    moved = cv2.warpAffine(b.image, m, (320, 290), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    out = landmark_morph(a.image, a.landmarks, moved, map_points(b.landmarks, m), 0.5)
    assert out.shape == a.image.shape
    assert np.abs(out.astype(int) - half).mean() < 0.5


def test_photo_border_stays_a(pair: tuple[Photo, Photo]) -> None:
    """The anchors (corners, edge midpoints) are fixed in both shapes: A's border is not moved or blended."""
    a, b = pair
    h, w = a.image.shape[:2]
    anchors = ([0, 0], [0, w // 2], [0, w - 1], [h // 2, w - 1], [h - 1, w - 1], [h - 1, w // 2], [h - 1, 0],
               [h // 2, 0])
    border = np.ones((h, w), bool)
    border[10:-10, 10:-10] = False
    for alpha in (0.5, 1.0):
        diff = np.abs(landmark_morph(a.image, a.landmarks, b.image, b.landmarks, alpha).astype(int) - a.image)
        assert max(diff[y, x].max() for y, x in anchors) <= 2
        assert np.median(diff[border]) <= 1 and diff[border].mean() < 4


def test_morph_has_one_face_on_the_mean_shape(pair: tuple[Photo, Photo], half: np.ndarray,
                                              analyzer: FaceAnalyzer) -> None:
    a, _ = pair
    found = analyzer.detect(half).landmarks68  # raises NoFace unless exactly one face
    mean_shape = (a.landmarks + _aligned_b(pair)) / 2

    def error(shape: np.ndarray) -> float:
        return float(np.linalg.norm(found - shape, axis=1).mean())

    assert error(mean_shape) < 4
    assert error(mean_shape) < min(error(a.landmarks), error(_aligned_b(pair)))


def test_full_morph_has_b_geometry(pair: tuple[Photo, Photo], analyzer: FaceAnalyzer) -> None:
    a, b = pair
    found = analyzer.detect(landmark_morph(a.image, a.landmarks, b.image, b.landmarks, 1.0)).landmarks68
    inner = slice(17, 68)  # brows, eyes, nose, mouth: the jaw line is blended into A's outline
    to_b = np.linalg.norm(found[inner] - _aligned_b(pair)[inner], axis=1).mean()
    to_a = np.linalg.norm(found[inner] - a.landmarks[inner], axis=1).mean()
    assert to_b < 4 and to_b < to_a


def test_recognizer_sees_both_identities_in_the_morph(pair: tuple[Photo, Photo], half: np.ndarray,
                                                      analyzer: FaceAnalyzer) -> None:
    from facesec.recognizers.base import load

    model = load("dlib-resnet", torch.device("cpu"))

    def embed(image: np.ndarray) -> torch.Tensor:
        crop = analyzer.align(image, analyzer.find_face(image, DLIB_150), DLIB_150)
        return model.embed(torch.from_numpy(crop).permute(2, 0, 1)[None])

    a, b = (embed(p.image) for p in pair)
    m = embed(half)
    a_to_b = float(model.similarity(a, b))
    assert float(model.similarity(m, b)) > a_to_b
    assert float(model.similarity(m, a)) > a_to_b


def test_no_black_seams(pair: tuple[Photo, Photo]) -> None:
    """Every pixel is covered by some triangle: with no black pixel in either input, none in the morph."""
    a, b = pair
    out = landmark_morph(np.maximum(a.image, 8), a.landmarks, np.maximum(b.image, 8), b.landmarks, 0.5)
    assert not (out == 0).all(-1).any()


@pytest.mark.parametrize("edge_gap", [None, 0.6, 0.7, 0.8])
def test_warp_is_continuous(pair: tuple[Photo, Photo], edge_gap: float | None) -> None:
    """Smooth gradients stay smooth: a pixel warped by a wrong or missing triangle would jump.

    With `edge_gap`, A's jaw point is moved so that the mean shape's lies that far from the left edge: Subdiv2D
    then leaves the thin triangle between it and the edge anchors out, and its pixels must still be mapped."""
    a, b = pair
    landmarks_a = a.landmarks.copy()
    if edge_gap is not None:
        for _ in range(5):  # the similarity fit moves a little with the point: settle it
            aligned_b = map_points(b.landmarks, similarity_transform(b.landmarks, landmarks_a))
            landmarks_a[0, 0] = 2 * edge_gap - aligned_b[0, 0]

    def ramps(shape: tuple[int, ...]) -> np.ndarray:
        ys, xs = np.mgrid[0:shape[0], 0:shape[1]]
        return np.stack([xs, ys, (xs + ys) // 2], -1).clip(0, 255).astype(np.uint8)

    out = landmark_morph(ramps(a.image.shape), landmarks_a, ramps(b.image.shape), b.landmarks, 0.5).astype(int)
    assert np.abs(np.diff(out, axis=0)).max() <= 6 and np.abs(np.diff(out, axis=1)).max() <= 6


@pytest.mark.parametrize(("change", "message"), [
    ({"alpha": -0.1}, "alpha"), ({"alpha": 1.5}, "alpha"), ({"alpha": float("nan")}, "alpha"),
    ({"image_a": np.zeros((50, 50, 3), np.float32)}, "image_a"), ({"image_b": np.zeros((50, 50), np.uint8)}, "image_b"),
    ({"landmarks_a": np.zeros((5, 2))}, "landmarks_a"), ({"landmarks_b": np.full((68, 2), np.nan)}, "landmarks_b"),
    ({"landmarks_b": np.full((68, 2), 20.0)}, "landmarks_b"),
])
def test_bad_inputs_are_refused(change: dict[str, object], message: str) -> None:
    grid = np.stack([np.arange(68) % 8 * 5 + 5, np.arange(68) // 8 * 5 + 5], 1).astype(float)
    args: dict[str, object] = {"image_a": np.zeros((50, 50, 3), np.uint8), "landmarks_a": grid,
                               "image_b": np.zeros((50, 50, 3), np.uint8), "landmarks_b": grid, "alpha": 0.5}
    landmark_morph(**args)  # type: ignore[arg-type]  # these arguments alone are fine
    with pytest.raises(ValueError, match=message):
        landmark_morph(**{**args, **change})  # type: ignore[arg-type]
