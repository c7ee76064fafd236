"""The Python entry points the CLI and notebooks use."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import JsonValue, ValidationError

from facesec import consistency, distributed, families, gates, metrics, protocols, resume, safe_json
from facesec.data import attributes
from facesec.data.attributes import Table
from facesec.data.dataset import load_dataset
from facesec.data.images import IMAGE_SUFFIXES
from facesec.data.pipeline import AlignedFaces, align_faces
from facesec.device import pick_device
from facesec.engine import NONFINITE, FinishedRun, run_threat_model, runs_here
from facesec.errors import ConfigError, DataError, FacesecError
from facesec.groups.clean import by_group as clean_by_group
from facesec.loading import load_threat_models
from facesec.matrix import MAX_RUNS
from facesec.measures import curves, differences
from facesec.progress import bar, note
from facesec.recognizers.base import Recognizer, load
from facesec.recognizers.trust import code_trusted, trusting_code
from facesec.record import Curve, GateResult, Pairing, Provenance, Results, RunRecord, Validity
from facesec.redaction import Pseudonyms
from facesec.report.render import ReportBuilder
from facesec.results import document, read_results, save, slug, write_run
from facesec.suite_files import keep_previous, refuse_links, suite_lock
from facesec.threat_model import OpenSet, ThreatModel
from facesec.validation import check


def _summary_of_skips(faces: AlignedFaces) -> dict[str, Any]:
    reasons: dict[str, int] = {}
    for _, reason in faces.skipped:
        reasons[reason] = reasons.get(reason, 0) + 1
    return {"n_skipped": len(faces.skipped), "skipped_reasons": reasons, "n_converted": len(faces.notes)}


def evaluate(recognizer: str | Recognizer, data: str | Path, max_genuine_per_identity: int = 20,
             fmrs: Sequence[float] = (1e-2, 1e-3), seed: int = 0, device: str | None = None,
             progress: bool = True, trust_code: bool = False, by: Sequence[str] = (),
             min_group: int = 5) -> dict[str, Any]:
    """Clean verification and closed-set identification accuracy of a recognizer on a dataset; with `by`, its
    FNMR and FMR by group at the last of `fmrs` (`groups.clean`)."""
    table = _attributes(data, by) if by else None
    with trusting_code(trust_code):
        model = load(recognizer, pick_device(device)) if isinstance(recognizer, str) else recognizer
    dataset = load_dataset(data)
    label_of = {str(p): ident for p, ident in dataset.items}
    faces = align_faces([p for p, _ in dataset.items], model.info.template, progress=progress)
    faces.skipped[:0] = list(dataset.skipped)
    if len(faces.paths) < 2:
        raise DataError(f"dataset {dataset.root}: fewer than two usable faces")
    labels = np.array([label_of[str(p)] for p in faces.paths])
    emb = model.embed(faces.uint8(), progress=progress)

    gen, imp = protocols.verification_pairs(labels.tolist(), max_genuine_per_identity, seed)
    g_scores = model.similarity(emb[gen[:, 0]], emb[gen[:, 1]]).numpy()
    i_scores = model.similarity(emb[imp[:, 0]], emb[imp[:, 1]]).numpy()
    best, best_t = metrics.best_accuracy(g_scores, i_scores)
    tars, thresholds = {}, {}
    for fmr in fmrs:
        tars[f"{fmr:g}"], thresholds[f"{fmr:g}"] = metrics.tar_at_fmr(g_scores, i_scores, fmr)

    gallery, probes = protocols.first_image_gallery(labels.tolist())
    sim = model.similarity_matrix(emb[probes], emb[gallery]).numpy()
    native = model.info.native_threshold
    return {
        "recognizer": model.info.name,
        "dataset": str(dataset.root),
        "n_images": len(dataset.items),
        "n_faces": len(faces.paths),
        "n_identities": len(set(labels.tolist())),
        **_summary_of_skips(faces),
        "n_genuine_pairs": int(len(gen)),
        "n_impostor_pairs": int(len(imp)),
        "accuracy_at_native_threshold": (metrics.accuracy_at(g_scores, i_scores, native)
                                         if native is not None else None),
        "native_threshold": native,
        "best_accuracy": best,
        "best_threshold": best_t,
        "tar_at_fmr": tars,
        "thresholds_at_fmr": thresholds,
        "rank1": metrics.rank1(sim, labels[probes], labels[gallery]),
        "n_gallery": int(len(gallery)),
        "n_probes": int(len(probes)),
        "seed": seed,
        **({"by_group": clean_by_group(model, emb, labels, table, list(by), fmrs[-1], min_group, seed)}
           if table is not None else {}),
    }


def _attributes(data: str | Path, by: Sequence[str]) -> Table:
    """The dataset's attribute table, each of `by` one of its categories; ConfigError naming the fix otherwise."""
    table = attributes.load(str(data))
    if table is None:
        raise ConfigError(f"--by: dataset {data} has no attribute table; run `facesec data annotate {data}` or put "
                          "an attributes.csv in its folder")
    missing = [name for name in by if name not in table.categorical()]
    if missing:
        raise ConfigError(f"--by: {', '.join(missing)} not a category of {table.source}; it has "
                          f"{', '.join(table.categorical()) or 'none'}")
    return table


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given, and the image files inside folders (recursively, sorted)."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            paths += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            paths.append(p)
    return paths


