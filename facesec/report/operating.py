"""The report's operating points: each run's threshold, where it was calibrated and how sure it is, the FMR it
gives on the run's own people, and per recognizer and calibration the DET curve and the clean score
distributions with the thresholds marked."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from matplotlib.figure import Figure

from facesec.record import OperatingPoint, RunRecord
from facesec.report.fields import DASH
from facesec.report.figures import figure_uri


@dataclass
class PointRow:
    """One run's operating point, as the table shows it."""

    run: str
    anchor: str
    recognizer: str
    fmr: str
    threshold: str
    calibrated_on: str
    measured: str
    in_sample: bool
    supported: bool


@dataclass
class Calibration:
    """One recognizer's clean scores on one calibration: its DET curve and score distributions (one figure)."""

    title: str
    uri: str


@dataclass
class OperatingSection:
    """The table of every run's operating points and a figure per recognizer and calibration."""

    rows: list[PointRow] = field(default_factory=list)
    figures: list[Calibration] = field(default_factory=list)

    @property
    def in_sample(self) -> int:
        return sum(row.in_sample for row in self.rows)


def section(records: list[RunRecord], anchors: list[str]) -> OperatingSection:
    """Rows for every run's operating points (in run order) and one figure per distinct calibration."""
    out = OperatingSection()
    drawn: dict[tuple[str, str], set[tuple[float, float]]] = {}
    curves: dict[tuple[str, str], OperatingPoint] = {}
    for record, anchor in zip(records, anchors, strict=True):
        for p in record.operating_points:
            out.rows.append(_row(record.name, anchor, p))
            key = (p.recognizer, p.draw or f"in-sample {record.name}")
            curves.setdefault(key, p)
            drawn.setdefault(key, set()).add((p.fmr, p.threshold))
    for key, p in list(curves.items())[:MAX_FIGURES]:
        det = _det_points(p)
        if det.size:
            title = f"{p.recognizer}: " + (f"calibration {p.draw} ({p.identities} identities of {p.dataset})"
                                           if p.draw else key[1].replace("in-sample ", "in sample, run "))
            uri = _drawn(title, p, det, sorted(drawn[key])[:MAX_POINTS])
            if uri is not None:
                out.figures.append(Calibration(title, uri))
    return out


def _drawn(title: str, p: OperatingPoint, det: np.ndarray, thresholds: list[tuple[float, float]]) -> str | None:
    """The figure, or None when numbers from someone else's file cannot be drawn (the table still shows them)."""
    try:
        return _figure(title, p, det, thresholds)
    except (ValueError, OverflowError, np.linalg.LinAlgError):
        return None


def _row(run: str, anchor: str, p: OperatingPoint) -> PointRow:
    where = (f"{p.identities} identities of {p.dataset} apart from the run (draw {p.draw}, seed {p.seed}): "
             if p.source == "out-of-sample" else f"in sample: the run's own {p.identities} identities: ")
    measured = DASH if p.fmr_measured is None else (
        f"{p.fmr_measured:.2g} {_bounds(p.fmr_measured_ci95_cluster or p.fmr_measured_ci95, '.2g')} "
        f"on {p.measured_pairs} impostor pairs")
    return PointRow(run, anchor, p.recognizer, f"{p.fmr:g}", f"{p.threshold:.4g} {_bounds(p.threshold_ci95, '.4g')}",
                    where + f"{p.impostor_pairs} impostor pairs, {p.identity_pairs} pairs of people", measured,
                    p.source == "in-sample", p.supported)


def _bounds(ends: list[float], spec: str) -> str:
    """'[lo, hi]' of a 95% interval (empty without one)."""
    return f"[{ends[0]:{spec}}, {ends[1]:{spec}}]" if len(ends) == 2 else ""


MAX_POINTS = 400
"""A curve or histogram longer than this (from someone else's results.json) is not drawn."""
MAX_FIGURES = 24
"""Calibration figures drawn at most (one per recognizer and calibration; a page from a file with more shows the
first)."""


def _det_points(p: OperatingPoint) -> np.ndarray:
    """The DET points that can be drawn on log axes: pairs of finite rates in (0, 1]."""
    if p.curve is None or len(p.curve.det) > MAX_POINTS:
        return np.zeros((0, 2))
    rows = np.array([row for row in p.curve.det if len(row) == 2], dtype=float).reshape(-1, 2)
    return rows[(np.isfinite(rows) & (rows > 0) & (rows <= 1)).all(axis=1)]


def _histogram(p: OperatingPoint) -> tuple[np.ndarray, list[list[int]]] | None:
    """Bin edges and the genuine and impostor counts, when they are a histogram (edges rising, one count more)."""
    c = p.curve
    if c is None or not 1 < len(c.edges) <= MAX_POINTS or not len(c.genuine) == len(c.impostor) == len(c.edges) - 1:
        return None
    edges = np.array(c.edges, dtype=float)
    if not np.isfinite(edges).all() or np.abs(edges).max() > 1e6 or (np.diff(edges) <= 0).any() \
            or min(c.genuine + c.impostor) < 0:
        return None
    return edges, [c.genuine, c.impostor]


def _figure(title: str, p: OperatingPoint, points: np.ndarray, thresholds: list[tuple[float, float]]) -> str:
    """DET curve (log axes) beside the genuine and impostor score histograms with each threshold marked."""
    fig = Figure(figsize=(8.4, 3.2), dpi=110)
    det, hist = fig.subplots(1, 2)
    det.plot(points[:, 0], points[:, 1], marker=".", color="#2c7fb8")
    det.set_xscale("log")
    det.set_yscale("log")
    det.set_xlabel("FMR (impostor pairs accepted)")
    det.set_ylabel("FNMR (genuine pairs rejected)")
    det.set_title("DET, clean calibration faces", fontsize=9)
    det.grid(True, which="both", alpha=0.3)
    found = _histogram(p)
    if found is None:
        hist.set_axis_off()
    else:
        edges, (genuine, impostor) = found
        width = np.diff(edges)
        for counts, colour, label in ((genuine, "#1a9850", "genuine"), (impostor, "#d73027", "impostor")):
            hist.bar(edges[:-1], np.array(counts, dtype=float) / max(sum(counts), 1) / width, width=width,
                     align="edge", alpha=0.5, color=colour, label=label)
        for fmr, t in thresholds:
            if np.isfinite(t) and edges[0] <= t <= edges[-1]:
                hist.axvline(t, color="black", linestyle="--", linewidth=1)
                hist.annotate(f"FMR {fmr:g}", (t, hist.get_ylim()[1] * 0.95), fontsize=7, rotation=90, ha="right",
                              va="top")
        hist.set_xlabel("similarity (higher = more alike)")
        hist.set_ylabel("density")
        hist.set_title("clean scores, thresholds dashed", fontsize=9)
        hist.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return figure_uri(fig)
