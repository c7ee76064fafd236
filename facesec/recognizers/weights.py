"""Weights by local path, or by URL + sha256 downloaded once into the cache and hash-checked."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm import tqdm

from facesec.data.cache import cache_root, file_digest
from facesec.errors import WeightsError


def resolve_weights(location: str | Path, sha256: str | None = None, progress: bool = True) -> Path:
    """A local file holding the weights at `location`, checked against `sha256` when given.

    URLs (http, https, file) need a sha256; the file is downloaded once into
    `$FACESEC_CACHE/weights/<sha256>` and reused after that.
    """
    text = str(location)
    scheme = urllib.parse.urlparse(text).scheme
    if scheme in ("http", "https", "file"):
        if not sha256:
            raise WeightsError(f"weights URL {text} needs a sha256 to check the download against")
        return _download(text, sha256.lower(), progress)
    path = Path(text).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if sha256:
        _check(path, sha256.lower(), str(path))
    return path


def _check(path: Path, expected: str, what: str) -> None:
    actual = file_digest(path)
    if actual != expected:
        raise WeightsError(f"sha256 mismatch for {what}: expected {expected}, got {actual}; "
                           "the file is corrupt or not the one the spec names")


def _download(url: str, sha256: str, progress: bool) -> Path:
    target = cache_root() / "weights" / sha256
    if target.is_file() and file_digest(target) == sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, suffix=".part")
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url) as resp:  # noqa: S310 - schemes checked
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc="download weights",
                      disable=not progress or None) as bar:
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
                    h.update(chunk)
                    bar.update(len(chunk))
        if h.hexdigest() != sha256:
            raise WeightsError(f"sha256 mismatch for {url}: expected {sha256}, got {h.hexdigest()}; "
                               "download discarded")
        shutil.move(tmp, target)
    except OSError as exc:
        raise WeightsError(f"cannot download weights from {url}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return target
