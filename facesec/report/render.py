"""Turn results.json into one self-contained HTML file an auditor can read in five minutes.

The view model below is plain data built from results.json alone; every optional field may be
missing (shown as a dash), and every string reaches the page through Jinja2's autoescaping.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader

from facesec import families, safe_json
from facesec.errors import ConfigError
from facesec.plugins import FAMILIES
from facesec.report import figures, summary
from facesec.report.fields import as_dict, as_list, family_of, number
from facesec.results import SCHEMA_VERSION
from facesec.suite_files import write_atomic

DASH = "—"
MATRIX_ROW_KEYS = ("recognizer", "perturbation", "knowledge", "setting", "attack")
MATRIX_COLUMN_KEYS = ("goal", "capability")
DIMENSION_KEYS = ("recognizer", "perturbation", "knowledge", "goal", "capability", "setting", "attack")
_BUDGET_TOKEN = re.compile(r"(eps=)?\d*\.?\d+(e-?\d+)?(/\d*\.?\d+)?", re.IGNORECASE)
_GREEN, _YELLOW, _RED = (26, 152, 80), (254, 224, 139), (215, 48, 39)
MATRIX_QUERY_MARK = 100
"""A query cell shows the ASR after the largest recorded query count up to this, beside the final one."""


@dataclass
class Row:
    """One line of a two-column table: a label, its formatted value, and the key behind a readable label."""

    key: str
    value: str
    note: str = ""


@dataclass
class Gate:
    """A gate (or a baseline rule) with what was required, what the run reached, and the verdict."""

    run: str
    metric: str
    required: str
    actual: str
    passed: bool | None
    anchor: str = ""
    note: str = ""


@dataclass
class Flag:
    """A validity warning of one run (e.g. 'attack or gradients broken')."""

    run: str
    anchor: str
    text: str


@dataclass
class Link:
    """A file named in results.json: its text, the link from the report (None: not linkable), whether it exists."""

    text: str
    href: str | None
    found: bool


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


@dataclass
class RunView:
    """Everything the per-run section shows."""

    index: int
    anchor: str
    name: str
    source: str
    asr: str
    dimensions: list[Row]
    metrics: list[Row]
    validity: list[Row] | None
    flags: list[str]
    gates: list[Gate]
    gallery: list[GalleryItem] | None
    provenance: list[Row] | None
    samples: Link
    threat_model: str | None
    accessory: bool = False
    print_files: list[PrintFile] = field(default_factory=list)
    knowledge: str = ""
    """The attacker's knowledge kind: white-box, transfer or query (empty when results.json does not say)."""
    headline_label: str = "ASR"
    """What `asr` holds: the attack success rate, or the family's own headline (MMPMR for morphs)."""
    partial: str | None = None
    """The family's own template for the rest of the run's section (None: the evasion gallery)."""
    view: dict[str, Any] = field(default_factory=dict)
    """What the family's partial shows."""
    threshold: str = ""
    """The verification threshold on the similarity scale (open set), shown beside the gallery's similarities."""

    @property
    def failed(self) -> bool:
        """True when a gate of this run did not pass (failed, or carries no verdict)."""
        return any(g.passed is not True for g in self.gates)


@dataclass
class MatrixEntry:
    """One run inside a matrix cell."""

    anchor: str
    name: str
    text: str
    flagged: bool
    failed: bool
    detail: str = ""
    """A second line under the ASR: an accessory run's plain-accessory and fresh-transform success, a transfer
    run's success on its surrogate(s), a query run's success after a few queries; joined when several apply."""


@dataclass
class MatrixCell:
    """A (row, column) cell: its runs and the colour of its worst ASR."""

    entries: list[MatrixEntry] = field(default_factory=list)
    worst: float | None = None

    @property
    def style(self) -> str:
        """Background and text colour for the cell's highest ASR."""
        return asr_style(self.worst)


@dataclass
class Matrix:
    """Threat-model matrix: rows (recognizer, perturbation, knowledge, setting, attack) x columns (goal, capability)."""

    columns: list[tuple[str, ...]]
    rows: list[tuple[tuple[str, ...], list[MatrixCell]]]


