"""Turn a results document into one self-contained HTML file an auditor can read in five minutes.

The view model below is plain data built from the typed run records alone; every optional entry may be missing
(shown as a dash), and every string reaches the page through Jinja2's autoescaping. A family draws its own
part of a run's section (its partial and view), its matrix cell's second line and its figures across runs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader
from pydantic import JsonValue

from facesec import families, safe_json
from facesec.errors import ConfigError
from facesec.families.base import Family, SuiteFigure
from facesec.record import BaselineRule, Dimensions, GateResult, Provenance, Results, RunRecord
from facesec.report import curves, defences, differences, draws, operating, summary
from facesec.report import groups as by_group
from facesec.report.fields import DASH, family_of, fmt, interval, number, text
from facesec.report.glossary import IDEAS
from facesec.report.links import Link, link
from facesec.results import SCHEMA_VERSION, read_results
from facesec.suite_files import write_atomic

MATRIX_ROW_KEYS = ("recognizer", "perturbation", "knowledge", "setting", "attack")
MATRIX_COLUMN_KEYS = ("goal", "capability")
DIMENSION_KEYS = ("recognizer", "perturbation", "knowledge", "goal", "capability", "setting", "attack")


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
    """A validity warning of one run (e.g. 'gradient masking suspected')."""

    run: str
    anchor: str
    text: str


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
    provenance: list[Row] | None
    samples: Link
    threat_model: str | None
    headline_label: str = "ASR"
    """What `asr` holds: the attack success rate, or the family's own headline (MMPMR for morphs)."""
    partial: str | None = None
    """The family's own template for the rest of the run's section (None: none)."""
    view: dict[str, Any] = field(default_factory=dict)
    """What the family's partial shows."""
    context: list[Row] = field(default_factory=list)
    """What the run was about: its description (marked when a --set changed the run), dataset and fingerprint,
    and the --set overrides."""
    rating: str | None = None
    """The robustness rating of the run's headline (summary.CUTOFFS); None when it is not an attack's success."""
    error: str | None = None
    """Why the run did not finish (None: it did)."""
    groups: list[by_group.GroupTable] = field(default_factory=list)
    """Its rates by group of people (`report.by`)."""

    @property
    def rating_style(self) -> str:
        """Colours of the run's rating chip."""
        return rating_style(self.rating)

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
    """A second line under the headline, as the run's family words it (e.g. success on the surrogate)."""


@dataclass
class MatrixCell:
    """A (row, column) cell: its runs and the colour of its worst ASR."""

    entries: list[MatrixEntry] = field(default_factory=list)
    worst: float | None = None

    @property
    def style(self) -> str:
        """Background and text colour of the rating of the cell's highest rated headline."""
        return rating_style(None if self.worst is None else summary.rating_of(self.worst))


@dataclass
class Matrix:
    """Threat-model matrix: rows (recognizer, perturbation, knowledge, setting, attack) x columns (goal, capability)."""

    columns: list[tuple[str, ...]]
    rows: list[tuple[tuple[str, ...], list[MatrixCell]]]


@dataclass
class FigureSection:
    """Figures across runs under one heading (ASR against eps, MMPMR against alpha ...)."""

    heading: str
    anchor: str
    note: str
    figures: list[SuiteFigure]


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
    figures: list[FigureSection]
    runs: list[RunView]
    baseline_path: str | None
    baseline: list[Gate] | None
    redacted: bool
    legends: list[tuple[str, str]] = field(default_factory=list)
    """Each family's sentence on what its matrix cells show: (kind, text), in the order its runs come."""
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
    operating: operating.OperatingSection = field(default_factory=operating.OperatingSection)
    draws: list[draws.DrawGroup] = field(default_factory=list)
    """Threat models run on several draws (`data.seed` lists): per draw and pooled."""
    differences: list[differences.DifferenceRow] = field(default_factory=list)
    defences: list[defences.DefenceRow] = field(default_factory=list)
    curves: list[curves.CurveRow] = field(default_factory=list)
    groups: list[by_group.GapRow] = field(default_factory=list)
    """Each run's sliced rates' extreme groups and gaps (`report.by`)."""
    """Runs one setting apart, compared decision by decision."""
    robustness: str | None = None
    """The verdict: the worst family rating (None when no run was rated)."""
    gate_tests: list[str] = field(default_factory=list)
    """What the gates test, in words, each once."""
    exit_code: int | None = None
    """What `facesec run` exited with (None: the suite has not finished)."""
    n_failed_runs: int = 0
    datasets: list[str] = field(default_factory=list)
    """Each dataset the runs drew from, with the fingerprint of its files, once."""
    overrides: list[str] = field(default_factory=list)
    """Each --set the runs were made with, once."""
    ratings_legend: list[tuple[str, str, str]] = field(default_factory=list)
    """(rating, its cut-off, its colours) for the matrix legend."""

    @property
    def robustness_style(self) -> str:
        """Colours of the verdict."""
        return rating_style(self.robustness)

    @property
    def exit_meaning(self) -> str:
        """What the exit code says, in words."""
        return summary.EXIT_MEANINGS.get(self.exit_code, "") if self.exit_code is not None else ""


