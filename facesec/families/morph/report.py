"""The morph section of the report: a plain-language reading, metrics at each FMR, the mated-morph scatter,
MMPMR against FMR, the MAP heat map and the pairs (contributor A, morph, contributor B); built from results.json."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from facesec.families.base import SuiteFigure
from facesec.record import RunRecord
from facesec.report import figures
from facesec.report.fields import as_dict, as_list, interval, number, rate_text

COLUMNS = (("mmpmr", "MMPMR"), ("mmpmr_first_probe", "MMPMR, first probe"), ("fmmpmr", "FMMPMR"), ("rmmr", "RMMR"),
           ("rmmr_best_of_n", "RMMR, best of N genuine"), ("no_morph_mmpmr", "no-morph MMPMR"),
           ("genuine_accept_rate", "genuine accept"), ("genuine_accept_rate_best_of_n", "genuine accept, best of N"),
           ("impostor_accept_rate", "impostor accept (FMR seen)"), ("threshold", "threshold"))
"""The per-FMR table's columns: key in results.json and heading."""


def view(run: RunRecord, results_dir: Path, out_dir: Path, redact: bool) -> dict[str, Any]:
    """Everything the morph partial shows; every field may be missing from a hand-edited results.json."""
    metrics = run.metrics
    morph = as_dict(run.extra("morph"))
    at_fmr = as_dict(metrics.get("at_fmr"))
    setting = as_dict(as_dict(run.threat_model).get("setting"))
    headline_fmr = setting.get("fmr")
    return {
        "reading": _reading(metrics, headline_fmr),
        "table": [(fmr, [_fmt(as_dict(row).get(key)) for key, _ in COLUMNS],
                   as_dict(row).get("fmr_supported") is not False) for fmr, row in at_fmr.items()],
        "columns": [label for _, label in COLUMNS],
        "by_recognizer": [(name, [(fmr, _fmt(as_dict(row).get("mmpmr")), _fmt(as_dict(row).get("fmmpmr")))
                                  for fmr, row in as_dict(rows).items()])
                          for name, rows in as_dict(metrics.get("by_recognizer")).items()],
        "scatter": _scatter(morph),
        "mmpmr_fmr": _mmpmr_against_fmr(as_dict(metrics.get("by_recognizer"))),
        "map": [(fmr, _map_plot(fmr, as_dict(doc))) for fmr, doc in as_dict(metrics.get("map")).items()],
        "pairs": [_pair(as_dict(g), results_dir, redact) for g in as_list(run.gallery)],
        "detector": _detector(metrics, as_dict(run.extra("detector_training")),
                              as_dict(as_dict(run.threat_model).get("perturbation")).get("method")),
    }


DETECTED = (("", "{method} morphs"), ("_non_adaptive", "optimised without the detector"),
            ("_landmark", "landmark morphs the optimisation started from"),
            ("_worst_case", "each pair's best of the three (the attacker's choice)"))
"""The kinds of morph a run shows the detector, by the suffix of their metrics."""


def _detector(metrics: dict[str, Any], training: dict[str, Any], method: Any) -> dict[str, Any] | None:
    """The detector in the loop: per kind of morph, APCER, D-EER and MMPMR past it; BPCER and where its threshold
    came from. None for a run without one."""
    if number(metrics.get("mad_threshold")) is None:
        return None
    aware = "mad_apcer_non_adaptive" in metrics
    made = "optimised, detection-aware" if aware else method if method in ("landmark", "optimised", "gan") \
        else "the run's"

    def shown(key: str) -> str:
        return rate_text({"rate": metrics.get(key), "ci95_cluster": interval(metrics, key)})

    rows = [(words.format(method=made), shown(f"mad_apcer{s}"), _fmt(metrics.get(f"mad_deer{s}")),
             shown(f"mmpmr_past_detector{s}")) for s, words in DETECTED
            if f"mad_apcer{s}" in metrics or f"mmpmr_past_detector{s}" in metrics]
    people = training.get("fit_people"), training.get("threshold_people")
    fitted = (f"fitted on {people[0]} people's bona fide photos and {training.get('morphs', '?')} morphs among them; "
              f"threshold set on {people[1]} other people to flag {_fmt(training.get('bpcer_target'))} of their "
              "bona fide presentations") if all(isinstance(n, int) for n in people) else ""
    return {"rows": rows, "bpcer": shown("mad_bpcer"), "fitted": fitted}


