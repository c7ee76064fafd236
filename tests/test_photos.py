"""Attacks pasted back into their photos and found again by the detector (the deployed pipeline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facesec import photos
from facesec.data.align import DLIB_150
from facesec.data.faces import FaceAnalyzer
from facesec.data.images import read_rgb
from facesec.data.pipeline import align_faces
from facesec.engine import run_threat_model
from facesec.threat_model import ThreatModel


def test_no_change_gives_back_the_same_crops(face_files: list[Path]) -> None:
    faces = align_faces(face_files[:3], DLIB_150, progress=False)
    x = faces.tensor()
    trip = photos.round_trip(faces.paths, x, x.clone(), DLIB_150)
    assert trip.found.all()
    assert torch.equal(trip.crops, x)


def test_paste_lands_on_the_face_and_stays_in_budget(face_files: list[Path]) -> None:
    image, _ = read_rgb(face_files[0])
    analyzer = FaceAnalyzer()
    face = analyzer.find_face(image, DLIB_150)
    m = analyzer.crop_transform(face, DLIB_150)
    delta = np.zeros((150, 150, 3), np.float32)
    delta[60:90, 60:90] = 8 / 255  # a patch in the middle of the crop
    diff = photos.paste(image, delta, m).astype(int) - image.astype(int)
    assert 0 < np.abs(diff).max() <= 8  # interpolation never exceeds the crop's budget
    ys, xs = np.nonzero(np.abs(diff).sum(-1))
    to_photo = np.linalg.inv(np.vstack([m, [0, 0, 1]]))
    cx, cy = to_photo[:2, :2] @ np.array([74.5, 74.5]) + to_photo[:2, 2]  # the patch's centre in the photo
    assert abs(xs.mean() - cx) < 3 and abs(ys.mean() - cy) < 3


def test_photo_success_is_measured_for_a_run(celeba: Path) -> None:
    doc = {"name": "t", "data": {"dataset": str(celeba), "identities": 5, "images_per_identity": 3},
           "perturbation": {"kind": "pixel", "eps": "8/255"}, "attack": {"steps": 10, "sanity_samples": 3},
           "photo_round_trip": True}
    m = run_threat_model(ThreatModel.model_validate(doc), torch.device("cpu"), progress=False).record.metrics
    assert m["attack_success_rate"] == pytest.approx(1.0)
    assert 0 <= m["photo_success_rate"] <= m["attack_success_rate"] + 1e-9
    assert m["photo_faces_lost"] == 0