class ReportBuilder:
    """A suite's page kept up to date as its runs finish: a run's own section (the family's view, its images
    read and encoded) is built once and kept; the page around the sections is assembled again each time."""

    def __init__(self, results_dir: Path, out_path: Path | None = None, redact: bool = False) -> None:
        self.results_dir = Path(results_dir)
        self.out = Path(out_path) if out_path is not None else self.results_dir / "index.html"
        self.redact = redact
        self._views: dict[str, dict[str, Any]] = {}
        self._seen: dict[int, tuple[RunRecord, dict[str, Any]]] = {}
        """Views by record object: the records `facesec run` keeps are looked up without serialising them."""

    def write(self, results: Results) -> Path:
        """Render the page of `results` and write it (replaced whole) to the output path."""
        report = build_report(results, self.results_dir, self.out.parent, self.redact, self._view)
        html = _environment(results.runs).get_template("report.html.j2").render(r=report, dash=DASH, ideas=IDEAS,
                                                                             defence_close=defences.ADAPTIVE_CLOSE,
                                                                             group_caveats=by_group.CAVEATS)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.out, html)  # names that are not valid UTF-8 stay visible
        return self.out

    def _view(self, run: RunRecord) -> dict[str, Any]:
        """The run's family view, from the cache when this exact record was seen before."""
        family = family_of(run)
        if family is None or family.report_partial is None:
            return {}
        seen = self._seen.get(id(run))
        if seen is not None and seen[0] is run:
            return seen[1]
        key = json.dumps(run.to_json(), sort_keys=True)  # names that are not UTF-8 included
        if key not in self._views:
            self._views[key] = family.report_view(run, self.results_dir, self.out.parent, self.redact)
        self._seen[id(run)] = (run, self._views[key])
        return self._views[key]


def render_report(results_path: Path, out_path: Path | None = None, redact: bool = False) -> Path:
    """Write the HTML report of `results_path` (default: index.html beside it) and return its path."""
    results_path = Path(results_path)
    return ReportBuilder(results_path.parent, out_path, redact).write(load_results(results_path))


def load_results(path: Path) -> Results:
    """The results document of a results.json; ConfigError naming the file (and the entry) when it is missing
    or not results of this schema version."""
    try:
        doc = safe_json.load(path)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found (write it with `facesec run`)") from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable results.json ({exc})") from exc
    version = doc.get("schema_version", SCHEMA_VERSION) if isinstance(doc, dict) else SCHEMA_VERSION
    if version != SCHEMA_VERSION:
        raise ConfigError(f"{path}: schema_version {version!r} is not supported; this facesec reads "
                          f"{SCHEMA_VERSION} (render it with the facesec version that wrote it)")
    if isinstance(doc, dict) and "runs" not in doc:
        doc = {**doc, "runs": []}
    return read_results(doc, str(path))


