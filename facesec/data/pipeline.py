"""From image files to aligned face crops for a template, with every skipped file recorded."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from facesec.data.align import Template
from facesec.data.cache import FaceCache, file_digest
from facesec.data.faces import Detection, FaceAnalyzer, NoFace, map_points
from facesec.data.images import UnusableImage, read_rgb
from facesec.progress import bar


@dataclass
class AlignedFaces:
    """Aligned crops of the usable images, in input order, and the rest with their reasons."""

    paths: list[Path]
    crops: np.ndarray
    """N x size x size x 3 uint8."""
    landmarks: list[np.ndarray]
    """Per crop, dlib's 68 landmarks in the crop's own pixels (accessory regions are built from them)."""
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[tuple[Path, str]] = field(default_factory=list)
    """Images used after a conversion (grayscale, CMYK, alpha ...)."""

    def tensor(self) -> torch.Tensor:
        """Crops as float32 RGB in [0, 1], NCHW."""
        return self.uint8().float().div_(255.0)

    def uint8(self) -> torch.Tensor:
        """Crops as uint8 RGB, NCHW (a view of `crops`)."""
        return torch.from_numpy(self.crops).permute(0, 3, 1, 2)


DETECTION = "detection"
"""Cache entries under this template name hold a face's box and landmarks, shared by every template."""

_IDLE: dict[str, list[FaceAnalyzer]] = {}
_IDLE_LOCK = threading.Lock()


@contextmanager
def _borrowed(like: FaceAnalyzer) -> Iterator[FaceAnalyzer]:
    """An analyzer with `like`'s settings for one thread at a time, kept for later calls: loading dlib's
    landmark models takes about a second, which used to be paid by every thread of every call."""
    with _IDLE_LOCK:
        idle = _IDLE.setdefault(like.key, [])
        analyzer = idle.pop() if idle else FaceAnalyzer(like.detector_name, like.max_upsample)
    try:
        yield analyzer
    finally:
        with _IDLE_LOCK:
            idle.append(analyzer)


def align_faces(paths: Sequence[Path], template: Template, analyzer: FaceAnalyzer | None = None,
                cache: FaceCache | None = None, progress: bool = True, workers: int | None = None) -> AlignedFaces:
    """Detect one face per image, find landmarks and crop it to `template`.

    Images are processed in `workers` threads (default: the CPU count, at most 8); dlib releases
    the GIL while detecting, and each thread borrows its own analyzer since dlib's detector is not re-entrant.
    """
    analyzer = analyzer or FaceAnalyzer()
    face_cache = cache or FaceCache()

    def one(path: Path) -> dict[str, np.ndarray]:
        try:
            digest = file_digest(path)
        except OSError as exc:
            return {"reason": np.array(f"unreadable file ({exc.strerror})")}
        hit = face_cache.get(digest, template.name, analyzer.key)
        if hit is None:
            with _borrowed(analyzer) as own:
                hit = _process(path, digest, template, own, face_cache)
            face_cache.put(digest, template.name, analyzer.key, **hit)
        return hit

    paths = [Path(p) for p in paths]
    n_workers = workers or min(8, os.cpu_count() or 1)
    out = AlignedFaces([], np.zeros((0, template.size, template.size, 3), np.uint8), [])
    crops: list[np.ndarray] = []
    with ThreadPoolExecutor(n_workers) as pool:
        results = pool.map(one, paths)
        for path, hit in bar(zip(paths, results, strict=True), total=len(paths), desc=f"faces -> {template.name}",
                             unit="img", enabled=progress):
            reason = str(hit["reason"]) if "reason" in hit else ""
            if reason:
                out.skipped.append((path, reason))
                continue
            if "note" in hit and str(hit["note"]):
                out.notes.append((path, str(hit["note"])))
            out.paths.append(path)
            crops.append(hit["crop"])
            out.landmarks.append(hit["landmarks"])
    if crops:
        out.crops = np.stack(crops)
    return out


def _process(path: Path, digest: str, template: Template, analyzer: FaceAnalyzer,
             cache: FaceCache) -> dict[str, np.ndarray]:
    """Crop one image for `template`, detecting its face only when no earlier template did."""
    try:
        image, note = read_rgb(path)
    except UnusableImage as exc:
        return {"reason": np.array(str(exc))}
    found = cache.get(digest, DETECTION, analyzer.key)
    if found is None:
        try:
            d = analyzer.detect(image)
            found = {"box": np.array(d.box), "landmarks5": d.landmarks5, "landmarks68": d.landmarks68}
        except NoFace as exc:
            found = {"reason": np.array(str(exc))}
        cache.put(digest, DETECTION, analyzer.key, **found)
    if "reason" in found:
        return {"reason": found["reason"]}
    box = tuple(int(v) for v in found["box"])
    face = Detection((box[0], box[1], box[2], box[3]), found["landmarks5"], found["landmarks68"]).face(template)
    crop = analyzer.align(image, face, template)
    landmarks = map_points(face.landmarks68, analyzer.crop_transform(face, template))
    return {"crop": crop.astype(np.uint8), "landmarks": landmarks, "note": np.array(note or "")}
