"""`--redact`: what a suite writes shows no face and names no one. Faces are blurred before they reach the disk,
and identity names (for imported photos, people's names) become stable pseudonyms in results.json, the
samples CSVs and the report."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image, ImageFilter

from facesec.data.cache import cache_root
from facesec.data.images import IMAGE_SUFFIXES

BLUR_RADIUS_AT_150 = 6.0
"""Gaussian blur radius for redacted faces on a 150-px crop; scaled with the image size."""
REDACTED_SCALE = 4
"""A redacted face is stored this many times smaller on each side: a blur of radius 6 keeps no detail finer."""
OWN = "runs/"
"""Paths of the suite's own files (gallery images, print files): named by facesec, never by a person, and links
the report follows."""
KEY_FILE = "redaction.key"
"""The secret behind the pseudonyms, in $FACESEC_CACHE: the same person gets the same pseudonym in every suite
redacted on this machine, and a guessed name cannot be checked against one without it."""


def redact_face(image: Image.Image) -> Image.Image:
    """Strong Gaussian blur (radius 6 px on a 150-px crop), kept at a quarter of its size, which the blur leaves
    nothing finer than: faces are biometric data, and a redacted report stays small."""
    radius = max(1.0, BLUR_RADIUS_AT_150 * max(image.size) / 150)
    small = (max(1, round(image.width / REDACTED_SCALE)), max(1, round(image.height / REDACTED_SCALE)))
    return image.filter(ImageFilter.GaussianBlur(radius)).resize(small, Image.Resampling.BOX)


def blur_images(folder: Path, faceless: set[str]) -> int:
    """Replace every image file under `folder` by its redacted face, except the files named in `faceless`
    (relative to `folder`: perturbations, accessories, print files); returns how many were blurred. Anything
    not declared faceless is treated as a face."""
    done = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
        if path.relative_to(folder).as_posix() in faceless:
            continue
        with Image.open(path) as image:
            blurred = redact_face(image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB"))
        blurred.save(path, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))
        done += 1
    return done


class Pseudonyms:
    """Identity names to `person-<8 hex>` (a keyed hash of the name), wherever a string is a name or a path
    through a name's folder or file."""

    def __init__(self, names: Iterable[str], key: bytes | None = None) -> None:
        self.key = key if key is not None else _key()
        self.names = {str(n) for n in names if str(n)}
        self._path_part = re.compile(
            r"(?<![^/])(" + "|".join(re.escape(n) for n in sorted(self.names, key=len, reverse=True)) + r")(?=/|_|\.|$)"
        ) if self.names else None

    def of(self, name: str) -> str:
        """The pseudonym of one name."""
        return "person-" + hmac.new(self.key, name.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()[:8]

    def text(self, value: str) -> str:
        """`value` with names replaced: the whole string when it is a name; in an image's path, each component
        that is a name or starts with one (LFW's `Name/Name_0001.jpg`); other text is left as it is."""
        if value in self.names:
            return self.of(value)
        if self._path_part is None or Path(value).suffix.lower() not in IMAGE_SUFFIXES or value.startswith(OWN):
            return value
        return self._path_part.sub(lambda m: self.of(m.group(1)), value)

    def deep(self, value: Any) -> Any:
        """A JSON-like value with every string passed through `text` (mapping keys included)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.deep(k): self.deep(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.deep(v) for v in value]
        return value

    def table(self, table: pd.DataFrame) -> pd.DataFrame:
        """The samples table with every string cell passed through `text`."""
        out = table.copy()
        for column in out.columns:
            if pd.api.types.is_object_dtype(out[column]) or pd.api.types.is_string_dtype(out[column]):
                out[column] = [self.text(v) if isinstance(v, str) else v for v in out[column]]
        return out


def _key() -> bytes:
    """This machine's pseudonym key, made once (readable by its owner only)."""
    path = cache_root() / KEY_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:  # another process made it meanwhile
            return path.read_bytes()
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
        return path.read_bytes()
