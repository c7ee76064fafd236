"""`facesec data build celeba-mini --from DIR`: the shared development set cut again from CelebA's in-the-wild
photos. Every listed source file is checked against its size and SHA-256 before anything is written; then the
recipe of the set's README is applied (dlib's HOG detector and 5-point landmarks, a square LFW-like crop, 250 x 250,
JPEG quality 90) into a hidden folder that becomes the dataset only when every photo is done."""

from __future__ import annotations

import csv
import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from facesec.data.dataset import data_roots, default_root
from facesec.data.images import UnusableImage, read_regular, read_rgb
from facesec.dlib_models import models_dir
from facesec.errors import DataError
from facesec.progress import bar

BUILDS = {"celeba-mini": Path(__file__).parent / "sources" / "celeba-mini.csv"}
"""The sets facesec can build, each with the list of its source files (as the set's own SOURCES.csv)."""

SIZE, QUALITY = 250, 90
"""The crops' side in pixels and their JPEG quality (the README's recipe)."""

_FILE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_HASH = re.compile(r"[0-9a-f]{64}")
CROP_BYTES, SPARE_BYTES = 64 * 1024, 1 << 30
"""Room a crop takes at most (a 250 x 250 JPEG, about 20 KB) and the free space left after a build."""
MAX_SOURCES = 100_000
"""A source list with more rows is refused (celeba-mini has 5,168)."""


@dataclass(frozen=True)
class Source:
    """One listed source photo: CelebA's file name, its identity, and the size and SHA-256 it must have."""

    file: str
    identity: str
    sha256: str
    size: int


@dataclass
class Built:
    """What a build made."""

    root: Path
    images: int
    identities: int


def read_sources(path: Path) -> list[Source]:
    """The source list (columns source_file, identity, sha256, bytes); a row facesec could not use safely (a name
    with a separator, a malformed hash, a file listed twice) is a one-line error naming its line."""
    rows: list[Source] = []
    with path.open(newline="", encoding="utf-8", errors="strict") as fh:
        reader = csv.DictReader(fh)
        try:
            if not reader.fieldnames or not {"source_file", "identity", "sha256", "bytes"} <= set(reader.fieldnames):
                raise DataError(f"{path}: needs the columns source_file, identity, sha256, bytes "
                                f"(found {reader.fieldnames})")
            for row in reader:
                rows.append(_source(path, reader.line_num, row))
                if len(rows) > MAX_SOURCES:
                    raise DataError(f"{path}: more than {MAX_SOURCES:,} rows")
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DataError(f"{path}, line {reader.line_num}: not a readable UTF-8 CSV ({exc})") from exc
    files = [s.file for s in rows]
    if len(set(files)) != len(files):
        twice = next(f for f in files if files.count(f) > 1)
        raise DataError(f"{path}: {twice} is listed twice; each source file once")
    if not rows:
        raise DataError(f"{path}: lists no source files")
    return rows


def _source(path: Path, line: int, row: dict[str, str]) -> Source:
    file, identity = row["source_file"] or "", row["identity"] or ""
    digest, size = (row["sha256"] or "").lower(), row["bytes"] or ""
    if not (_FILE.fullmatch(file) and _FILE.fullmatch(identity) and _HASH.fullmatch(digest) and size.isdigit()):
        raise DataError(f"{path}, line {line}: source_file and identity must be plain names, sha256 64 hex "
                        "digits and bytes a whole number")
    return Source(file, identity, digest, int(size))


def check_sources(sources: list[Source], folder: Path, progress: bool = False) -> list[Path]:
    """Each source's file in `folder` (or its img_celeba/), as listed; every missing or altered one is counted and
    the first named, and nothing is built."""
    base = folder / "img_celeba" if (folder / "img_celeba").is_dir() and not (folder / sources[0].file).exists() \
        else folder
    paths, bad = [], []
    for source in bar(sources, desc="checking source files", unit="file", enabled=progress):
        path = base / source.file
        problem = _altered(path, source)
        if problem:
            bad.append(f"{path}: {problem}")
        paths.append(path)
    if bad:
        more = f" ({len(bad) - 1} more missing or altered)" if len(bad) > 1 else ""
        raise DataError(f"{bad[0]}{more}; --from must hold CelebA's in-the-wild files (img_celeba) as "
                        "published; nothing was written")
    return paths