@dataclass
class Report:
    """The whole page."""

    suite: str
    created: str
    facesec_version: str
    n_runs: int
    verdict: str
    failed: list[Gate]
    flags: list[Flag]
    unchecked: list[str]
    matrix: Matrix
    row_keys: tuple[str, ...]
    sweeps: list[tuple[str, str]]
    queries_plot: str | None
    runs: list[RunView]
    baseline_path: str | None
    baseline: list[Gate] | None
    redacted: bool
    legends: list[tuple[str, str]] = field(default_factory=list)
    """Each family's sentence on what its matrix cells show: (kind, text), in the order its runs come."""
    has_transfer: bool = False
    has_query: bool = False
    family_figures: list[tuple[str, str]] = field(default_factory=list)
    """Figures across runs of one family (MMPMR against alpha ...): (title, data URI)."""
    headlines: list[tuple[str, str]] = field(default_factory=list)
    """Per distinct headline of the runs: its label and what it means (from the family's metrics)."""
    gates_held: int = 0
    gates_total: int = 0
    findings: list[summary.Finding] = field(default_factory=list)
    ratings: list[summary.Rating] = field(default_factory=list)
    glossary: list[summary.Term] = field(default_factory=list)
    cutoffs: str = summary.CUTOFF_TEXT
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    """(runs, image, reason) of every image the runs skipped, once each."""


def render_report(results_path: Path, out_path: Path | None = None, redact: bool = False) -> Path:
    """Write the HTML report of `results_path` (default: index.html beside it) and return its path."""
    results_path = Path(results_path)
    out = Path(out_path) if out_path is not None else results_path.parent / "index.html"
    results = load_results(results_path)
    report = build_report(results, results_path.parent, out.parent, redact)
    html = _environment(results.get("runs") or []).get_template("report.html.j2").render(r=report, dash=DASH)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, html)  # replaced whole; names that are not valid UTF-8 stay visible
    return out


def load_results(path: Path) -> dict[str, Any]:
    """The results.json mapping; ConfigError naming the file when it is missing or not results."""
    try:
        doc = safe_json.load(path)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found (write it with `facesec run`)") from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable results.json ({exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("runs", []), list):
        raise ConfigError(f"{path}: not a results.json (expected a mapping with a 'runs' list)")
    version = doc.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise ConfigError(f"{path}: schema_version {version!r} is not supported; this facesec reads "
                          f"{SCHEMA_VERSION} (render it with the facesec version that wrote it)")
    return doc


def build_report(results: dict[str, Any], results_dir: Path, out_dir: Path, redact: bool) -> Report:
    """The view model of the page; image paths resolve against `results_dir`, links against `out_dir`."""
    raw_runs = [run if isinstance(run, dict) else {} for run in results.get("runs") or []]
    runs = [_run_view(i, run, results_dir, out_dir, redact) for i, run in enumerate(raw_runs)]
    baseline_doc = as_dict(results.get("baseline"))
    baseline = [_baseline_rule(rule, runs) for rule in as_list(baseline_doc.get("rules"))] if baseline_doc else None
    all_gates = [g for run in runs for g in run.gates] + (baseline or [])
    failed = [g for g in all_gates if g.passed is not True]  # as facesec.gates: no verdict is no pass
    verdict = "FAIL" if failed else ("PASS" if all_gates else "NO GATES")
    return Report(
        suite=_text(results.get("suite")),
        created=_text(results.get("created")),
        facesec_version=_text(results.get("facesec_version")),
        n_runs=len(runs),
        verdict=verdict,
        failed=failed,
        flags=[Flag(run.name, run.anchor, flag) for run in runs for flag in run.flags],
        unchecked=[run.name for run in runs if run.validity is None],
        matrix=_matrix(raw_runs, runs),
        row_keys=MATRIX_ROW_KEYS,
        sweeps=_sweeps(raw_runs),
        family_figures=_family_figures(raw_runs),
        queries_plot=_queries_plot(raw_runs),
        runs=runs,
        baseline_path=_text(baseline_doc.get("path")) if baseline_doc else None,
        baseline=baseline,
        redacted=redact,
        legends=_legends(raw_runs),
        has_transfer=any(run.knowledge == "transfer" for run in runs),
        has_query=any(run.knowledge == "query" for run in runs),
        headlines=_headlines(raw_runs, runs),
        gates_held=len(all_gates) - len(failed),
        gates_total=len(all_gates),
        findings=summary.findings(raw_runs),
        ratings=summary.ratings(raw_runs),
        glossary=summary.glossary(raw_runs),
        skipped=_skipped(raw_runs, runs),
    )