def build_report(results: Results, results_dir: Path, out_dir: Path, redact: bool,
                 view: Any = None) -> Report:
    """The view model of the page; image paths resolve against `results_dir`, links against `out_dir`; `view`
    gives a run's family view (by default built afresh)."""
    def fresh(run: RunRecord) -> dict[str, Any]:
        family = family_of(run)
        return family.report_view(run, results_dir, out_dir, redact) if family and family.report_partial else {}

    records = results.runs
    runs = [_run_view(i, run, results_dir, out_dir, (view or fresh)(run)) for i, run in enumerate(records)]
    rules = results.baseline.rules if results.baseline is not None else None
    baseline = [_baseline_rule(rule, runs) for rule in rules] if rules is not None else None
    all_gates = [g for run in runs for g in run.gates] + (baseline or [])
    failed = [g for g in all_gates if g.passed is not True]  # as facesec.gates: no verdict is no pass
    ratings = summary.ratings(records)
    return Report(
        suite=text(results.suite), created=text(results.created), facesec_version=text(results.facesec_version),
        n_runs=len(runs), verdict="FAIL" if failed else ("PASS" if all_gates else "NO GATES"), failed=failed,
        flags=[Flag(run.name, run.anchor, flag) for run in runs for flag in run.flags],
        unchecked=[run.name for run in runs if run.validity is None],
        matrix=_matrix(records, runs), row_keys=MATRIX_ROW_KEYS, figures=_figures(records), runs=runs,
        baseline_path=text(results.baseline.path) if results.baseline is not None else None,
        baseline=baseline, redacted=redact or any(r.redacted for r in records),
        legends=_legends(records), headlines=_headlines(records, runs),
        gates_held=len(all_gates) - len(failed), gates_total=len(all_gates),
        findings=summary.findings(records), ratings=ratings, glossary=summary.glossary(records),
        skipped=_skipped(records, runs), operating=operating.section(records, [run.anchor for run in runs]),
        draws=draws.groups(records, [run.anchor for run in runs]),
        differences=differences.rows(results.differences, {r.name: run.anchor for r, run in zip(records, runs,
                                                                                               strict=True)}),
        defences=defences.rows(records, [run.anchor for run in runs], results.differences),
        curves=curves.rows(results.curves),
        groups=by_group.gaps(records, [run.anchor for run in runs]),
        robustness=summary.overall(ratings), gate_tests=summary.gate_tests(records), exit_code=results.exit_code,
        n_failed_runs=sum(run.error is not None for run in runs), ratings_legend=_ratings_legend(),
        datasets=_datasets(records),
        overrides=list(dict.fromkeys(text(o) for r in records if r.provenance for o in r.provenance.overrides or [])),
    )


def _ratings_legend() -> list[tuple[str, str, str]]:
    """Each rating with its cut-off and colours, for the matrix legend."""
    bounds = [f"≤ {cut:.0%}" if cut != math.inf else f"> {summary.CUTOFFS[-2][0]:.0%}" for cut, _ in summary.CUTOFFS]
    return [(label, bound, rating_style(label)) for (_, label), bound in zip(summary.CUTOFFS, bounds, strict=True)]


def _skipped(records: list[RunRecord], runs: list[RunView]) -> list[tuple[str, str, str]]:
    """Each skipped image once, with its reason and the runs that skipped it."""
    seen: dict[tuple[str, str], list[str]] = {}
    for record, run in zip(records, runs, strict=True):
        for key in dict.fromkeys((text(item.path), text(item.reason)) for item in record.skipped_images):
            seen.setdefault(key, []).append(run.name)
    return [(", ".join(names) if len(names) < 4 else f"{len(names)} runs", path, reason)
            for (path, reason), names in seen.items()]


def _headlines(records: list[RunRecord], runs: list[RunView]) -> list[tuple[str, str]]:
    """Each distinct headline once, with its meaning as the run's family declares it (an uninstalled
    family's headline is shown without one)."""
    out: dict[str, str] = {}
    for record, run in zip(records, runs, strict=True):
        family = family_of(record)
        info = family.metrics.get(record.headline_metric()) if family is not None else None
        words = (info.meaning or info.label or "") if info is not None else ""
        if info is not None and info.better == "lower":
            words += (", with its 95% interval (people resampled, where the run records it: outcomes of one person "
                      "are not independent): lower is more robust")
        out.setdefault(run.headline_label, words)
    return list(out.items())


def fmt_asr(asr: Any, ci: Any) -> str:
    """'0.97 [0.90–0.99]': the attack success rate with its 95% confidence interval."""
    rate = number(asr)
    if rate is None:
        return DASH
    bounds = [number(b) for b in ci] if isinstance(ci, list) else []
    if len(bounds) == 2 and bounds[0] is not None and bounds[1] is not None:
        return f"{rate:.2f} [{bounds[0]:.2f}–{bounds[1]:.2f}]"
    return f"{rate:.2f}"


def rating_style(rating: str | None) -> str:
    """CSS colours of a rating (summary.RATING_COLOURS), wherever one is drawn: the same cut-offs colour the
    verdict, the run rows and the matrix; grey when nothing is rated."""
    background, colour = summary.RATING_COLOURS.get(rating or "", ("#eeeeee", "#555555"))
    return f"background:{background};color:{colour}"


