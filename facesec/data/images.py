"""Reading images defensively: every unusable file becomes a recorded reason, never a crash."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_PIXELS = 40_000_000
"""Larger images are refused (decompression bombs, scans): no face pipeline needs them."""

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}


class UnusableImage(Exception):
    """The file cannot be used; the message is the reason recorded in the output."""


def read_rgb(path: str | Path, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, str | None]:
    """RGB uint8 H x W x 3 and a note when the file needed converting (grayscale, CMYK, alpha...)."""
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
