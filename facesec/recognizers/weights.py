"""Weights by local path, or by https URL + sha256 downloaded once into the cache and hash-checked.

A spec from someone else decides what is fetched, so downloads are bounded: https only, a timeout on
every connect and read, a size cap (refused up front when the server announces more), the hash
computed while streaming and checked before the file is kept, partial files always removed, and the
cache path built only from a validated sha256.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from facesec.data.cache import cache_root, file_digest
from facesec.errors import WeightsError
from facesec.progress import bar as progress_bar

TIMEOUT_S = 30.0
"""Per connect and per read; a server that stops answering fails the download instead of hanging it."""
MAX_DOWNLOAD_BYTES = 4 << 30
STALE_PART_S = 3600.0
"""Partial files older than this (left by a killed process) are removed before the next download."""
SHA256 = re.compile(r"[0-9a-f]{64}")


def check_sha256(value: str) -> str:
    """The sha256 in lower case; WeightsError unless it is 64 hex digits."""
    text = str(value).strip().lower()
    if not SHA256.fullmatch(text):
        raise WeightsError(f"sha256 {value!r} is not 64 hex digits")
    return text


def check_url(text: str) -> None:
    """An https URL with a host; WeightsError naming what to do otherwise."""
    parts = urllib.parse.urlparse(text)
    if parts.scheme != "https" or not parts.hostname:
        raise WeightsError(f"weights URL {text!r}: only https URLs with a host are downloaded; give an https URL "
                           "or a local file path")


def is_url(text: str) -> bool:
    """Whether `text` names a remote (or file:) location rather than a local path."""
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text))


def resolve_weights(location: str | Path, sha256: str | None = None, progress: bool = True) -> Path:
    """A local file holding the weights at `location`, checked against `sha256` when given.

    https URLs need a sha256; the file is downloaded once into `$FACESEC_CACHE/weights/<sha256>` and
    reused after that.
    """
    text = str(location)
    expected = check_sha256(sha256) if sha256 else None
    if is_url(text):
        check_url(text)
        if expected is None:
            raise WeightsError(f"weights URL {text} needs a sha256 to check the download against")
        return _download(text, expected, progress)
    path = Path(text).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if expected:
        _check(path, expected, str(path))
    return path


def _check(path: Path, expected: str, what: str) -> None:
    actual = file_digest(path)
    if actual != expected:
        raise WeightsError(f"sha256 mismatch for {what}: expected {expected}, got {actual}; "
                           "the file is corrupt or not the one the spec names")


def _download(url: str, sha256: str, progress: bool, max_bytes: int = MAX_DOWNLOAD_BYTES,
              timeout: float = TIMEOUT_S) -> Path:
    """Stream `url` into the cache under its (validated) sha256; nothing is kept unless the hash matches."""
    target = cache_root() / "weights" / check_sha256(sha256)
    if target.is_file() and file_digest(target) == sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(target.parent)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, suffix=".part")
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310
            total = int(resp.headers.get("Content-Length") or 0) or None
            if total is not None and total > max_bytes:
                raise WeightsError(f"{url}: {total:,} bytes announced, more than the {max_bytes:,} allowed")
            seen = 0
            with progress_bar(total=total, unit="B", unit_scale=True, desc="download weights",
                              enabled=progress) as bar:
                while chunk := resp.read(1 << 20):
                    seen += len(chunk)
                    if seen > max_bytes:
                        raise WeightsError(f"{url}: more than the {max_bytes:,} bytes allowed; download discarded")
                    out.write(chunk)
                    h.update(chunk)
                    bar.update(len(chunk))
        if h.hexdigest() != sha256:
            raise WeightsError(f"sha256 mismatch for {url}: expected {sha256}, got {h.hexdigest()}; "
                               "download discarded")
        os.replace(tmp, target)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise WeightsError(f"cannot download weights from {url}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _remove_stale_parts(folder: Path) -> None:
    """Delete partial downloads a killed process left behind."""
    now = time.time()
    for part in folder.glob("*.part"):
        try:
            if now - part.stat().st_mtime > STALE_PART_S:
                part.unlink()
        except OSError:
            continue
