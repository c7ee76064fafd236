"""From image files to aligned face crops for a template, with every skipped file recorded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from facesec.data.align import Template
from facesec.data.cache import FaceCache, file_digest
from facesec.data.faces import FaceAnalyzer, NoFace
from facesec.data.images import UnusableImage, read_rgb


@dataclass
class AlignedFaces:
    """Aligned crops of the usable images, in input order, and the rest with their reasons."""

    paths: list[Path]
    crops: np.ndarray
    """N x size x size x 3 uint8."""
    landmarks: list[np.ndarray]
    """Per crop, the detected landmarks in original image pixels."""
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[tuple[Path, str]] = field(default_factory=list)
    """Images used after a conversion (grayscale, CMYK, alpha ...)."""

    def tensor(self) -> torch.Tensor:
        """Crops as float32 RGB in [0, 1], NCHW."""
        return torch.from_numpy(self.crops).permute(0, 3, 1, 2).float().div_(255.0)


def align_faces(paths: Sequence[Path], template: Template, analyzer: FaceAnalyzer | None = None,
                cache: FaceCache | None = None, progress: bool = True) -> AlignedFaces:
    """Detect one face per image, find landmarks and crop it to `template`."""
    analyzer = analyzer or FaceAnalyzer()
    cache = cache or FaceCache()
    kept: list[Path] = []
    crops: list[np.ndarray] = []
    marks: list[np.ndarray] = []
    skipped: list[tuple[Path, str]] = []
    notes: list[tuple[Path, str]] = []
    for path in tqdm(list(paths), desc=f"faces -> {template.name}", unit="img", disable=not progress or None):
        path = Path(path)
        try:
            digest = file_digest(path)
        except OSError as exc:
            skipped.append((path, f"unreadable file ({exc.strerror})"))
            continue
        hit = cache.get(digest, template.name, analyzer.key)
        if hit is None:
            hit = _process(path, template, analyzer)
            cache.put(digest, template.name, analyzer.key, **hit)
        reason = str(hit["reason"]) if "reason" in hit else ""
        if reason:
            skipped.append((path, reason))
            continue
        if "note" in hit and str(hit["note"]):
            notes.append((path, str(hit["note"])))
        kept.append(path)
        crops.append(hit["crop"])
        marks.append(hit["landmarks"])
    size = template.size
    stacked = np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8)
    return AlignedFaces(kept, stacked, marks, skipped, notes)


def _process(path: Path, template: Template, analyzer: FaceAnalyzer) -> dict[str, np.ndarray]:
    try:
        image, note = read_rgb(path)
        face = analyzer.find_face(image, template)
    except (UnusableImage, NoFace) as exc:
        return {"reason": np.array(str(exc))}
    crop = analyzer.align(image, face, template)
    return {"crop": crop.astype(np.uint8), "landmarks": face.landmarks, "note": np.array(note or "")}