def _skipped(raw_runs: list[dict[str, Any]], runs: list[RunView]) -> list[tuple[str, str, str]]:
    """Each skipped image once, with its reason and the runs that skipped it."""
    seen: dict[tuple[str, str], list[str]] = {}
    for raw, run in zip(raw_runs, runs, strict=True):
        for item in as_list(raw.get("skipped_images")):
            key = (_text(as_dict(item).get("path")), _text(as_dict(item).get("reason")))
            seen.setdefault(key, []).append(run.name)
    return [(", ".join(names) if len(names) < 4 else f"{len(names)} runs", path, reason)
            for (path, reason), names in seen.items()]


def _headlines(raw_runs: list[dict[str, Any]], runs: list[RunView]) -> list[tuple[str, str]]:
    """Each distinct headline once, with its meaning as the run's family declares it (an uninstalled
    family's headline is shown without one)."""
    out: dict[str, str] = {}
    for raw, run in zip(raw_runs, runs, strict=True):
        metric = _text(as_dict(raw.get("headline")).get("metric")) or "attack_success_rate"
        family = _text(raw.get("family")) or "pixel"
        info = families.get(family).metrics.get(metric) if family in FAMILIES else None
        text = (info.meaning or info.label or "") if info is not None else ""
        if info is not None and info.better == "lower":
            text += ", with its 95% confidence interval: lower is more robust"
        out.setdefault(run.headline_label, text)
    return list(out.items())


