"""The PyTorch port against dlib's own C++ model on the same real chips."""

from __future__ import annotations

from pathlib import Path

import dlib
import numpy as np
import torch

from facesec.data.dataset import load_dataset
from facesec.data.faces import FaceAnalyzer
from facesec.data.images import read_rgb
from facesec.data.pipeline import align_faces
from facesec.dlib_models import models_dir
from facesec.recognizers.dlib_resnet import MODEL_FILE


def test_parity_with_dlib_on_100_real_chips(celeba: Path, dlib_recognizer) -> None:  # type: ignore[no-untyped-def]
    ds = load_dataset(celeba)
    paths = [p for p, _ in ds.items[::40]][:110]
    faces = align_faces(paths, dlib_recognizer.info.template, progress=False)
    assert len(faces.paths) >= 100
    dlib_model = dlib.face_recognition_model_v1(str(models_dir() / MODEL_FILE))
    reference = np.stack([np.array(dlib_model.compute_face_descriptor(np.ascontiguousarray(c))) for c in faces.crops])
    with torch.no_grad():
        ours = dlib_recognizer(faces.tensor()).numpy()
    assert np.abs(ours - reference).max() <= 1e-5


def test_chips_equal_dlib_get_face_chip(face_files: list[Path], dlib_recognizer) -> None:  # type: ignore[no-untyped-def]
    template = dlib_recognizer.info.template
    analyzer = FaceAnalyzer()
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(models_dir() / "shape_predictor_5_face_landmarks.dat"))
    for path in face_files:
        img, _ = read_rgb(path)
        face = analyzer.find_face(img, template)
        shape = predictor(img, detector(img, 0)[0])
        # dlib's own landmarks; its SIMD paths can round a point differently between buffers
        assert np.abs(face.landmarks - [[p.x, p.y] for p in shape.parts()]).max() <= 1
        same_shape = dlib.full_object_detection(shape.rect, [dlib.point(int(x), int(y)) for x, y in face.landmarks])
        assert np.array_equal(analyzer.align(img, face, template),
                              dlib.get_face_chip(img, same_shape, size=150, padding=0.25))


def test_gradients_reach_the_pixels(face_files: list[Path], dlib_recognizer) -> None:  # type: ignore[no-untyped-def]
    x = align_faces(face_files[:2], dlib_recognizer.info.template, progress=False).tensor().requires_grad_(True)
    emb = dlib_recognizer(x)
    dlib_recognizer.similarity(emb[:1], emb[1:]).sum().backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in dlib_recognizer.parameters())


def test_crop_transform_and_68_landmarks_in_the_crop(face_files: list[Path]) -> None:
    """The image-to-crop transform reproduces each template's crop, so landmarks map into it exactly."""
    import cv2

    from facesec.data.align import ARCFACE_112, DLIB_150

    analyzer = FaceAnalyzer()
    for template in (DLIB_150, ARCFACE_112):
        faces = align_faces(face_files, template, progress=False)
        for path, crop, marks in zip(faces.paths, faces.crops, faces.landmarks, strict=True):
            img, _ = read_rgb(path)
            face = analyzer.find_face(img, template)
            matrix = analyzer.crop_transform(face, template)
            warped = cv2.warpAffine(img, matrix, (template.size, template.size), flags=cv2.INTER_LINEAR)
            assert np.abs(warped.astype(int) - crop).mean() < 1.5
            assert marks.shape == (68, 2)
            inner = marks[17:48]  # brows, nose, eyes (the jaw and chin may leave a tight crop)
            assert (inner > 0).all() and (inner < template.size).all()
            eyes = marks[36:48].mean(0)  # between the eyes: centred, in the upper half of the crop
            assert abs(eyes[0] - template.size / 2) < 0.1 * template.size and eyes[1] < template.size / 2
