"""The images a run writes for its report gallery, and scores made safe for results.json."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from pydantic import JsonValue

from facesec.families.base import RunOutput
from facesec.record import Measured, plain


def png(t: torch.Tensor, path: Path) -> None:
    """Save a 3 x H x W tensor in [0, 1] as an 8-bit PNG."""
    arr = (t.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(arr).save(path)


def write_row(run_dir: Path, rel: str, index: int, images: dict[str, torch.Tensor | None]) -> dict[str, str]:
    """Gallery row `index`'s images as `<index>_<key>.png` in `run_dir`; their paths relative to the suite by
    key (a missing image, None, is left out)."""
    files = {}
    for key, image in images.items():
        if image is not None:
            png(image, run_dir / f"{index}_{key}.png")
            files[key] = f"{rel}/{index}_{key}.png"
    return files


def finite(value: float) -> float | None:
    """A score for results.json: None where it is not finite (JSON has no infinity; -inf marks 'no face')."""
    return float(value) if math.isfinite(value) else None


GALLERY_SIZE = 6
"""Rows a run shows in its report gallery."""


class GalleryOutput(RunOutput):
    """A run's record, and per gallery row its images (by key; None: none to show) and plain fields."""

    def __init__(self, measured: Measured, images: list[dict[str, torch.Tensor | None]],
                 fields: list[dict[str, Any]]) -> None:
        super().__init__(measured)
        self.images, self.fields = images, fields

    def write_artefacts(self, run_dir: Path, rel: str, samples: pd.DataFrame) -> dict[str, JsonValue]:
        return {"gallery": [plain({**fields, **write_row(run_dir, rel, i, images)})
                            for i, (images, fields) in enumerate(zip(self.images, self.fields, strict=True))]}