def fmt(value: Any) -> str:
    """A results value as text: numbers to 4 significant digits, None as a dash."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def fmt_asr(asr: Any, ci: Any) -> str:
    """'0.97 [0.90–0.99]': the attack success rate with its 95% confidence interval."""
    rate = number(asr)
    if rate is None:
        return DASH
    bounds = [number(b) for b in as_list(ci)]
    if len(bounds) == 2 and bounds[0] is not None and bounds[1] is not None:
        return f"{rate:.2f} [{bounds[0]:.2f}–{bounds[1]:.2f}]"
    return f"{rate:.2f}"


def asr_style(asr: float | None) -> str:
    """CSS colours of a matrix cell: green (robust, low ASR) through yellow to red, readable text."""
    if asr is None:
        return "background:#eeeeee;color:#555555"
    t = min(max(asr, 0.0), 1.0)
    lo, hi, u = (_GREEN, _YELLOW, t * 2) if t < 0.5 else (_YELLOW, _RED, t * 2 - 1)
    rgb = tuple(round(a + (b - a) * u) for a, b in zip(lo, hi, strict=True))
    luminance = _luminance(rgb)
    text = "#000000" if (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) else "#ffffff"
    return f"background:#{rgb[0]:02x}{rgb[1]:02x}{rgb[2]:02x};color:{text}"


def _luminance(rgb: tuple[int, ...]) -> float:
    """WCAG relative luminance, to pick black or white text on a cell."""
    lin = [(c / 255) / 12.92 if c / 255 <= 0.03928 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def _run_view(index: int, run: dict[str, Any], results_dir: Path, out_dir: Path, redact: bool) -> RunView:
    name = _text(run.get("name"), f"run {index + 1}")
    metrics = as_dict(run.get("metrics"))
    validity = run.get("validity")
    validity_doc = as_dict(validity)
    threat_model = run.get("threat_model")
    gallery = run.get("gallery")
    accessory = _is_accessory(run)
    family = family_of(run)
    headline = _text(as_dict(run.get("headline")).get("metric"), "attack_success_rate")
    partial = family.report_partial if family is not None else None
    labels = {k: info.label for k, info in family.metrics.items() if info.label} if family is not None else {}
    return RunView(
        index=index,
        anchor=f"run-{index + 1}",
        name=name,
        source=_text(run.get("source")),
        asr=fmt_asr(metrics.get(headline), metrics.get(f"{headline}_ci95", metrics.get("attack_success_ci95"))),
        dimensions=_dimension_rows(as_dict(run.get("dimensions")), run.get("eps")),
        metrics=[_metric_row(str(k), v, labels) for k, v in metrics.items()
                 if partial is None or not isinstance(v, dict)],  # a family's partial shows its nested metrics
        validity=[Row(str(k), fmt(v)) for k, v in validity_doc.items() if k != "flags"]
        if isinstance(validity, dict) else None,
        flags=[_text(f) for f in as_list(validity_doc.get("flags"))],
        gates=[_gate(name, f"run-{index + 1}", g) for g in as_list(run.get("gates"))],
        gallery=[_gallery_item(item, results_dir, redact, accessory) for item in gallery if isinstance(item, dict)]
        if isinstance(gallery, list) and partial is None else None,
        provenance=_provenance_rows(run["provenance"]) if isinstance(run.get("provenance"), dict) else None,
        samples=_link(run.get("samples_csv"), results_dir, out_dir),
        threat_model=json.dumps(threat_model, indent=2, sort_keys=True) if threat_model is not None else None,
        accessory=accessory,
        print_files=[_print_file(as_dict(f), results_dir, out_dir) for f in as_list(run.get("print_files"))],
        knowledge=_knowledge_kind(run),
        headline_label="ASR" if headline == "attack_success_rate" else _text(as_dict(run.get("headline")).get("label")),
        partial=partial,
        view=family.report_view(run, results_dir, redact) if family is not None and partial is not None else {},
        threshold=_threshold_text(metrics.get("threshold")),
    )


def _threshold_text(value: Any) -> str:
    """The verification threshold on the similarity scale, as shown beside similarities (empty: none recorded)."""
    value = number(value)
    return "" if value is None else f"{value:.3f}"


def _legends(runs: list[Any]) -> list[tuple[str, str]]:
    """(kind, legend) of each family these runs belong to that has one, once, in the order the runs come."""
    found: dict[str, str] = {}
    for run in runs:
        family = family_of(run) if isinstance(run, dict) else None
        if family is not None and family.legend and family.name not in found:
            found[family.name] = family.legend
    return list(found.items())


def _is_accessory(run: dict[str, Any]) -> bool:
    """An accessory run (eyeglasses, sticker, face mask): by its threat model, else by its perturbation text."""
    kind = as_dict(as_dict(run.get("threat_model")).get("perturbation")).get("kind")
    if kind is None:
        kind = next(iter(_text(as_dict(run.get("dimensions")).get("perturbation"), "").split()), None)
    return kind == "accessory"


def _knowledge_kind(run: dict[str, Any]) -> str:
    """white-box, transfer or query: by the threat model, else by the first word of the knowledge text."""
    knowledge = as_dict(run.get("threat_model")).get("knowledge")
    kind = knowledge if isinstance(knowledge, str) else as_dict(knowledge).get("kind")
    if kind is None:
        kind = next(iter(_text(as_dict(run.get("dimensions")).get("knowledge"), "").split()), None)
    return kind if isinstance(kind, str) else ""


def _metric_row(key: str, value: Any, labels: dict[str, str]) -> Row:
    """A metric, labelled in words by its family with the key (what gates name) kept beneath."""
    label = labels.get(key)
    reached = _queries(value) if key in ("asr_at_queries", "linf_at_queries") else []
    show = _rate if key == "asr_at_queries" else _distance
    text = " · ".join(f"{n}:\u00a0{show(v)}" for n, v in reached) if reached else fmt(value)  # no break in a pair
    return Row(label, text, key) if label and label != key else Row(key, text)


def _distance(value: float | None) -> str:
    return DASH if value is None else f"{value:.4g}"


def _queries(value: Any) -> list[tuple[int, float | None]]:
    """`asr_at_queries` (or `linf_at_queries`) as (queries, value) pairs in increasing query order; keys
    that are not counts >= 1 are dropped."""
    pairs = [(int(k), number(v)) for k, v in as_dict(value).items() if k.isdecimal() and int(k) > 0]
    return sorted(pairs, key=lambda pair: pair[0])


def _print_file(doc: dict[str, Any], results_dir: Path, out_dir: Path) -> PrintFile:
    """One `print_files` entry, its paths (relative to results.json) as links from the report."""
    return PrintFile(_text(doc.get("label")), *(_link(doc.get(k), results_dir, out_dir)
                                                 for k in ("png", "print_png", "mask_png")))


def _dimension_rows(dims: dict[str, Any], eps: Any) -> list[Row]:
    """The six dimensions, any extra ones, and eps (also in 255ths for L-inf, the way budgets are quoted)."""
    keys = list(DIMENSION_KEYS) + [k for k in dims if k not in DIMENSION_KEYS]
    rows = [Row(k, _text(dims.get(k))) for k in keys]
    budget = number(eps)
    if budget is None:
        return rows if eps is None else rows + [Row("eps", fmt(eps))]
    in_255ths = f" ({budget * 255:.3g}/255)" if "linf" in _text(dims.get("perturbation")) else ""
    return rows + [Row("eps", f"{budget:.4g}{in_255ths}")]


def _gate(run: str, anchor: str, gate: Any) -> Gate:
    """A gate as facesec.gates evaluated it; the verdict is read, never recomputed, so the two cannot disagree."""
    doc = as_dict(gate)
    required = f"{_text(doc.get('op'), '?')} {fmt(doc.get('value'))}"
    return Gate(run, _text(doc.get("metric")), required, fmt(doc.get("actual")), _passed(doc), anchor,
                _text(doc.get("error"), ""))


def _baseline_rule(rule: Any, runs: list[RunView]) -> Gate:
    """A regression rule: the new value may exceed the baseline's by at most max_increase."""
    doc = as_dict(rule)
    run = _text(doc.get("run"))
    anchor = next((r.anchor for r in runs if r.name == run), "")
    old, new, limit = number(doc.get("old")), number(doc.get("new")), number(doc.get("max_increase"))
    required = f"≤ {limit + old:.4g} ({old:.4g} + {limit:.4g})" if old is not None and limit is not None else DASH
    change = f" ({new - old:+.4g})" if old is not None and new is not None else ""
    note = _text(doc.get("error"), "") or _text(doc.get("note"), "")
    return Gate(run, _text(doc.get("metric")), required, f"{fmt(doc.get('new'))}{change}", _passed(doc), anchor, note)