def _run_view(index: int, run: RunRecord, results_dir: Path, out_dir: Path, view: dict[str, Any]) -> RunView:
    name, metrics, family = run.name or f"run {index + 1}", run.metrics, family_of(run)
    headline = run.headline_metric()
    partial = family.report_partial if family is not None else None
    labels = {k: info.label for k, info in family.metrics.items() if info.label} if family is not None else {}
    return RunView(
        index=index, anchor=f"run-{index + 1}", name=name, source=text(run.source),
        asr=fmt_asr(metrics.get(headline), interval(metrics, headline)),
        dimensions=_dimension_rows(run.dimensions, run.eps),
        metrics=[_metric_row(k, v, labels, family) for k, v in metrics.items()  # a partial shows nested ones
                 if partial is None or not isinstance(v, dict) or _worded(family, k, v)],
        validity=[Row(k, fmt(v)) for k, v in run.validity.model_dump(mode="json").items() if k != "flags"]
        if run.validity is not None else None,
        flags=list(run.validity.flags) if run.validity is not None else [],
        gates=[_gate(name, f"run-{index + 1}", g) for g in run.gates],
        provenance=_provenance_rows(run.provenance) if run.provenance is not None else None,
        samples=link(run.samples_csv, results_dir, out_dir),
        threat_model=json.dumps(run.threat_model, indent=2, sort_keys=True) if run.threat_model is not None else None,
        headline_label="ASR" if headline == "attack_success_rate" or run.headline is None else text(run.headline.label),
        partial=partial, view=view, error=None if run.error is None else text(run.error), context=_context_rows(run),
        rating=None if (rate := summary.rated(run)) is None else summary.rating_of(rate),
        groups=by_group.tables(run),
    )


def _data_of(run: RunRecord) -> tuple[str, str | None]:
    """The run's dataset name (a dash when unknown) and the sha256 of its files' manifest (None when unrecorded)."""
    data = run.threat_model.get("data") if isinstance(run.threat_model, dict) else None
    name = text(data.get("dataset")) if isinstance(data, dict) else DASH
    fingerprint = ((run.provenance.model_extra or {}) if run.provenance is not None else {}).get("data_manifest_sha256")
    return name, fingerprint if isinstance(fingerprint, str) and fingerprint else None


def _dataset_text(name: str, fingerprint: str | None) -> str:
    """'celeba-mini (files 3edc5df06151…)', or the name alone."""
    return f"{name} (files {fingerprint[:12]}…)" if fingerprint else name


def _datasets(records: list[RunRecord]) -> list[str]:
    """Each dataset once, with its files' fingerprint where a run recorded one (a failed run records none)."""
    found: dict[str, str | None] = {}
    for record in records:
        if record.threat_model:
            name, fingerprint = _data_of(record)
            found[name] = found.get(name) or fingerprint
    return [_dataset_text(name, fingerprint) for name, fingerprint in found.items()]


def _context_rows(run: RunRecord) -> list[Row]:
    """The description (marked when a --set changed what it describes), the dataset and the overrides."""
    overrides = list(run.provenance.overrides or []) if run.provenance is not None else []
    changed = [o.partition("=")[0] for o in overrides if o.partition("=")[0] not in ("name", "description")]
    description = run.threat_model.get("description") if isinstance(run.threat_model, dict) else None
    rows = []
    if isinstance(description, str) and description:
        stale = (f" ⚠ written for the file as it stands; --set {', '.join(changed)} changed this run, so it may no "
                 "longer match") if changed else ""
        rows.append(Row("description", text(description) + stale))
    rows.append(Row("dataset", _dataset_text(*_data_of(run))))
    if overrides:
        rows.append(Row("--set", "; ".join(text(o) for o in overrides)))
    return rows


def _legends(records: list[RunRecord]) -> list[tuple[str, str]]:
    """Each legend the runs' families give (id, sentence), once, in the order the runs come."""
    found: dict[str, str] = {}
    for kind, runs in _by_family(records).items():
        for key, words in families.get(kind).legends(runs):
            found.setdefault(key, words)
    return list(found.items())


def _by_family(records: list[RunRecord]) -> dict[str, list[RunRecord]]:
    """The runs of each installed family among `records`, families in the order their first run comes."""
    grouped: dict[str, list[RunRecord]] = {}
    for run in records:
        family = family_of(run)
        if family is not None:
            grouped.setdefault(family.name, []).append(run)
    return grouped


def _worded(family: Family | None, key: str, value: JsonValue) -> bool:
    """Whether the family words this metric for the metrics table itself."""
    return family is not None and family.metric_text(key, value) is not None


def _metric_row(key: str, value: JsonValue, labels: dict[str, str], family: Family | None) -> Row:
    """A metric, labelled in words by its family with the key (what gates name) kept beneath."""
    label = labels.get(key)
    shown = family.metric_text(key, value) if family is not None else None
    value_text = fmt(value) if shown is None else shown
    return Row(label, value_text, key) if label and label != key else Row(key, value_text)