def _altered(path: Path, source: Source) -> str:
    """Why the file is not the listed one ('' when it is)."""
    try:
        info = path.lstat()
    except OSError:
        return "missing"
    if not path.is_file() or path.is_symlink():
        return "not a regular file"
    if info.st_size != source.size:
        return f"{info.st_size:,} bytes, listed as {source.size:,}"
    with path.open("rb") as fh:
        if hashlib.file_digest(fh, "sha256").hexdigest() != source.sha256:
            return "its SHA-256 is not the listed one (altered or another file)"
    return ""


def _verified_bytes(path: Path, source: Source) -> bytes:
    """The file's bytes, read once from a regular file reached without following a link (never blocking on a
    FIFO put there since the check), and still the listed ones."""
    try:
        data = read_regular(path, source.size)
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc.strerror or type(exc).__name__}); nothing was written") \
            from exc
    if data is None or len(data) != source.size or hashlib.sha256(data).hexdigest() != source.sha256:
        raise DataError(f"{path}: changed since it was checked (or not a regular file); nothing was written")
    return data


class Cropper:
    """The README's recipe: the single face dlib's HOG detector finds (upsampled once when it finds none), its
    5 landmarks, a square of 3.6 eye-corner spans (at least 60 px) around the eyes and nose, black outside."""

    def __init__(self) -> None:
        import dlib

        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(models_dir() / "shape_predictor_5_face_landmarks.dat"))

    def crop(self, image: np.ndarray) -> Image.Image | None:
        """The 250 x 250 crop, or None when not exactly one face is found."""
        faces = self.detector(image, 0) or self.detector(image, 1)
        if len(faces) != 1:
            return None
        shape = self.predictor(image, faces[0])
        p = np.array([[q.x, q.y] for q in shape.parts()], dtype=np.float64)
        cx, cy = (p[:4].mean(axis=0) + p[4]) / 2
        side = int(max(3.6 * float(np.linalg.norm(p[0] - p[2])), 60))
        x0, y0 = int(cx - side / 2), int(cy - side / 2)
        square = Image.fromarray(image).crop((x0, y0, x0 + side, y0 + side))
        return square.resize((SIZE, SIZE), Image.Resampling.BICUBIC)


def build(name: str, source: Path, to: Path | None = None, sources: Path | None = None,
          progress: bool = False) -> Built:
    """Dataset `name` cut from the photos in `source` into `to` (default: the per-user data folder), from its
    shipped source list or `sources`; refused whole when a source file is missing or altered, or the recipe finds
    other than one face in one (another dlib would), and when the dataset already exists."""
    listed = read_sources(sources or BUILDS[name])
    final = (to or default_root()) / name
    for taken in [final] + [folder / name for folder in data_roots()]:
        if os.path.lexists(taken):
            raise DataError(f"dataset {name!r} already exists at {taken}; remove it to build it again")
    if not source.is_dir():
        raise DataError(f"--from {source}: not a folder (it must hold CelebA's img_celeba files)")
    paths = check_sources(listed, source, progress)
    final.parent.mkdir(parents=True, exist_ok=True)
    free, needed = shutil.disk_usage(final.parent).free, len(listed) * CROP_BYTES + SPARE_BYTES
    if free < needed:
        raise DataError(f"{final.parent}: {free / 1e9:.1f} GB free; the build needs {needed / 1e9:.1f} GB (its crops "
                        "and 1 GB to spare)")
    partial = final.parent / f".{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)  # an earlier interrupted build
    partial.mkdir()
    try:
        _cut(listed, paths, partial, progress)
        shutil.copyfile(sources or BUILDS[name], partial / "SOURCES.csv")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    partial.rename(final)
    return Built(final, len(listed), len({s.identity for s in listed}))


def _cut(listed: list[Source], paths: list[Path], partial: Path, progress: bool) -> None:
    """Every crop, then manifest.csv, into `partial`."""
    cropper = Cropper()
    verified = partial / ".source"
    for item, path in bar(list(zip(listed, paths, strict=True)), desc="cutting faces", unit="photo",
                          enabled=progress):
        verified.write_bytes(_verified_bytes(path, item))  # decoded from the bytes whose hash was checked
        try:
            image, _ = read_rgb(verified)
        except UnusableImage as exc:
            raise DataError(f"{path}: {exc}; nothing was written") from exc
        face = cropper.crop(image)
        if face is None:
            raise DataError(f"{path}: the recipe finds other than one face in it (the set was cut with dlib "
                            "20.0); nothing was written")
        (partial / item.identity).mkdir(exist_ok=True)
        face.save(partial / item.identity / item.file, format="JPEG", quality=QUALITY)
    verified.unlink()
    with (partial / "manifest.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(("path", "identity"))
        writer.writerows((f"{s.identity}/{s.file}", s.identity) for s in listed)