def _passed(doc: dict[str, Any]) -> bool | None:
    passed = doc.get("passed")
    return passed if isinstance(passed, bool) else None


def _gallery_item(item: dict[str, Any], results_dir: Path, redact: bool, accessory: bool) -> GalleryItem:
    """One gallery row; only faces are redacted, and an accessory (its own image, no factor) is never amplified."""
    clean = figures.load_image(results_dir, item.get("clean"))
    adversarial = figures.load_image(results_dir, item.get("adversarial"))
    worn = figures.load_image(results_dir, item.get("accessory"), mode="RGBA") if accessory else None
    perturbation = None if accessory else figures.load_image(results_dir, item.get("perturbation"))
    amplified = None if accessory else figures.amplified_perturbation(perturbation, clean, adversarial)
    if redact:
        clean = figures.redact_face(clean) if clean is not None else None
        adversarial = figures.redact_face(adversarial) if adversarial is not None else None
    success = item.get("success")
    target = item.get("target")
    target = None if isinstance(target, float) and math.isnan(target) else target
    return GalleryItem(
        identity=_text(item.get("identity")),
        target=None if target is None else _text(target),
        clean=figures.png_data_uri(clean) if clean is not None else None,
        adversarial=figures.png_data_uri(adversarial) if adversarial is not None else None,
        perturbation=figures.png_data_uri(amplified[0]) if amplified is not None else None,
        amplification=f"×{amplified[1]:.0f}" if amplified is not None and amplified[1] >= 1.5 else "",
        similarity_before=_fixed(item.get("similarity_before")),
        similarity_after=_fixed(item.get("similarity_after")),
        success=success if isinstance(success, bool) else None,
        clean_success=item.get("clean_success") is True,
        accessory=figures.png_data_uri(worn) if worn is not None else None,
    )


def _provenance_rows(prov: dict[str, Any]) -> list[Row]:
    rows = []
    for key, value in prov.items():
        if isinstance(value, dict):
            rows += [Row(f"{key}: {k}", fmt(v)) for k, v in value.items()]
        else:
            rows.append(Row(str(key), fmt(value)))
    duration = _duration(prov.get("started"), prov.get("finished"))
    return rows + [Row("duration", duration)] if duration else rows


def _duration(started: Any, finished: Any) -> str | None:
    try:
        seconds = (datetime.fromisoformat(str(finished)) - datetime.fromisoformat(str(started))).total_seconds()
    except (TypeError, ValueError):
        return None
    return f"{seconds:.1f} s"