def embed_files(recognizer: str | Recognizer, inputs: Sequence[str | Path], device: str | None = None,
                progress: bool = True, trust_code: bool = False) -> dict[str, np.ndarray]:
    """Detect, align and embed images; arrays for `facesec embed`'s .npz output."""
    with trusting_code(trust_code):
        model = load(recognizer, pick_device(device)) if isinstance(recognizer, str) else recognizer
    faces = align_faces(expand_inputs(inputs), model.info.template, progress=progress)
    emb = model.embed(faces.uint8(), progress=progress)
    return {
        "paths": np.array([str(p) for p in faces.paths], dtype=str),
        "embeddings": emb.numpy().astype(np.float32).reshape(len(faces.paths), model.info.embedding_size),
        "skipped": np.array([str(p) for p, _ in faces.skipped], dtype=str),
        "reasons": np.array([r for _, r in faces.skipped], dtype=str),
    }


def load_threat_model(path: str | Path, overrides: Sequence[str] = ()) -> list[ThreatModel]:
    """The validated threat models (matrix expanded) of one YAML file."""
    return load_threat_models(path, list(overrides))


def run(files: Sequence[str | Path], overrides: Sequence[str] = (), out_root: str | Path = "reports",
        suite: str | None = None, device: str | None = None, baseline: str | Path | None = None,
        max_asr_increase: float = 0.0, junit: str | Path | None = None, redact: bool = False,
        progress: bool = True, trust_code: bool = False, max_runs: int = MAX_RUNS,
        resume_runs: bool = False) -> tuple[Results, Path]:
    """Run threat-model files as one suite; write results.json, per-run files and the HTML report.

    Returns the results document and the suite folder. Gates are evaluated per run; with
    `baseline`, ASR may not rise more than `max_asr_increase` points over the old results. A
    `package.module:factory` recognizer is refused unless `trust_code` (the run's provenance says so).
    With `resume_runs`, runs the suite's results.json already holds under the same resume key (same
    resolved threat model, facesec code and dataset files) are kept instead of run again.
    """
    with trusting_code(trust_code):
        return _run(files, overrides, out_root, suite, device, baseline, max_asr_increase, junit, redact, progress,
                    max_runs, resume_runs)


