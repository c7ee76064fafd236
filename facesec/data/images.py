"""Reading images defensively: every unusable file becomes a recorded reason, never a crash."""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_PIXELS = 40_000_000
"""Larger images are refused (decompression bombs, scans): no face pipeline needs them."""

T = TypeVar("T")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}


class UnusableImage(Exception):
    """The file cannot be used; the message is the reason recorded in the output."""


MAX_FILE_BYTES = 256 << 20
"""Larger files are refused unread."""


def regular_file(path: str | Path, max_bytes: int = MAX_FILE_BYTES) -> None:
    """UnusableImage unless `path` is a regular file of at most `max_bytes` (checked without opening it, so a
    FIFO or a device such as /dev/zero can never block or flood the reader)."""
    try:
        info = os.stat(path)
    except FileNotFoundError as exc:
        raise UnusableImage("file not found (or a broken link)") from exc
    except OSError as exc:
        raise UnusableImage(f"cannot stat ({exc.strerror or type(exc).__name__})") from exc
    if stat.S_ISDIR(info.st_mode):
        raise UnusableImage("a folder, not an image file")
    if not stat.S_ISREG(info.st_mode):
        raise UnusableImage("not a regular file (FIFO, socket or device)")
    if info.st_size > max_bytes:
        raise UnusableImage(f"file too large ({info.st_size:,} bytes, limit {max_bytes:,})")


def read_regular(path: str | Path, limit: int) -> bytes | None:
    """At most `limit` + 1 bytes of a regular file opened without following a link at its end and without waiting
    on a FIFO; None when it is not a regular file. OSError when it cannot be opened (missing, a link)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as fh:
        return fh.read(limit + 1) if stat.S_ISREG(os.fstat(fd).st_mode) else None


def read_rgb(path: str | Path, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, str | None]:
    """RGB uint8 H x W x 3 and a note when the file needed converting (grayscale, CMYK, alpha, 16 bits...)."""
    return decode(path, _as_rgb, max_pixels)


def decode(path: str | Path, convert: Callable[[Image.Image], T], max_pixels: int = MAX_PIXELS) -> T:
    """`convert` applied to the decoded image at `path`; every failure of the file or of the decoder on it (Pillow
    raises TypeError, IndexError, struct.error... on crafted files) is an UnusableImage naming the reason."""
    regular_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise UnusableImage(f"image too large ({w}x{h} pixels, limit {max_pixels:,})")
                im.load()
                return convert(im)
    except UnusableImage:
        raise
    except FileNotFoundError as exc:
        raise UnusableImage("file not found") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UnusableImage("image too large (decompression bomb guard)") from exc
    except UnidentifiedImageError as exc:
        raise UnusableImage("not an image or unsupported format") from exc
    except OSError as exc:
        if "truncated" in str(exc).lower():
            raise UnusableImage("truncated image file") from exc
        raise UnusableImage(f"unreadable image ({_short(exc)})") from exc
    except (ValueError, SyntaxError) as exc:
        raise UnusableImage(f"corrupt image ({_short(exc)})") from exc
    except Exception as exc:  # any other decoder failure on hostile bytes is a reason, not a crash
        raise UnusableImage(f"the decoder failed on this file ({type(exc).__name__}: {_short(exc)})") from exc


def _short(exc: BaseException) -> str:
    """An exception's text on one line, at most 120 characters (it is written into CSV files and reports)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= 120 else text[:117] + "..."


def _as_rgb(im: Image.Image) -> tuple[np.ndarray, str | None]:
    """A loaded image as RGB uint8, and a note when it needed converting."""
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im, dtype=np.uint8).copy(), None
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):  # 16-bit (or 32-bit) grayscale
        wide = np.asarray(im).astype(np.float64)
        top = 65535.0 if mode.startswith("I;16") else max(float(wide.max()), 1.0)
        gray = np.clip(np.round(wide / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2), f"converted from {mode} (16-bit) to 8-bit RGB"
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        rgb = Image.alpha_composite(background, rgba).convert("RGB")
        note = f"alpha channel ({mode}) composited on white"
    else:
        rgb = im.convert("RGB")
        note = f"converted from {mode} to RGB"
    return np.asarray(rgb, dtype=np.uint8).copy(), note