def _matrix(raw_runs: list[dict[str, Any]], runs: list[RunView]) -> Matrix:
    rows: dict[tuple[str, ...], dict[tuple[str, ...], MatrixCell]] = {}
    columns: dict[tuple[str, ...], None] = {}
    for raw, run in zip(raw_runs, runs, strict=True):
        dims = as_dict(raw.get("dimensions"))
        row = tuple(_text(dims.get(k)) for k in MATRIX_ROW_KEYS)
        column = tuple(_text(dims.get(k)) for k in MATRIX_COLUMN_KEYS)
        columns.setdefault(column)
        cell = rows.setdefault(row, {}).setdefault(column, MatrixCell())
        metrics = as_dict(raw.get("metrics"))
        text = run.asr if run.headline_label == "ASR" else f"{run.headline_label} {run.asr}"
        cell.entries.append(MatrixEntry(run.anchor, run.name, text, bool(run.flags), run.failed,
                                        _cell_detail(run, metrics)))
        asr = number(metrics.get(_text(as_dict(raw.get("headline")).get("metric"), "attack_success_rate")))
        if asr is not None:
            cell.worst = asr if cell.worst is None else max(cell.worst, asr)
    return Matrix(
        columns=list(columns),
        rows=[(row, [cells.get(c, MatrixCell()) for c in columns]) for row, cells in rows.items()],
    )


def _cell_detail(run: RunView, metrics: dict[str, Any]) -> str:
    """The matrix cell's second line: each that applies of the accessory, transfer and query details."""
    parts = []
    if run.accessory:
        parts.append(f"plain {_rate(metrics.get('plain_accessory_success_rate'))} · "
                     f"EOT {_rate(metrics.get('eot_success_rate'))}")
    if run.knowledge == "transfer" and run.headline_label == "ASR":
        parts.append(f"on surrogate {_rate(metrics.get('surrogate_success_rate'))}")
    if "photo_success_rate" in metrics:
        parts.append(f"in photos {_rate(metrics.get('photo_success_rate'))}")
    reached = _queries(metrics.get("asr_at_queries")) if run.knowledge == "query" else []
    if reached:
        early = [pair for pair in reached if pair[0] <= MATRIX_QUERY_MARK]
        shown = ([early[-1]] if early and early[-1] != reached[-1] else []) + [reached[-1]]
        parts.append("after " + " · ".join(f"{n} q {_rate(asr)}" for n, asr in shown))
    return " · ".join(parts)


