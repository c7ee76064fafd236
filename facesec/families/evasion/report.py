"""The evasion section of the report (pixel and accessory runs): the gallery of clean and attacked faces, print
files, the matrix cell's details, the legends for transfer and query runs, and the eps and query sweeps."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facesec.families.base import SuiteFigure
from facesec.families.evasion.words import queries
from facesec.record import RunRecord
from facesec.redaction import redact_face
from facesec.report import figures
from facesec.report.fields import DASH, as_dict, as_list, family_of, fixed, fmt, interval, number, text
from facesec.report.links import Link, link

DIMENSION_KEYS = ("recognizer", "perturbation", "knowledge", "goal", "capability", "setting", "attack")
_BUDGET_TOKEN = re.compile(r"(eps=)?\d*\.?\d+(e-?\d+)?(/\d*\.?\d+)?", re.IGNORECASE)


@dataclass
class PrintFile:
    """One printable accessory of a run: its label and links to the PNG, the upscaled print PNG and the mask."""

    label: str
    png: Link
    print_png: Link
    mask_png: Link


@dataclass
class GalleryItem:
    """One gallery row: clean | adversarial | amplified perturbation or accessory alone | similarity before -> after."""

    identity: str
    target: str | None
    clean: str | None
    adversarial: str | None
    perturbation: str | None
    amplification: str
    similarity_before: str
    similarity_after: str
    success: bool | None
    clean_success: bool = False
    """Already fooled by the clean face: not attempted, so neither fooled nor resisted by the attack."""
    accessory: str | None = None
    """The accessory alone (RGBA, transparent outside its region); never redacted, it is not a face."""


def view(run: RunRecord, results_dir: Path, out_dir: Path, redact: bool) -> dict[str, Any]:
    """What the evasion partial shows: the gallery, the print files and the threshold beside the similarities."""
    family = family_of(run)
    accessory = family is not None and family.name == "accessory"
    threshold = number(run.metrics.get("threshold"))
    return {
        "accessory": accessory,
        "gallery": [gallery_item(as_dict(item), results_dir, redact, accessory) for item in as_list(run.gallery)],
        "print_files": [PrintFile(text(as_dict(f).get("label")),
                                  *(link(as_dict(f).get(k), results_dir, out_dir) for k in ("png", "print_png",
                                                                                            "mask_png")))
                        for f in as_list(run.extra("print_files"))],
        "threshold": "" if threshold is None else f"{threshold:.3f}",
    }


def gallery_item(item: dict[str, Any], results_dir: Path, redact: bool, accessory: bool) -> GalleryItem:
    """One gallery row; only faces are redacted, and an accessory (its own image, no factor) is never amplified."""
    clean = figures.load_image(results_dir, item.get("clean"))
    adversarial = figures.load_image(results_dir, item.get("adversarial"))
    worn = figures.load_image(results_dir, item.get("accessory"), mode="RGBA") if accessory else None
    perturbation = None if accessory else figures.load_image(results_dir, item.get("perturbation"))
    amplified = None if accessory else figures.amplified_perturbation(perturbation, clean, adversarial)
    if redact:
        clean = redact_face(clean) if clean is not None else None
        adversarial = redact_face(adversarial) if adversarial is not None else None
    success, target = item.get("success"), item.get("target")
    return GalleryItem(
        identity=text(item.get("identity")),
        target=None if target is None or (isinstance(target, float) and math.isnan(target)) else text(target),
        clean=figures.png_data_uri(clean) if clean is not None else None,
        adversarial=figures.png_data_uri(adversarial) if adversarial is not None else None,
        perturbation=figures.png_data_uri(amplified[0]) if amplified is not None else None,
        amplification=f"×{amplified[1]:.0f}" if amplified is not None and amplified[1] >= 1.5 else "",
        similarity_before=fixed(item.get("similarity_before")),
        similarity_after=fixed(item.get("similarity_after")),
        success=success if isinstance(success, bool) else None,
        clean_success=item.get("clean_success") is True,
        accessory=figures.png_data_uri(worn) if worn is not None else None,
    )


def suite_figures(runs: list[RunRecord]) -> list[SuiteFigure]:
    """ASR against eps for runs that differ only in eps, and ASR against queries for query runs."""
    found = [SuiteFigure(title, uri, "Attack success vs perturbation budget",
                         "Runs that differ only in eps; error bars are 95% intervals resampling the attacked people "
                         "(Wilson's where a run records no such interval); dashed lines are "
                         "random noise of the same budget.", "eps-asr-plot") for title, uri in sweeps(runs)]
    plot = queries_plot(runs)
    if plot is not None:
        found.append(SuiteFigure("ASR against queries", plot, "Attack success against queries",
                                 "Query runs: the share of attacked faces fooled within the first n queries to the "
                                 "target, n on a log scale; each line ends at its query budget.", "queries-asr-plot"))
    return found


def _dims(run: RunRecord) -> dict[str, str]:
    return run.dimensions.model_dump() if run.dimensions is not None else {}


def queries_plot(runs: list[RunRecord]) -> str | None:
    """ASR against queries, one line per run with `asr_at_queries`, labelled by its other dimensions; None if none.
    The knowledge text (output, budget) joins the labels only where it tells the lines apart."""
    found = []
    for run in runs:
        reached = [(n, asr) for n, asr in queries(run.metrics.get("asr_at_queries")) if asr is not None]
        if reached:
            found.append((_dims(run), reached))
    if not found:
        return None
    knowledge_varies = len({text(dims.get("knowledge")) for dims, _ in found}) > 1
    keys = [k for k in DIMENSION_KEYS if k != "knowledge" or knowledge_varies]
    lines = [figures.QueryLine(" · ".join(text(dims.get(k)) for k in keys), [n for n, _ in reached],
                               [asr for _, asr in reached]) for dims, reached in found]
    return figures.queries_asr_plot("ASR against queries", lines)


def sweeps(runs: list[RunRecord]) -> list[tuple[str, str]]:
    """One eps-vs-ASR plot per perturbation kind where runs differ only in eps: (title, data URI). Runs without
    a budget (accessories: eps is null) have no place on an eps axis and are left out."""
    by_kind: dict[str, list[tuple[figures.SweepLine, dict[str, Any]]]] = {}
    for (kind, _, _), (line, attack) in _sweep_lines(runs).items():
        if len(set(line.eps)) >= 2:
            order = sorted(range(len(line.eps)), key=line.eps.__getitem__)
            for attr in ("eps", "asr", "ci_low", "ci_high", "noise"):
                values = getattr(line, attr)
                setattr(line, attr, [values[i] for i in order])
            by_kind.setdefault(kind, []).append((line, attack))
    plots = []
    for kind, members in by_kind.items():
        # Attack settings join the legend only where they tell this kind's lines apart.
        keys = sorted({k for _, attack in members for k in attack})
        varying = [k for k in keys if len({json.dumps(a.get(k), default=str) for _, a in members}) > 1]
        for line, attack in members:
            if varying:
                line.label += " · " + ", ".join(f"{k}={fmt(attack.get(k))}" for k in varying)
        lines = [line for line, _ in members]
        plots.append((kind, figures.eps_asr_plot(f"ASR vs eps: {kind}", lines, in_255ths="linf" in kind)))
    return plots


def _sweep_lines(runs: list[RunRecord]) -> dict[tuple[str, str, str], tuple[figures.SweepLine, dict[str, Any]]]:
    """The runs with a budget and an ASR, one line per (perturbation without its budget, other dimensions,
    attack settings)."""
    groups: dict[tuple[str, str, str], tuple[figures.SweepLine, dict[str, Any]]] = {}
    for run in runs:
        eps, metrics = number(run.eps), run.metrics
        asr = number(metrics.get("attack_success_rate"))
        if eps is None or asr is None:
            continue
        dims = _dims(run)
        kind = " ".join(t for t in text(dims.get("perturbation")).split() if not _BUDGET_TOKEN.fullmatch(t))
        label = " · ".join(text(dims.get(k)) for k in DIMENSION_KEYS if k != "perturbation")
        attack = {k: v for k, v in as_dict(as_dict(run.threat_model).get("attack")).items() if k != "step_size"}
        key = (kind or DASH, label, json.dumps(attack, sort_keys=True, default=str))
        line = groups.setdefault(key, (figures.SweepLine(label), attack))[0]
        bounds = [number(b) for b in as_list(interval(metrics, "attack_success_rate"))]
        low, high = (bounds[0], bounds[1]) if len(bounds) == 2 else (None, None)
        noise = number(metrics.get("noise_success_rate"))
        line.eps.append(eps)
        line.asr.append(asr)
        line.ci_low.append(asr if low is None else low)
        line.ci_high.append(asr if high is None else high)
        line.noise.append(math.nan if noise is None else noise)
    return groups