def _run(files: Sequence[str | Path], overrides: Sequence[str], out_root: str | Path, suite: str | None,
         device: str | None, baseline: str | Path | None, max_asr_increase: float, junit: str | Path | None,
         redact: bool, progress: bool, max_runs: int, resume_runs: bool) -> tuple[Results, Path]:
    models = check(files, overrides, code_trusted(), max_runs)
    if not models:
        raise ConfigError("no threat models to run")
    distributed.start()
    main = distributed.is_main()  # under torchrun, process 0 alone reads old results, writes and prints
    old = _read_results(Path(baseline)) if baseline and main else None
    name = suite or (Path(files[0]).stem if len(files) == 1 else "suite")
    out_dir = Path(out_root) / slug(name)
    if main:
        refuse_links(Path(out_root), out_dir / "runs")
        out_dir.mkdir(parents=True, exist_ok=True)
    dev = pick_device(device)
    with suite_lock(out_dir) if main else contextlib.nullcontext():
        previous, problems = resume.finished(_earlier(out_dir / "results.json"), out_dir) if resume_runs and main \
            else ({}, [])
        for problem in problems:
            note(f"--resume: {out_dir / 'results.json'}: {problem}")
        keys, reused = _reusable(models, previous, redact)
        kept = keep_previous(out_dir) if main and not reused else None  # a resume that reuses nothing starts anew
        if kept is not None:
            note(f"the report this suite had is kept in {kept} until the next rerun", progress)
        taken = set() if kept is not None else {Path(str(r.samples_csv)).parent.name for r in previous.values()}
        writer = _Writer(out_dir, name, ReportBuilder(out_dir, redact=redact), list(overrides),
                         _pseudonyms(models) if redact and main else None, taken)
        records, failures = _run_all(models, dev, progress and main, keys, reused, writer)
        results = document(name, records)
        if main:
            pairs = _compare(results, out_dir)
            results.curves = _curves(results, pairs, out_dir)
            consistency.flag(results)
            gates.judge_differences(results, pairs)
            _fail_if_broken(results)
            if old is not None:
                results.baseline = gates.apply_baseline(results, old, max_asr_increase, baseline_path=str(baseline))
            _conclude(results, failures, writer, junit)
    written = distributed.exchange("results", results if main else None)[0]  # the document process 0 wrote
    assert written is not None
    if failures and main:  # the finished runs are written and reported; now say what failed
        first = failures[0]
        more = f" ({len(failures) - 1} more failed run(s) in {out_dir / 'results.json'})" if len(failures) > 1 else ""
        if isinstance(first, FacesecError):
            raise type(first)(f"{first}{more}; the other runs are written to {out_dir}") from first
        raise first
    return written, out_dir


@dataclass
class _Writer:
    """Where and how a suite's runs are written: its folder and name, its page, the --set overrides it ran under,
    `--redact`'s pseudonyms (None without it), and run folder names already taken."""

    out_dir: Path
    suite: str
    page: ReportBuilder
    overrides: list[str]
    pseudonyms: Pseudonyms | None
    used: set[str]


def _conclude(results: Results, failures: list[Exception], writer: _Writer, junit: str | Path | None) -> None:
    """Write the JUnit file, the page and results.json with the exit code the command returns; when writing
    the first two fails, results.json records the code that failure gives instead."""
    results.exit_code = _exit_code(failures[0] if failures else None, results)
    try:
        if junit:
            gates.write_junit(results, Path(junit))
        writer.page.write(results)
    except Exception as exc:
        results.exit_code = _exit_code(exc, results)
        raise
    finally:
        save(results, writer.out_dir)


def _exit_code(error: Exception | None, results: Results) -> Literal[0, 1, 2, 3]:
    """The code the command exits with, as cli.main maps what `run` raises: an error on input or from the file
    system 2, anything else 3; without one, the gates' verdict."""
    if error is not None:
        return 2 if isinstance(error, FacesecError | OSError) else 3
    return 0 if gates.exit_code(results) == gates.EXIT_OK else 1


