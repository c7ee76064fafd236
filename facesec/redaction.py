"""`--redact`: what a suite writes shows no face and names no one. Faces are blurred before they reach the disk,
and identity names (for imported photos, people's names) become stable pseudonyms in results.json, the
samples CSVs and the report."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image, ImageFilter

from facesec.data.cache import cache_root
from facesec.data.images import IMAGE_SUFFIXES
from facesec.errors import ConfigError

BLUR_RADIUS_AT_150 = 6.0
"""Gaussian blur radius for redacted faces on a 150-px crop; scaled with the image size."""
REDACTED_SCALE = 4
"""A redacted face is stored this many times smaller on each side: a blur of radius 6 keeps no detail finer."""
REDACTED_SIDE = 150 // REDACTED_SCALE + 1
"""Images no larger than this are not shrunk again (a face redacted on disk, redacted again by the report)."""
OWN = "runs/"
"""Paths of the suite's own files (gallery images, print files): named by facesec, never by a person, and links
the report follows."""
KEY_FILE = "redaction.key"
KEY_BYTES = 32
"""The secret behind the pseudonyms, in $FACESEC_CACHE: the same person gets the same pseudonym in every suite
redacted on this machine, and a guessed name cannot be checked against one without it."""


def redact_face(image: Image.Image) -> Image.Image:
    """Strong Gaussian blur (radius 6 px on a 150-px crop), kept at a quarter of its size, which the blur leaves
    nothing finer than: faces are biometric data, and a redacted report stays small."""
    radius = max(1.0, BLUR_RADIUS_AT_150 * max(image.size) / 150)
    blurred = image.filter(ImageFilter.GaussianBlur(radius))
    if max(image.size) <= REDACTED_SIDE:  # redacted before (or as small): blurred again, never shrunk further
        return blurred
    small = (max(1, round(image.width / REDACTED_SCALE)), max(1, round(image.height / REDACTED_SCALE)))
    return blurred.resize(small, Image.Resampling.BOX)


def blur_images(folder: Path, faceless: set[str]) -> None:
    """Replace every image file under `folder` by its redacted face, except the files named in `faceless`
    (relative to `folder`: accessories, print files). Anything not declared faceless is treated as a face."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
        if path.relative_to(folder).as_posix() in faceless:
            continue
        with Image.open(path) as image:
            blurred = redact_face(image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB"))
        blurred.save(path, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))


NAME_KEYS = re.compile(r"identit|target|contributor|subject|person", re.IGNORECASE)
"""Record keys and sample columns whose string values are identity names (counts such as n_identities hold
numbers, which are never touched)."""
_SUFFIXES = "|".join(sorted((s.lstrip(".") for s in IMAGE_SUFFIXES), key=len, reverse=True))


class Pseudonyms:
    """Identity names to `person-<8 hex>` (a keyed hash of the name): a value of a name field, and any folder or
    file of an image path named after a person, wherever the path sits in a string (an error message too)."""

    def __init__(self, names: Iterable[str], key: bytes | None = None) -> None:
        self.key = key if key is not None else _key()
        self.names = {str(n) for n in names if str(n)}
        alternatives = "|".join(re.escape(n) for n in sorted(self.names, key=len, reverse=True))
        self._in_path = re.compile(  # a path component that is a name, or a file named after one (Name_0001.jpg)
            rf"(?<![^\s/'\"(\[])({alternatives})(?=/|_\d|\.(?i:{_SUFFIXES})\b)"
        ) if self.names else None

    def of(self, name: str) -> str:
        """The pseudonym of one name."""
        return "person-" + hmac.new(self.key, name.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()[:8]

    def text(self, value: str, is_name: bool = False) -> str:
        """`value` with names replaced: the whole of it when `is_name` (a name field's value) and it is a name;
        in any string, the folders and files of image paths named after a person. The suite's own paths
        (`runs/...`) are named by facesec and left as they are."""
        if is_name and value in self.names:
            return self.of(value)
        if self._in_path is None or value.startswith(OWN):
            return value
        return self._in_path.sub(lambda m: self.of(m.group(1)), value)

    def deep(self, value: Any, is_name: bool = False) -> Any:
        """A JSON-like value with every string passed through `text`; values under a name key (NAME_KEYS) are
        names, and so are the keys of a mapping held under one (a table by person)."""
        if isinstance(value, str):
            return self.text(value, is_name)
        if isinstance(value, dict):
            return {(self.text(k, True) if is_name and isinstance(k, str) else k):
                    self.deep(v, is_name or (isinstance(k, str) and bool(NAME_KEYS.search(k))))
                    for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.deep(v, is_name) for v in value]
        return value

    def table(self, table: pd.DataFrame) -> pd.DataFrame:
        """The samples table with every string cell passed through `text` (name columns as names)."""
        out = table.copy()
        for column in out.columns:
            if pd.api.types.is_object_dtype(out[column]) or pd.api.types.is_string_dtype(out[column]):
                named = bool(NAME_KEYS.search(str(column)))
                out[column] = [self.text(v, named) if isinstance(v, str) else v for v in out[column]]
        return out


def _key() -> bytes:
    """This machine's pseudonym key (32 random bytes, readable by its owner only), made once: written to a
    temporary file and linked into place, so no process ever reads a key half-written."""
    path = cache_root() / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{KEY_FILE}.")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(KEY_BYTES))
            with contextlib.suppress(FileExistsError):  # another process linked its key first: use that one
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise ConfigError(f"{path}: not a pseudonym key ({len(key)} bytes, not {KEY_BYTES}); delete it and facesec "
                          "makes a new one (pseudonyms then change)")
    return key
