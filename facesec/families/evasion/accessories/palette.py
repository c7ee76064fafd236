"""A printer's palette file read without torch (so `validate` checks it): one colour per line as R,G,B in 0-255,
'#' starting a comment."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facesec.errors import ConfigError


def read_palette(spec: str) -> np.ndarray:
    """The colours of the palette file `spec`, N x 3 in [0, 1]; ConfigError naming the line otherwise."""
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"field 'perturbation.palette': no palette file '{spec}'; give 'default' or a file "
                          "of R,G,B lines in 0-255")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        parts = [p for p in text.replace(",", " ").split() if p]
        try:
            rgb = [float(p) for p in parts]
        except ValueError:
            rgb = []
        if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
            raise ConfigError(f"{path}:{number}: expected three numbers R,G,B in 0-255, got {text!r}")
        rows.append(rgb)
    if not rows:
        raise ConfigError(f"{path}: palette file has no colours")
    return np.array(rows) / 255.0