def _family_figures(raw_runs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Figures across a family's runs (e.g. MMPMR against alpha), from each family present in the suite."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for run in raw_runs:
        family = family_of(run)
        if family is not None:
            by_kind.setdefault(family.name, []).append(run)
    return [fig for kind, runs in by_kind.items() for fig in families.get(kind).suite_figures(runs)]


def _queries_plot(raw_runs: list[dict[str, Any]]) -> str | None:
    """ASR against queries, one line per run with `asr_at_queries`, labelled by its other dimensions; None if none.

    The knowledge text (output, budget) joins the labels only where it tells the lines apart.
    """
    runs = []
    for run in raw_runs:
        queries = _queries(as_dict(run.get("metrics")).get("asr_at_queries"))
        reached = [(n, asr) for n, asr in queries if asr is not None]
        if reached:
            runs.append((as_dict(run.get("dimensions")), reached))
    if not runs:
        return None
    knowledge_varies = len({_text(dims.get("knowledge")) for dims, _ in runs}) > 1
    keys = [k for k in DIMENSION_KEYS if k != "knowledge" or knowledge_varies]
    lines = [figures.QueryLine(" · ".join(_text(dims.get(k)) for k in keys), [n for n, _ in reached],
                               [asr for _, asr in reached]) for dims, reached in runs]
    return figures.queries_asr_plot("ASR against queries", lines)


def _sweeps(raw_runs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """One eps-vs-ASR plot per perturbation family where runs differ only in eps: (title, data URI).

    Runs without a budget (accessories: eps is null) have no place on an eps axis and are left out.
    """
    groups: dict[tuple[str, str, str], tuple[figures.SweepLine, dict[str, Any]]] = {}
    for run in raw_runs:
        eps, metrics = number(run.get("eps")), as_dict(run.get("metrics"))
        asr = number(metrics.get("attack_success_rate"))
        if eps is None or asr is None:
            continue
        dims = as_dict(run.get("dimensions"))
        family = " ".join(t for t in _text(dims.get("perturbation")).split() if not _BUDGET_TOKEN.fullmatch(t))
        label = " · ".join(_text(dims.get(k)) for k in DIMENSION_KEYS if k != "perturbation")
        attack = {k: v for k, v in as_dict(as_dict(run.get("threat_model")).get("attack")).items() if k != "step_size"}
        key = (family or DASH, label, json.dumps(attack, sort_keys=True, default=str))
        line = groups.setdefault(key, (figures.SweepLine(label), attack))[0]
        bounds = [number(b) for b in as_list(metrics.get("attack_success_ci95"))]
        low, high = (bounds[0], bounds[1]) if len(bounds) == 2 else (None, None)
        noise = number(metrics.get("noise_success_rate"))
        line.eps.append(eps)
        line.asr.append(asr)
        line.ci_low.append(asr if low is None else low)
        line.ci_high.append(asr if high is None else high)
        line.noise.append(math.nan if noise is None else noise)
    by_family: dict[str, list[tuple[figures.SweepLine, dict[str, Any]]]] = {}
    for (family, _, _), (line, attack) in groups.items():
        if len(set(line.eps)) >= 2:
            order = sorted(range(len(line.eps)), key=line.eps.__getitem__)
            for attr in ("eps", "asr", "ci_low", "ci_high", "noise"):
                values = getattr(line, attr)
                setattr(line, attr, [values[i] for i in order])
            by_family.setdefault(family, []).append((line, attack))
    plots = []
    for family, members in by_family.items():
        # Attack settings join the legend only where they tell this family's lines apart.
        keys = sorted({k for _, attack in members for k in attack})
        varying = [k for k in keys if len({json.dumps(a.get(k), default=str) for _, a in members}) > 1]
        for line, attack in members:
            if varying:
                line.label += " · " + ", ".join(f"{k}={fmt(attack.get(k))}" for k in varying)
        lines = [line for line, _ in members]
        plots.append((family, figures.eps_asr_plot(f"ASR vs eps: {family}", lines, in_255ths="linf" in family)))
    return plots


def _link(target: Any, results_dir: Path, out_dir: Path) -> Link:
    """A file named in results.json as a link from the report, and whether it is there inside the results folder."""
    path = _inside(results_dir, target)
    href = _relative_href(target, results_dir, out_dir) if path is not None else None
    return Link(_text(target), href, path is not None and path.is_file())


def _relative_href(target: Any, results_dir: Path, out_dir: Path) -> str | None:
    """A relative link from the report to a file named in results.json; None for URLs or absolute paths."""
    if not isinstance(target, str) or not target or ":" in target or target.startswith(("/", "\\")):
        return None
    rel = os.path.relpath(results_dir.resolve() / target, out_dir.resolve())
    return quote(Path(rel).as_posix(), safe="/")


def _inside(root: Path, relative: Any) -> Path | None:
    """The path `relative` names when it stays inside `root` (None for an absolute path, a URL, a name that leaves
    `root` or that the file system cannot take), whether or not a file is there."""
    if not isinstance(relative, str) or not relative or ":" in relative or relative.startswith(("/", "\\")):
        return None
    try:
        path = (root / relative).resolve()
        path.is_file()  # raises for a name too long
    except (OSError, ValueError):  # a name too long, a NUL byte
        return None
    return path if path.is_relative_to(root.resolve()) else None


def _environment(runs: list[Any]) -> Environment:
    """Templates: the page's own, then the partials of the families these runs belong to."""
    dirs = [Path(__file__).parent / "templates"]
    for run in runs:
        family = family_of(run) if isinstance(run, dict) else None
        if family is not None and family.template_dir is not None and family.template_dir not in dirs:
            dirs.append(family.template_dir)
    return Environment(
        loader=FileSystemLoader(dirs),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _text(value: Any, default: str = DASH) -> str:
    """A results string for display; numbers and other values are formatted, None becomes `default`."""
    if value is None or value == "":
        return default
    return value if isinstance(value, str) else fmt(value)


def _rate(value: Any) -> str:
    """A success rate to two decimals, as in the matrix; a dash when missing."""
    value = number(value)
    return DASH if value is None else f"{value:.2f}"


def _fixed(value: Any) -> str:
    """A similarity to three decimals, so the before and after columns line up."""
    value = number(value)
    return DASH if value is None else f"{value:.3f}"
