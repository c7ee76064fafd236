"""Pictures for the report: gallery images, the eps-vs-ASR and ASR-against-queries plots, as base64 PNG data URIs.

Nothing here touches pyplot's global state: figures are drawn on an Agg canvas of their own.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter
from numpy.typing import ArrayLike
from PIL import Image

from facesec.data.images import UnusableImage, decode
from facesec.redaction import redact_face

MAX_SIDE = 320
"""Gallery images are shrunk to at most this many pixels a side, so the report stays small."""

MAX_PIXELS = 16_000_000
"""Larger files are not decoded at all (decompression bombs): gallery crops are a few hundred pixels."""



@dataclass
class SweepLine:
    """One line of the eps-vs-ASR plot: runs identical in every dimension but the budget."""

    label: str
    eps: list[float] = field(default_factory=list)
    asr: list[float] = field(default_factory=list)
    ci_low: list[float] = field(default_factory=list)
    ci_high: list[float] = field(default_factory=list)
    noise: list[float] = field(default_factory=list)


@dataclass
class QueryLine:
    """One line of the ASR-against-queries plot: a query run's ASR after each number of queries per face."""

    label: str
    queries: list[int]
    asr: list[float]


def png_data_uri(image: Image.Image) -> str:
    """`data:image/png;base64,...` of an image, so the report needs no files beside it."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def load_image(root: Path, relative: object, mode: str = "RGB") -> Image.Image | None:
    """Image at `relative` inside `root` in `mode` ("RGBA" keeps an accessory's transparency),
    or None when absent, unreadable or outside `root`.

    Paths come from results.json; refusing those that leave its folder keeps a crafted file from
    pulling other pictures on the auditor's disk into the report.
    """
    if not isinstance(relative, str) or not relative or Path(relative).is_absolute():
        return None
    try:
        base = root.resolve()
        path = (base / relative).resolve()
        if not path.is_relative_to(base):
            return None
        image = decode(path, lambda im: im.convert(mode), MAX_PIXELS)
    except (OSError, ValueError, UnusableImage):  # a name too long, a NUL byte, a file no decoder can read
        return None
    image.thumbnail((MAX_SIDE, MAX_SIDE))
    return image


def face_uris(root: Path, row: dict[str, Any], keys: tuple[str, ...], redact: bool) -> dict[str, str | None]:
    """The face images a gallery row names under `keys`, as data URIs (None when absent), blurred when
    `redact`."""
    out: dict[str, str | None] = {}
    for key in keys:
        image = load_image(root, row.get(key))
        if image is not None and redact:
            image = redact_face(image)
        out[key] = png_data_uri(image) if image is not None else None
    return out


def amplified_perturbation(
    perturbation: Image.Image | None, clean: Image.Image | None, adversarial: Image.Image | None
) -> tuple[Image.Image, float] | None:
    """The perturbation stretched around mid-grey to the full range, and the factor applied.

    Uses the stored perturbation image, or adversarial minus clean when there is none; an image
    already spanning the full range (an accessory patch, an amplified delta) is left as it is.
    """
    if perturbation is not None:
        centred = np.asarray(perturbation, dtype=np.float32) - 128.0
    elif clean is not None and adversarial is not None and clean.size == adversarial.size:
        centred = np.asarray(adversarial, dtype=np.float32) - np.asarray(clean, dtype=np.float32)
    else:
        return None
    peak = float(np.abs(centred).max())
    factor = max(1.0, 127.0 / peak) if peak > 0 else 1.0
    stretched = np.clip(128.0 + centred * factor, 0, 255).round().astype(np.uint8)
    return Image.fromarray(stretched, "RGB"), factor


def eps_asr_plot(title: str, lines: list[SweepLine], in_255ths: bool = False) -> str:
    """ASR (with 95% CI error bars) against eps, one line per group, noise baseline dashed.

    `in_255ths` adds a top axis in units of 1/255, the way L-inf budgets are usually quoted.
    """
    fig = Figure(figsize=(8, 4.8), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, line in enumerate(lines):
        colour = f"C{i % 10}"
        asr = np.asarray(line.asr, dtype=float)
        below = np.clip(asr - np.asarray(line.ci_low, dtype=float), 0, None)
        above = np.clip(np.asarray(line.ci_high, dtype=float) - asr, 0, None)
        ax.errorbar(line.eps, asr, yerr=[below, above], color=colour, marker="o", capsize=3, label=line.label)
        noise = [(e, n) for e, n in zip(line.eps, line.noise, strict=True) if not math.isnan(n)]
        if noise:
            ax.plot(*zip(*noise, strict=True), color=colour, linestyle="--", alpha=0.8)
    handles, _ = ax.get_legend_handles_labels()
    if any(not math.isnan(n) for line in lines for n in line.noise):
        handles.append(Line2D([], [], color="0.4", linestyle="--", label="random noise, same budget (baseline)"))
    ax.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    if in_255ths:
        top = ax.secondary_xaxis("top", functions=(_to_255ths, _from_255ths))
        top.set_xlabel("eps × 255", fontsize=9)
    return _asr_figure(fig, ax, title, "eps (pixel units, image range [0, 1])")


def queries_asr_plot(title: str, lines: list[QueryLine]) -> str:
    """ASR against the number of queries per face (log x axis, ticks at the counts recorded), one line per run."""
    fig = Figure(figsize=(8, 4.8), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, line in enumerate(lines):
        ax.plot(line.queries, line.asr, color=f"C{i % 10}", marker="o", label=line.label)
    ax.set_xscale("log")
    ticks = sorted({q for line in lines for q in line.queries})
    ax.set_xticks(ticks, [str(q) for q in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    return _asr_figure(fig, ax, title, "queries to the target per face (log scale)")


def _asr_figure(fig: Figure, ax: Any, title: str, xlabel: str) -> str:
    """Title, labels, an ASR axis from 0 to 1 and a light grid; the figure as a data URI."""
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("attack success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    return figure_uri(fig)


def figure_uri(fig: Figure) -> str:
    """The figure as a PNG data URI, without the software stamp so the same data gives the same bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _to_255ths(eps: ArrayLike) -> ArrayLike:
    return np.asarray(eps) * 255


def _from_255ths(steps: ArrayLike) -> ArrayLike:
    return np.asarray(steps) / 255