def _compare(results: Results, out_dir: Path) -> list[Pairing] | None:
    """The paired differences between runs that differ in one setting, on each family's decision column, into
    `results`; returns every pair of such runs (for the gates on differences), None when the analysis failed
    (noted; the runs and their other gates stay as they are)."""
    decisions: dict[str, differences.Decision] = {}
    for record in results.runs:
        try:
            family = families.get(str(record.family)) if record.family else None
        except ConfigError:
            family = None
        if family is not None and family.decision is not None:
            decisions[family.name] = differences.Decision(family.decision, family.decision_ignores,
                                                                family.decision_clusters, family.decision_beside)
    try:
        pairs = differences.pairings(results.runs, out_dir, decisions)
    except (ValueError, ValidationError) as exc:
        note(f"differences between runs not computed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        return None
    results.differences = [d for p in pairs if p.difference is not None for d in (p.difference, *p.beside)]
    return pairs


def _curves(results: Results, pairs: list[Pairing] | None, out_dir: Path) -> list[Curve]:
    """Robustness curves over the runs that differ only in their budget, on their family's decisions."""
    def column(record: RunRecord) -> str | None:
        try:
            return families.get(str(record.family)).decision if record.family else None
        except ConfigError:
            return None

    return curves.curves(results.runs, pairs or [], out_dir, column)


def _run_all(models: list[tuple[str, ThreatModel]], device: torch.device, progress: bool, keys: list[str],
             reused: dict[int, RunRecord], writer: _Writer) -> tuple[list[RunRecord], list[Exception]]:
    """Every run in turn, each written (and the report updated) as soon as it finishes, so a crash keeps
    what was done; a run recorded in `previous` under the same resume key is reused, not run again; one
    that fails is recorded as failed and never costs the others. Under torchrun every process goes through
    the runs together (see `engine.runs_here`); process 0 records them, with the `--set` overrides it ran under."""
    main = distributed.is_main()
    records: list[RunRecord] = []
    failures: list[Exception] = []
    kept = distributed.exchange("resume", sorted(reused))[0]
    for number, (source, tm) in enumerate(bar(models, desc="threat models", unit="run", enabled=progress), 1):
        if number in kept:
            if main:
                records.append(reused[number])
            continue
        note(f"run {number}/{len(models)} {tm.name}: started", progress)
        started = time.perf_counter()
        finished, error = _one_run(tm, source, device, progress)
        problems = [e for e in distributed.exchange(f"run {number}", None if error is None else str(error)) if e]
        if finished is None:  # not process 0: it records the run
            continue
        if error is None and problems:  # another process failed outside the shards
            error = distributed.ShardFailed(f"{source}: {tm.name}: {problems[0]}")
            finished = _failed(tm, source, error)
        record = finished.record
        if error is not None:
            failures.append(error)
        else:
            assert record.provenance is not None
            record.provenance.trusted_code = code_trusted()
            record.provenance.processes = distributed.processes()
            record.gates = _gated(tm, record)
        record.provenance = record.provenance or Provenance()
        record.provenance.overrides = writer.overrides
        record.resume_key = keys[number - 1]
        note(f"run {number}/{len(models)} {tm.name}: {_outcome(record)} in "
             f"{time.perf_counter() - started:.0f} s", progress)
        records.append(write_run(finished, writer.out_dir, writer.used, writer.pseudonyms))
        written = document(writer.suite, records)
        save(written, writer.out_dir)
        writer.page.write(written)
    return records, failures


def _pseudonyms(models: list[tuple[str, ThreatModel]]) -> Pseudonyms:
    """`--redact`'s pseudonyms for every identity of the datasets the runs draw from (calibration's included), and
    for the folders their photos sit in (an import names a folder after its person, made safe for a file name)."""
    datasets = dict.fromkeys(name for _, tm in models for name in [tm.data.dataset, *_calibration_dataset(tm)])
    names: set[str] = set()
    for name in datasets:
        ds = load_dataset(name)
        names.update(ds.identities)
        names.update(parts[0] for path, _ in ds.items if len(parts := path.relative_to(ds.root).parts) > 1)
    return Pseudonyms(names)


def _reusable(models: list[tuple[str, ThreatModel]], previous: dict[tuple[str, str], RunRecord],
              redact: bool) -> tuple[list[str], dict[int, RunRecord]]:
    """Each run's resume key, and the earlier records (by run number) recorded under it and redacted as this
    suite is (a clear record never enters a redacted suite, nor the reverse), their gates judged again (a record
    is never trusted)."""
    prints: dict[str, str] = {}
    keys: list[str] = []
    reused: dict[int, RunRecord] = {}
    for number, (_, tm) in enumerate(models, 1):
        used = [tm.data.dataset] + _calibration_dataset(tm)
        for name in used:
            if name not in prints:
                prints[name] = resume.dataset_fingerprint(name)
        table = attributes.load(tm.data.dataset) if tm.report.by else None  # the groups of a sliced run too
        parts = [prints[name] for name in used] + ([table.sha256] if table else [])
        keys.append(resume.resume_key(tm, "+".join(parts)))
        done = previous.get((tm.name, keys[-1]))
        if done is not None and bool(done.redacted) == redact:
            reused[number] = done.model_copy(update={  # what was run is the threat model the key matched
                "gates": _gated(tm, done), "threat_model": tm.model_dump(mode="json"), "family": tm.perturbation.kind})
    return keys, reused


def _calibration_dataset(tm: ThreatModel) -> list[str]:
    """The dataset an out-of-sample threshold is calibrated on when it is not the run's own (its files are part of
    what a resumed run must match)."""
    cal = tm.setting.calibrated() if isinstance(tm.setting, OpenSet) else None
    return [cal.dataset] if cal is not None and cal.dataset is not None and cal.dataset != tm.data.dataset else []


def _gated(tm: ThreatModel, record: RunRecord) -> list[GateResult]:
    """The threat model's gates judged on a run record's metrics and validity."""
    return _unless_broken(record, gates.judge([g.model_dump() for g in tm.gates], record))


def _unless_broken(record: RunRecord, judged: list[GateResult]) -> list[GateResult]:
    """A broken model makes attacks fail: no gate of a run with NaN or infinite embeddings may pass."""
    bad = record.validity.extra(NONFINITE) if record.validity is not None else None
    if not bad:
        return judged
    flag = f"validity.{NONFINITE}"
    return [g.model_copy(update={"passed": False}) for g in judged if g.metric != flag] + [GateResult(
        metric=flag, op="==", value=0, actual=bad if isinstance(bad, int) else None, passed=False,
        error=f"{bad} embedding(s) were NaN or infinite")]


def _fail_if_broken(results: Results) -> None:
    """The gates judged after the suite (on differences) obey the same rule as the run's own."""
    for record in results.runs:
        if record.error is None:
            record.gates = _unless_broken(record, record.gates)


def _one_run(tm: ThreatModel, source: str, device: torch.device,
             progress: bool) -> tuple[FinishedRun | None, Exception | None]:
    """The finished run, or the record of its failure and the error; outside process 0 none (the process
    works on its shards, or has no part in the run)."""
    if not runs_here(tm):
        return None, None
    try:
        finished = run_threat_model(tm, device, source, progress)
        return (finished if distributed.is_main() else None), None
    except distributed.OutOfStep:
        raise
    except Exception as exc:  # noqa: BLE001 - recorded, then raised again after the suite is written
        error = type(exc)(f"{source}: {tm.name}: {exc}") if isinstance(exc, FacesecError) else exc
        return (_failed(tm, source, error) if distributed.is_main() else None), error


def _outcome(record: RunRecord) -> str:
    """The run's headline, attempts and skipped images in a few words (or why it failed)."""
    m = record.metrics
    key = record.headline_metric()
    value = m.get(key)
    if not isinstance(value, int | float):
        return "failed"
    label = "ASR" if key == "attack_success_rate" or record.headline is None else record.headline.label
    attempts = f", {m['n_attempts']} attempts" if isinstance(m.get("n_attempts"), int) else ""
    return f"{label} {value:.3f}{attempts}, {len(record.skipped_images)} image(s) skipped"


def _earlier(path: Path) -> JsonValue:
    """An earlier results.json of this suite (None when there is none or it cannot be read)."""
    if path.is_symlink():  # never read through a link in the output folder
        return None
    try:
        return safe_json.load(path)
    except (OSError, ValueError):
        return None


def _failed(tm: ThreatModel, source: str, error: Exception) -> FinishedRun:
    """The record of a run that did not finish: shown as failed, its gate `run_completed` failing."""
    text = f"{type(error).__name__}: {error}" if not isinstance(error, FacesecError) else str(error)
    return FinishedRun(RunRecord(
        name=tm.name, source=source, threat_model=tm.model_dump(mode="json"), family=tm.perturbation.kind,
        error=text, metrics={}, validity=Validity(n_flags=1, flags=[f"run did not finish: {text}"]),
        gates=[GateResult(metric="run_completed", op="==", value=1, actual=0, passed=False, error=text)]))


def _read_results(path: Path) -> Results:
    try:
        doc = safe_json.load(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read results.json ({exc})") from exc
    return read_results(doc, str(path))
