"""Accessory regions from landmarks: plausible places and sizes, and nothing changes outside them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facesec.data import regions
from facesec.data.align import ARCFACE_112, DLIB_150, Template
from facesec.data.pipeline import align_faces

SHAPES = {
    "eyeglasses": lambda lm, size: regions.eyeglasses(lm, size),
    "sticker-forehead": lambda lm, size: regions.sticker(lm, size, "forehead"),
    "sticker-cheek": lambda lm, size: regions.sticker(lm, size, "left-cheek"),
    "sticker-nose": lambda lm, size: regions.sticker(lm, size, "nose"),
    "facemask": lambda lm, size: regions.facemask(lm, size),
}


@pytest.mark.parametrize("template", [DLIB_150, ARCFACE_112], ids=lambda t: t.name)
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_outside_the_mask_is_bit_identical(face_files: list[Path], template: Template, shape: str) -> None:
    faces = align_faces(face_files, template, progress=False)
    x = faces.tensor()
    masks = torch.from_numpy(np.stack([SHAPES[shape](lm, template.size) for lm in faces.landmarks]))
    pattern = torch.rand(len(x), 3, template.size, template.size, generator=torch.Generator().manual_seed(0))
    worn = regions.wear(x, masks, pattern)
    outside = ~masks.unsqueeze(1).expand_as(x)
    assert torch.equal(worn[outside], x[outside])
    assert torch.equal(worn[~outside], pattern[~outside])
    coverage = masks.float().mean(dim=(1, 2))
    expected = {"eyeglasses": (0.03, 0.15), "facemask": (0.15, 0.5)}.get(shape.split("-")[0], (0.01, 0.06))
    assert ((coverage > expected[0]) & (coverage < expected[1])).all(), coverage


def test_regions_sit_where_they_belong(face_files: list[Path]) -> None:
    faces = align_faces(face_files, DLIB_150, progress=False)
    for lm in faces.landmarks:
        eyes_y = lm[36:48, 1].mean()
        glasses = regions.eyeglasses(lm, 150)
        mask = regions.facemask(lm, 150)
        assert abs(np.nonzero(glasses)[0].mean() - eyes_y) < 10
        assert np.nonzero(mask)[0].mean() > eyes_y + 20  # below the eyes
        assert not (glasses & mask).sum() > 0.2 * glasses.sum()


def test_grid_cells_cover_the_mask() -> None:
    mask = np.zeros((40, 40), bool)
    mask[5:37, 10:26] = True
    cells = regions.grid_cells(mask, rows=16, cols=8)
    assert (cells[~mask] == -1).all()
    assert set(np.unique(cells[mask]).tolist()) == set(range(128))
