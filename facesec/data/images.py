"""Reading images defensively: every unusable file becomes a recorded reason, never a crash."""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_PIXELS = 40_000_000
"""Larger images are refused (decompression bombs, scans): no face pipeline needs them."""

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


def read_rgb(path: str | Path, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, str | None]:
    """RGB uint8 H x W x 3 and a note when the file needed converting (grayscale, CMYK, alpha, 16 bits...)."""
    regular_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise UnusableImage(f"image too large ({w}x{h} pixels, limit {max_pixels:,})")
                im.load()
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
    except UnusableImage:
        raise
    except FileNotFoundError as exc:
        raise UnusableImage("file not found") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UnusableImage("image too large (decompression bomb guard)") from exc
    except UnidentifiedImageError as exc:
        raise UnusableImage("not an image or unsupported format") from exc
    except OSError as exc:
        text = str(exc)
        if "truncated" in text.lower():
            raise UnusableImage("truncated image file") from exc
        raise UnusableImage(f"unreadable image ({text})") from exc
    except (ValueError, SyntaxError) as exc:
        raise UnusableImage(f"corrupt image ({exc})") from exc