def _reading(metrics: dict[str, Any], fmr: Any) -> str:
    """One sentence an auditor can quote."""
    mmpmr, n = metrics.get("mmpmr"), metrics.get("n_morphs")
    if not isinstance(mmpmr, int | float) or not isinstance(n, int):
        return ""
    base = metrics.get("no_morph_mmpmr")
    than = (f", against {base:.0%} when A simply enrols their own, unmorphed photo"
            if isinstance(base, int | float) else "")
    at = f"FMR {fmr:g}" if isinstance(fmr, int | float) else "the calibrated FMR"
    alone = metrics.get("mmpmr_ignoring_detector")
    if isinstance(alone, int | float):  # a detector in the loop: MMPMR counts what also gets past it
        return (f"At the threshold this system would use ({at}), with its morphing-attack detector, {mmpmr:.0%} of "
                f"{n} pairs get a morph past the detector that lets both people through (each verified with their "
                f"own photo); the recognizer alone lets both through for {alone:.0%} of the run's morphs.")
    return (f"At the threshold this system would use ({at}), {mmpmr:.0%} of {n} morphs let both people through "
            f"(each verified with their own photo){than}.")


def _scatter(morph: dict[str, Any]) -> str | None:
    """S(morph, A) against S(morph, B) with each FMR's threshold as lines: the top-right corner is both accepted."""
    pairs = [p for p in as_list(morph.get("scores")) if isinstance(p, list) and len(p) == 2]
    pts = np.array([[_num(a), _num(b)] for a, b in pairs], dtype=float).reshape(-1, 2)
    pts = pts[np.isfinite(pts).all(1)]  # not enrolled (null) or malformed: not plotted
    thresholds = {k: v for k, v in as_dict(morph.get("thresholds")).items()
                  if _is_float(k) and math.isfinite(_num(v))}
    if not len(pts):
        return None
    fig = Figure(figsize=(4.4, 4.0))
    ax = fig.add_subplot()
    ax.scatter(pts[:, 0], pts[:, 1], s=14, color="#2b6cb0", label="morphs")
    for (fmr, t), style in zip(sorted(thresholds.items(), key=lambda kv: float(kv[0]), reverse=True),
                               ("--", ":", "-."), strict=False):
        ax.axvline(t, color="#c53030", linestyle=style, linewidth=1, label=f"threshold at FMR {fmr}")
        ax.axhline(t, color="#c53030", linestyle=style, linewidth=1)
    ax.set_xlabel("similarity to contributor A's best probe")
    ax.set_ylabel("similarity to contributor B's best probe")
    ax.set_title("Mated-morph scores (both above the line: accepted)", fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    return figures.figure_uri(fig)


def _mmpmr_against_fmr(by_recognizer: dict[str, Any]) -> str | None:
    """MMPMR (and FMMPMR) at each FMR, one line per recognizer."""
    lines = []
    for name, rows in by_recognizer.items():
        pts = sorted((float(f), _num(as_dict(r).get("mmpmr")), _num(as_dict(r).get("fmmpmr")))
                     for f, r in as_dict(rows).items() if _is_float(f))
        if len(pts) >= 2:
            lines.append((name, pts))
    if not lines:
        return None
    fig = Figure(figsize=(4.4, 3.2))
    ax = fig.add_subplot()
    for name, pts in lines:
        x = [p[0] for p in pts]
        ax.plot(x, [p[1] for p in pts], marker="o", label=f"{name} MMPMR")
        ax.plot(x, [p[2] for p in pts], marker=".", linestyle="--", label=f"{name} FMMPMR")
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    ax.set_xlabel("FMR the threshold is set at")
    ax.set_ylabel("rate")
    ax.set_title("Morph acceptance against the operating point", fontsize=9)
    ax.legend(fontsize=7)
    return figures.figure_uri(fig)


def _map_plot(fmr: str, doc: dict[str, Any]) -> str | None:
    """The MAP matrix as a heat map: rows r (attempts), columns c (recognizers)."""
    try:
        matrix = np.array(as_list(doc.get("matrix")), dtype=float)
    except (TypeError, ValueError):  # ragged or not numbers: nothing to draw
        return None
    if matrix.ndim != 2 or not matrix.size:
        return None
    fig = Figure(figsize=(1.6 + 0.9 * matrix.shape[1], 1.2 + 0.45 * matrix.shape[0]))
    ax = fig.add_subplot()
    ax.imshow(matrix, vmin=0, vmax=1, cmap="RdYlGn_r", aspect="auto")
    for (r, c), v in np.ndenumerate(matrix):
        ax.text(c, r, "—" if math.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(matrix.shape[1]), [f"≥{c + 1}" for c in range(matrix.shape[1])])
    ax.set_yticks(range(matrix.shape[0]), [f"≥{r + 1}" for r in range(matrix.shape[0])])
    ax.set_xlabel("recognizers fooled (c)")
    ax.set_ylabel("attempts accepted (r)")
    names = ", ".join(str(n) for n in as_list(doc.get("recognizers")))
    ax.set_title(f"MAP at FMR {fmr} ({names})", fontsize=8)
    return figures.figure_uri(fig)


def _pair(g: dict[str, Any], results_dir: Path, redact: bool) -> dict[str, Any]:
    images = figures.face_uris(results_dir, g, ("a", "morph", "b"), redact)
    return {**images, "contributor_a": str(g.get("contributor_a", "")),
            "contributor_b": str(g.get("contributor_b", "")),
            "score_a": _fmt(g.get("score_a")), "score_b": _fmt(g.get("score_b")),
            "accepted": g.get("accepted") if isinstance(g.get("accepted"), bool) else None,
            "enrolled": g.get("enrolled") is not False}


def suite_figures(runs: list[RunRecord]) -> list[SuiteFigure]:
    """MMPMR against alpha, one line per (recognizer, method, pairing) with runs at two or more alphas."""
    lines: dict[str, list[tuple[float, float]]] = {}
    for run in runs:
        morph, metrics = as_dict(run.extra("morph")), run.metrics
        alpha, mmpmr = morph.get("alpha"), metrics.get("mmpmr")
        if isinstance(alpha, int | float) and isinstance(mmpmr, int | float):
            dims = as_dict(run.dimensions.model_dump() if run.dimensions else None)
            key = f"{dims.get('recognizer', '?')} · {morph.get('method', '?')} · {morph.get('pairing', '?')} pairs"
            lines.setdefault(key, []).append((float(alpha), float(mmpmr)))
    lines = {k: sorted(v) for k, v in lines.items() if len({a for a, _ in v}) >= 2}
    if not lines:
        return []
    fig = Figure(figsize=(5.2, 3.2))
    ax = fig.add_subplot()
    for label, pts in lines.items():
        ax.plot([a for a, _ in pts], [m for _, m in pts], marker="o", label=label)
    ax.set_ylim(0, 1)
    ax.set_xlabel("alpha (contributor B's weight)")
    ax.set_ylabel("MMPMR")
    ax.legend(fontsize=7)
    return [SuiteFigure("MMPMR against alpha", figures.figure_uri(fig))]


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return "—"
    return f"{value:.3g}"


def _num(value: Any) -> float:
    """A rate from results.json; NaN (a gap in the line) when missing."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan


def _is_float(text: Any) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True