def _dimension_rows(dims: Dimensions | None, eps: float | None) -> list[Row]:
    """The dimensions, any extra ones, and eps (also in 255ths for L-inf, the way budgets are quoted)."""
    values = dims.model_dump() if dims is not None else {}
    keys = list(DIMENSION_KEYS) + [k for k in values if k not in DIMENSION_KEYS]
    rows = [Row(k, text(values.get(k))) for k in keys]
    budget = number(eps)
    if budget is None:
        return rows
    in_255ths = f" ({budget * 255:.3g}/255)" if "linf" in text(values.get("perturbation")) else ""
    return rows + [Row("eps", f"{budget:.4g}{in_255ths}")]


def _gate(run: str, anchor: str, gate: GateResult) -> Gate:
    """A gate as facesec.gates evaluated it; the verdict is read, never recomputed, so the two cannot disagree."""
    metric = text(gate.metric) if gate.bound is None else f"{text(gate.metric)} ({gate.bound} 95% bound)"
    return Gate(run, metric, f"{text(gate.op, '?')} {fmt(gate.value)}", fmt(gate.actual), gate.passed,
                anchor, text(gate.error, ""))


def _baseline_rule(rule: BaselineRule, runs: list[RunView]) -> Gate:
    """A regression rule: the new value may exceed the baseline's by at most max_increase."""
    anchor = next((r.anchor for r in runs if r.name == rule.run), "")
    old, new, limit = number(rule.old), number(rule.new), number(rule.max_increase)
    required = f"≤ {limit + old:.4g} ({old:.4g} + {limit:.4g})" if old is not None and limit is not None else DASH
    change = f" ({new - old:+.4g})" if old is not None and new is not None else ""
    note = text(rule.error, "") or text(rule.note, "")
    return Gate(text(rule.run), text(rule.metric), required, f"{fmt(rule.new)}{change}", rule.passed, anchor, note)


def _provenance_rows(prov: Provenance) -> list[Row]:
    rows = []
    for key, value in prov.model_dump(mode="json", exclude_unset=True).items():
        if isinstance(value, dict):
            rows += [Row(f"{key}: {k}", fmt(v)) for k, v in value.items()]
        else:
            rows.append(Row(str(key), fmt(value)))
    duration = _duration(prov.started, prov.finished)
    return rows + [Row("duration", duration)] if duration else rows


def _duration(started: str | None, finished: str | None) -> str | None:
    try:
        seconds = (datetime.fromisoformat(str(finished)) - datetime.fromisoformat(str(started))).total_seconds()
    except (TypeError, ValueError):
        return None
    return f"{seconds:.1f} s"


def _matrix(records: list[RunRecord], runs: list[RunView]) -> Matrix:
    rows: dict[tuple[str, ...], dict[tuple[str, ...], MatrixCell]] = {}
    columns: dict[tuple[str, ...], None] = {}
    for record, run in zip(records, runs, strict=True):
        dims = record.dimensions.model_dump() if record.dimensions is not None else {}
        row = tuple(text(dims.get(k)) for k in MATRIX_ROW_KEYS)
        column = tuple(text(dims.get(k)) for k in MATRIX_COLUMN_KEYS)
        columns.setdefault(column)
        cell = rows.setdefault(row, {}).setdefault(column, MatrixCell())
        family = family_of(record)
        shown = run.asr if run.headline_label == "ASR" else f"{run.headline_label} {run.asr}"
        cell.entries.append(MatrixEntry(run.anchor, run.name, shown, bool(run.flags), run.failed,
                                        family.matrix_detail(record) if family is not None else ""))
        worst = summary.rated(record)
        if worst is not None:
            cell.worst = worst if cell.worst is None else max(cell.worst, worst)
    return Matrix(
        columns=list(columns),
        rows=[(row, [cells.get(c, MatrixCell()) for c in columns]) for row, cells in rows.items()],
    )


def _figures(records: list[RunRecord]) -> list[FigureSection]:
    """Each family's figures across its runs, grouped under their headings in the order they come."""
    sections: dict[str, FigureSection] = {}
    for kind, runs in _by_family(records).items():
        for fig in families.get(kind).suite_figures(runs):
            anchor = "-".join(fig.heading.lower().split())
            sections.setdefault(fig.heading, FigureSection(fig.heading, anchor, fig.note, [])).figures.append(fig)
    return list(sections.values())


def _environment(runs: list[RunRecord]) -> Environment:
    """Templates: the page's own, then the partials of the families these runs belong to."""
    dirs = [Path(__file__).parent / "templates"]
    for run in runs:
        family = family_of(run)
        if family is not None and family.template_dir is not None and family.template_dir not in dirs:
            dirs.append(family.template_dir)
    return Environment(loader=FileSystemLoader(dirs), autoescape=True, trim_blocks=True, lstrip_blocks=True)
