"""The report's view model (facesec.report.render.build_report) asserted as data, not HTML: the verdict, failed
gates, flags, matrix, figure sections, headlines, legends, glossary, skipped images and the evasion family's view;
ReportBuilder's cache of family views; and one whole page compared with a committed golden file
(FACESEC_REGOLD=1 writes it instead). Every picture is synthetic noise, never a face."""

from __future__ import annotations

import base64
import difflib
import hashlib
import io
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from PIL import Image

from facesec import families
from facesec.families.evasion import METRICS, Accessory, Pixel
from facesec.families.evasion.report import GalleryItem, PrintFile
from facesec.plugins import FAMILIES
from facesec.record import Results, RunRecord
from facesec.redaction import REDACTED_SIDE
from facesec.report.fields import DASH
from facesec.report.links import Link
from facesec.report.render import (
    FigureSection,
    Flag,
    Gate,
    Report,
    ReportBuilder,
    Row,
    RunView,
    build_report,
    load_results,
    rating_style,
    render_report,
)
from facesec.results import read_results

GOLDEN = Path(__file__).parent / "fixtures" / "golden_report.html"
SOURCE = "threat_models/quickstart.yaml"
SIDE = 24
OOM = "RuntimeError: CUDA out of memory"
BROKEN = "gradient masking suspected (or a broken attack): the unbounded run reached 0.40 < 0.95"
SKIP_X = {"path": "celeba-mini/7/x.jpg", "reason": "no face detected"}
SKIP_Y = {"path": "celeba-mini/9/y.jpg", "reason": "cannot identify image file"}


# --- synthetic files and records ---------------------------------------------------------------------------------

def _noise(seed: int, shape: tuple[int, ...] = (SIDE, SIDE, 3)) -> np.ndarray:
    """Deterministic noise pixels from an integer hash (the same on every machine and numpy version)."""
    index = np.arange(int(np.prod(shape)), dtype=np.uint64) + np.uint64(seed * 7919)
    mixed = (index * np.uint64(2654435761) + np.uint64(seed)) % np.uint64(2**32)
    mixed ^= mixed >> np.uint64(15)
    return ((mixed * np.uint64(2246822519)) % np.uint64(2**32) >> np.uint64(13)).astype(np.uint8).reshape(shape)


def _save(path: Path, pixels: np.ndarray, mode: str = "RGB") -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode).save(path)
    return pixels


def _pixel_gallery(root: Path, folder: str, seed: int, n: int,
                   target: str | None = "9001") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`n` gallery rows of noise faces (clean, attacked, stored perturbation around mid-grey), and their pixels;
    the first fooled the recognizer."""
    rows, pixels = [], []
    for i in range(n):
        clean = _save(root / folder / f"{i}_clean.png", _noise(seed + 3 * i))
        delta = ((_noise(seed + 3 * i + 1).astype(int) % 17) - 8)  # -8 .. 8 around mid-grey
        adversarial = _save(root / folder / f"{i}_adv.png", np.clip(clean.astype(int) + delta, 0, 255).astype(np.uint8))
        stored = _save(root / folder / f"{i}_delta.png", (128 + delta).astype(np.uint8))
        rows.append({"identity": f"72{i:02d}", "target": target, "clean": f"{folder}/{i}_clean.png",
                     "adversarial": f"{folder}/{i}_adv.png", "perturbation": f"{folder}/{i}_delta.png",
                     "similarity_before": -0.40, "similarity_after": -0.71, "success": i == 0})
        pixels.append({"clean": clean, "adversarial": adversarial, "perturbation": stored})
    return rows, pixels


def _accessory_files(root: Path, folder: str, seed: int) -> dict[str, np.ndarray]:
    """A noise face, the face wearing a band-shaped accessory, the accessory alone (RGBA), its print and mask."""
    face, pattern = _noise(seed), _noise(seed + 1)
    mask = np.zeros((SIDE, SIDE), dtype=bool)
    mask[6:11, 3:21] = True
    worn = np.where(mask[..., None], pattern, face)
    alone = np.dstack([np.where(mask[..., None], pattern, 0), np.where(mask, 255, 0)]).astype(np.uint8)
    _save(root / folder / "0_clean.png", face)
    _save(root / folder / "0_worn.png", worn)
    _save(root / folder / "0_accessory.png", alone, "RGBA")
    Image.fromarray(alone, "RGBA").resize((96, 96), Image.Resampling.NEAREST).save(root / folder / "0_print.png")
    _save(root / folder / "0_mask.png", mask.astype(np.uint8) * 255, "L")
    return {"clean": face, "adversarial": worn, "accessory": alone}


def _pixel(name: str, eps_255: int, asr: float, ci: list[float], goal: str = "dodging", **extra: Any) -> dict[str, Any]:
    """A pixel run's record as the engine writes it, passing one gate."""
    eps = eps_255 / 255
    return {
        "name": name, "source": SOURCE, "family": "pixel",
        "threat_model": {"name": name, "perturbation": {"kind": "pixel", "norm": "linf", "eps": eps}},
        "dimensions": {"recognizer": "dlib-resnet", "perturbation": f"pixel linf {eps_255}/255",
                       "knowledge": "white-box", "goal": goal, "capability": "individual",
                       "setting": "open-set FMR 0.001"},
        "eps": eps,
        "metrics": {"attack_success_rate": asr, "attack_success_ci95": ci, "n_attempts": 38,
                    "noise_success_rate": 0.0, "similarity_shift_mean": -0.34},
        "validity": {"noise_baseline_asr": 0.0, "unbounded_asr": 1.0, "n_flags": 0, "flags": []},
        "gates": [{"metric": "attack_success_rate", "op": "<=", "value": 0.99, "actual": asr, "passed": True}],
        "headline": {"metric": "attack_success_rate", "label": "attack_success_rate", "better": "lower"},
        "provenance": {"started": "2026-11-28T08:00:00+00:00", "finished": "2026-11-28T08:00:12+00:00",
                       "seed": 0, "device": "cpu"},
        **extra,
    }


def _impersonation(name: str, gallery: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """An impersonation run at 8/255 whose gate failed and whose unbounded check flagged it."""
    run = _pixel(name, 8, 0.83, [0.71, 0.91], goal="impersonation", gallery=gallery, **extra)
    run["gates"] = [{"metric": "attack_success_rate", "op": "<=", "value": 0.5, "actual": 0.83, "passed": False}]
    run["metrics"]["threshold"] = -0.5921
    run["validity"].update(unbounded_asr=0.4, n_flags=1, flags=[BROKEN])
    return run


def _accessory(name: str, asr: float, ci: list[float], plain: float, eot: float | None,
               **extra: Any) -> dict[str, Any]:
    run = _pixel(name, 0, asr, ci, **extra)
    run["family"] = "accessory"
    run["threat_model"]["perturbation"] = {"kind": "accessory", "shape": "eyeglasses"}
    run["dimensions"]["perturbation"] = "accessory eyeglasses"
    run["eps"] = None
    run["metrics"].update(plain_accessory_success_rate=plain, eot_success_rate=eot,
                          eot_draws=None if eot is None else 8)
    return run


def _print_files(folder: str, mask: str = "0_mask.png") -> list[dict[str, Any]]:
    return [{"label": "sample 0: id0", "png": f"{folder}/0_accessory.png", "print_png": f"{folder}/0_print.png",
             "mask_png": f"{folder}/{mask}"}]


def _failed(name: str) -> dict[str, Any]:
    """A run that did not finish, as facesec.api records it: its error, a flag and the failing run_completed gate."""
    return {"name": name, "source": SOURCE, "family": "pixel",
            "threat_model": {"name": name, "perturbation": {"kind": "pixel", "norm": "linf", "eps": 8 / 255}},
            "error": OOM, "metrics": {}, "validity": {"n_flags": 1, "flags": [f"run did not finish: {OOM}"]},
            "gates": [{"metric": "run_completed", "op": "==", "value": 1, "actual": 0, "passed": False, "error": OOM}],
            "samples_csv": "runs/broken/samples.csv"}


def _document(runs: list[dict[str, Any]], suite: str = "quickstart", **extra: Any) -> dict[str, Any]:
    return {"schema_version": 1, "suite": suite, "created": "2026-11-28T08:00:00+00:00", "facesec_version": "0.1.0",
            "runs": runs, "baseline": None, **extra}


def _decode(uri: str | None) -> np.ndarray:
    """The pixels of a `data:image/png;base64,...` URI, in the PNG's own mode."""
    assert uri is not None and uri.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as im:
        return np.asarray(im.copy())


# --- the suite the view-model tests share ------------------------------------------------------------------------

SWEEP = [("quickstart[eps=2/255]", 2, 0.31, [0.18, 0.47]), ("quickstart[eps=4/255]", 4, 0.62, [0.46, 0.76]),
         ("quickstart[eps=8/255]", 8, 0.97, [0.90, 0.99])]
IMP, GLASSES, NO_EOT, BROKEN_RUN, PLUGIN = ("quickstart[goal=impersonation]", "glasses", "glasses-no-eot",
                                            "quickstart[recognizer=broken]", "plugin-run")


class Suite:
    """The shared synthetic suite: its folder, the parsed document, the pixels behind its galleries, and its page
    model built plain and redacted."""

    def __init__(self, root: Path) -> None:
        self.root = root
        gallery, self.pixel_pixels = _pixel_gallery(root, "runs/imp", 10, 2)
        self.accessory_pixels = _accessory_files(root, "runs/acc", 40)
        (root / "runs" / "imp" / "samples.csv").write_text("index,identity\n0,x\n", encoding="utf-8")
        runs: list[dict[str, Any]] = [_pixel(name, k, asr, ci, skipped_images=[SKIP_X]) for name, k, asr, ci in SWEEP]
        runs.append(_impersonation(IMP, gallery, samples_csv="runs/imp/samples.csv", skipped_images=[SKIP_X, SKIP_Y]))
        worn = {"identity": "id0", "target": None, "clean": "runs/acc/0_clean.png",
                "adversarial": "runs/acc/0_worn.png", "accessory": "runs/acc/0_accessory.png",
                "similarity_before": 0.7, "similarity_after": 0.2, "success": True, "clean_success": False}
        runs.append(_accessory(GLASSES, 0.83, [0.73, 0.88], 0.3, 0.97, gallery=[worn],
                               print_files=_print_files("runs/acc"), skipped_images=[SKIP_Y]))
        runs.append(_accessory(NO_EOT, 0.6, [0.5, 0.65], 0.25, None,
                               print_files=_print_files("runs/acc", mask="missing_mask.png")))
        runs.append(_failed(BROKEN_RUN))
        runs.append({"name": PLUGIN, "family": "not-installed", "source": "threat_models/plugin.yaml",
                     "dimensions": {"recognizer": "dlib-resnet", "perturbation": "blend", "knowledge": "white-box",
                                    "goal": "impersonation", "capability": "individual",
                                    "setting": "open-set FMR 0.001"},
                     "metrics": {"mmpmr": 0.9, "mmpmr_ci95": [0.8, 0.95]},
                     "headline": {"metric": "mmpmr", "label": "MMPMR", "better": "lower"},
                     "gates": [{"metric": "mmpmr", "op": "<=", "value": 0.5}]})  # no verdict, no validity
        baseline = {"path": "old/results.json", "rules": [
            {"run": "quickstart[eps=8/255]", "metric": "attack_success_rate", "old": 0.9, "new": 0.97,
             "max_increase": 0.05, "passed": False},
            {"run": GLASSES, "metric": "eot_success_rate", "old": 0.97, "new": 0.97, "max_increase": 0.0,
             "passed": True},
            {"run": "gone", "metric": "attack_success_rate", "new": 0.5, "passed": None,
             "note": "not in the baseline"}]}
        self.doc = _document(runs, baseline=baseline)
        self.results = read_results(self.doc, "synthetic")
        self.out = root / "site"
        self.plain = build_report(self.results, root, self.out, redact=False)
        self.redacted = build_report(self.results, root, self.out, redact=True)

    def run(self, report: Report, name: str) -> RunView:
        return next(r for r in report.runs if r.name == name)


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Suite:
    return Suite(tmp_path_factory.mktemp("view"))


# --- the page around the runs ------------------------------------------------------------------------------------

def test_verdict_and_failed_gates(suite: Suite) -> None:
    r = suite.plain
    assert (r.suite, r.created, r.facesec_version, r.n_runs, r.redacted) == (
        "quickstart", "2026-11-28T08:00:00+00:00", "0.1.0", 8, False)
    assert r.verdict == "FAIL"
    assert r.failed == [
        Gate(IMP, "attack_success_rate", "<= 0.5", "0.83", False, "run-4"),
        Gate(BROKEN_RUN, "run_completed", "== 1", "0", False, "run-7", OOM),  # the error is the gate's note
        Gate(PLUGIN, "mmpmr", "<= 0.5", DASH, None, "run-8"),  # no verdict is no pass
        Gate("quickstart[eps=8/255]", "attack_success_rate", "≤ 0.95 (0.9 + 0.05)", "0.97 (+0.07)", False, "run-3"),
        Gate("gone", "attack_success_rate", DASH, "0.5", None, "", "not in the baseline"),
    ]
    assert (r.gates_held, r.gates_total) == (6, 11)  # 8 run gates and 3 baseline rules
    assert r.baseline_path == "old/results.json" and r.baseline is not None and len(r.baseline) == 3
    assert r.baseline[1] == Gate(GLASSES, "eot_success_rate", "≤ 0.97 (0.97 + 0)", "0.97 (+0)", True, "run-5")
    assert [run.failed for run in r.runs] == [False, False, False, True, False, False, True, True]


@pytest.mark.parametrize(("gates", "verdict"), [
    ([{"metric": "attack_success_rate", "op": "<=", "value": 0.99, "actual": 0.2, "passed": True}], "PASS"),
    ([], "NO GATES"),
    ([{"metric": "attack_success_rate", "op": "<=", "value": 0.99}], "FAIL"),
])
def test_verdict_of_one_run(tmp_path: Path, gates: list[dict[str, Any]], verdict: str) -> None:
    results = read_results(_document([_pixel("single", 8, 0.2, [0.1, 0.3], gates=gates)]), "synthetic")
    report = build_report(results, tmp_path, tmp_path, redact=False)
    assert report.verdict == verdict and report.baseline is None and report.baseline_path is None
    assert (report.gates_held, report.gates_total) == (int(verdict == "PASS"), len(gates))


def test_flags_and_unchecked(suite: Suite) -> None:
    assert suite.plain.flags == [Flag(IMP, "run-4", BROKEN), Flag(BROKEN_RUN, "run-7", f"run did not finish: {OOM}")]
    assert suite.plain.unchecked == [PLUGIN]  # the only run without validity checks


def _cells(report: Report) -> dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[float | None, list[tuple]]]:
    """The non-empty matrix cells by (row, column): the worst rate and each entry's fields."""
    found = {}
    for row, cells in report.matrix.rows:
        assert len(cells) == len(report.matrix.columns)
        for column, cell in zip(report.matrix.columns, cells, strict=True):
            if cell.entries:
                found[row, column] = (cell.worst, [(e.anchor, e.name, e.text, e.detail, e.flagged, e.failed)
                                                   for e in cell.entries])
            else:
                assert cell.worst is None and cell.style == rating_style(None)
    return found


def test_matrix_rows_columns_and_cells(suite: Suite) -> None:
    r = suite.plain
    assert r.row_keys == ("recognizer", "perturbation", "knowledge", "setting", "attack")
    dodging, impersonation, none = ("dodging", "individual"), ("impersonation", "individual"), (DASH, DASH)
    assert r.matrix.columns == [dodging, impersonation, none]

    def row(perturbation: str) -> tuple[str, ...]:
        return ("dlib-resnet", perturbation, "white-box", "open-set FMR 0.001", DASH)

    unknown = (DASH,) * 5  # the failed run has no dimensions
    assert [key for key, _ in r.matrix.rows] == [row("pixel linf 2/255"), row("pixel linf 4/255"),
                                                 row("pixel linf 8/255"), row("accessory eyeglasses"), unknown,
                                                 row("blend")]
    assert _cells(r) == {
        (row("pixel linf 2/255"), dodging): (0.47, [("run-1", SWEEP[0][0], "0.31 [0.18–0.47]", "", False, False)]),
        (row("pixel linf 4/255"), dodging): (0.76, [("run-2", SWEEP[1][0], "0.62 [0.46–0.76]", "", False, False)]),
        (row("pixel linf 8/255"), dodging): (0.99, [("run-3", SWEEP[2][0], "0.97 [0.90–0.99]", "", False, False)]),
        (row("pixel linf 8/255"), impersonation): (0.91, [("run-4", IMP, "0.83 [0.71–0.91]", "", True, True)]),
        (row("accessory eyeglasses"), dodging): (0.88, [  # the worst upper end of its two runs
            ("run-5", GLASSES, "0.83 [0.73–0.88]", "plain 0.30 · EOT 0.97", False, False),
            ("run-6", NO_EOT, "0.60 [0.50–0.65]", "plain 0.25 · EOT —", False, False)]),
        (unknown, none): (None, [("run-7", BROKEN_RUN, DASH, "", True, True)]),
        (row("blend"), impersonation): (0.95, [("run-8", PLUGIN, "MMPMR 0.90 [0.80–0.95]", "", False, True)]),
    }
    styles = {key: cell.style for key, cells in r.matrix.rows for cell in cells if cell.entries}
    # cells are coloured by the rating of their worst rate's upper 95% end: the cut-offs the ratings state
    assert styles[unknown] == rating_style(None) == "background:#eeeeee;color:#555555"
    assert styles[row("pixel linf 2/255")] == rating_style("weak") == "background:#f08c4b;color:#1f2328"
    assert styles[row("pixel linf 8/255")] == rating_style("not robust") == "background:#c62828;color:#ffffff"
    assert rating_style("robust") == "background:#1a7f37;color:#ffffff"


def test_figure_sections(suite: Suite) -> None:
    [section] = suite.plain.figures  # the dodging sweep; the impersonation run is one eps, accessories have none
    assert isinstance(section, FigureSection)
    assert (section.heading, section.anchor) == ("Attack success vs perturbation budget",
                                                 "attack-success-vs-perturbation-budget")
    assert section.note.startswith("Runs that differ only in eps")
    [figure] = section.figures
    assert (figure.title, figure.css) == ("pixel linf", "eps-asr-plot")  # the alt text: the perturbation kind
    assert _decode(figure.uri).shape[0] > 100  # a drawn figure


def test_headlines_legends_and_glossary(suite: Suite) -> None:
    r = suite.plain
    assert r.headlines == [
        ("ASR", METRICS["attack_success_rate"].meaning + ", with its 95% interval (people resampled, where the run "
                "records it: outcomes of one person are not independent): lower is more robust"),
        ("MMPMR", ""),  # a family not installed here: its headline is shown without words
    ]
    assert r.legends == [("accessory", Accessory.legend)]  # no transfer or query run, and pixel has no legend
    glossary = {t.key: (t.label, t.meaning) for t in r.glossary}
    assert list(glossary) == sorted(glossary)
    assert list(glossary) == ["attack_success_ci95", "attack_success_rate", "eot_draws", "eot_success_rate",
                              "mmpmr", "mmpmr_ci95", "n_attempts", "noise_success_rate", "plain_accessory_success_rate",
                              "similarity_shift_mean", "threshold"]
    assert glossary["attack_success_rate"] == ("attack_success_rate", METRICS["attack_success_rate"].meaning)
    assert glossary["plain_accessory_success_rate"] == ("plain_accessory_success_rate",
                                                        "plain accessory (baseline) success")
    assert glossary["mmpmr"] == ("mmpmr", "not described by its family")  # the plug-in family describes nothing
    assert all(meaning not in (key, label) for key, (label, meaning) in glossary.items())  # never circular
    assert [(x.family, x.rating, x.anchor) for x in r.ratings] == [("pixel", "not robust", "run-3"),
                                                                  ("accessory", "not robust", "run-5")]
    assert [f.family for f in r.findings] == ["pixel"] * 4 + ["accessory"] * 2 + ["pixel", "unknown"]
    assert r.findings[6].text == f"{BROKEN_RUN} did not finish: {OOM}" and r.findings[6].rate is None


def test_skipped_images_once_with_their_runs(suite: Suite) -> None:
    assert suite.plain.skipped == [
        ("4 runs", SKIP_X["path"], SKIP_X["reason"]),  # four runs or more are counted, not named
        (f"{IMP}, {GLASSES}", SKIP_Y["path"], SKIP_Y["reason"]),
    ]


# --- one run's section --------------------------------------------------------------------------------------------

def test_run_rows(suite: Suite) -> None:
    sweep8 = suite.run(suite.plain, "quickstart[eps=8/255]")
    assert (sweep8.index, sweep8.anchor, sweep8.asr, sweep8.headline_label) == (2, "run-3", "0.97 [0.90–0.99]", "ASR")
    assert sweep8.dimensions[-1] == Row("eps", "0.03137 (8/255)")
    assert [row.key for row in sweep8.dimensions] == ["recognizer", "perturbation", "knowledge", "goal",
                                                      "capability", "setting", "attack", "eps"]
    assert Row("attack_success_ci95", "[0.9, 0.99]") in sweep8.metrics
    assert sweep8.provenance is not None and sweep8.provenance[-1] == Row("duration", "12.0 s")
    assert sweep8.partial == "evasion.html.j2" and sweep8.samples == Link(DASH, None, False)
    assert json.loads(sweep8.threat_model or "")["perturbation"]["kind"] == "pixel"
    glasses = suite.run(suite.plain, GLASSES)
    assert Row("plain accessory (baseline) success", "0.3", "plain_accessory_success_rate") in glasses.metrics
    assert Row("attack success, digital (accessory worn as is)", "0.83", "attack_success_rate") in glasses.metrics
    assert "eps" not in [row.key for row in glasses.dimensions]  # an accessory has no budget


def test_failed_run(suite: Suite) -> None:
    broken = suite.run(suite.plain, BROKEN_RUN)
    assert (broken.asr, broken.headline_label, broken.metrics, broken.failed) == (DASH, "ASR", [], True)
    assert broken.dimensions == [Row(key, DASH) for key in ("recognizer", "perturbation", "knowledge", "goal",
                                                            "capability", "setting", "attack")]
    assert broken.validity == [Row("n_flags", "1")] and broken.flags == [f"run did not finish: {OOM}"]
    assert broken.gates == [Gate(BROKEN_RUN, "run_completed", "== 1", "0", False, "run-7", OOM)]
    assert broken.samples == Link("runs/broken/samples.csv", "../runs/broken/samples.csv", False)
    assert broken.provenance is None
    assert broken.view == {"accessory": False, "gallery": [], "print_files": [], "threshold": ""}
    plugin = suite.run(suite.plain, PLUGIN)
    assert (plugin.partial, plugin.view, plugin.validity, plugin.asr) == (None, {}, None, "0.90 [0.80–0.95]")
    assert plugin.metrics == [Row("mmpmr", "0.9"), Row("mmpmr_ci95", "[0.8, 0.95]")]


def test_pixel_gallery_redacts_faces_not_perturbations(suite: Suite) -> None:
    plain, redacted = suite.run(suite.plain, IMP).view, suite.run(suite.redacted, IMP).view
    assert (plain["accessory"], plain["threshold"], plain["print_files"]) == (False, "-0.592", [])
    assert suite.run(suite.plain, "quickstart[eps=2/255]").view["gallery"] == []
    assert len(plain["gallery"]) == len(redacted["gallery"]) == 2
    assert suite.run(suite.plain, IMP).samples == Link("runs/imp/samples.csv", "../runs/imp/samples.csv", True)
    for seen, hidden, pixels in zip(plain["gallery"], redacted["gallery"], suite.pixel_pixels, strict=True):
        assert isinstance(seen, GalleryItem) and seen.accessory is None
        for kind in ("clean", "adversarial"):
            assert np.array_equal(_decode(getattr(seen, kind)), pixels[kind])
            small = Image.fromarray(_decode(getattr(hidden, kind)))  # as small as a redacted face: nothing finer
            side = pixels[kind].shape[1::-1]
            assert small.size == (side if max(side) <= REDACTED_SIDE else tuple(round(n / 4) for n in side))
            blurred = np.asarray(small.resize(pixels[kind].shape[1::-1], Image.Resampling.BILINEAR)).astype(int)
            assert np.abs(blurred - pixels[kind]).mean() > 20
        centred = pixels["perturbation"].astype(np.float32) - 128
        factor = 127 / float(np.abs(centred).max())
        expected = np.clip(128 + centred * factor, 0, 255).round().astype(np.uint8)
        assert np.array_equal(_decode(seen.perturbation), expected)
        assert seen.perturbation == hidden.perturbation  # the perturbation is not a face: never blurred
        assert seen.amplification == hidden.amplification == f"×{factor:.0f}"
        assert (seen.similarity_before, seen.similarity_after, seen.target) == ("-0.400", "-0.710", "9001")
    assert [g.success for g in plain["gallery"]] == [True, False]
    assert [g.identity for g in plain["gallery"]] == ["7200", "7201"]


def test_accessory_gallery_and_print_files(suite: Suite) -> None:
    plain, redacted = suite.run(suite.plain, GLASSES).view, suite.run(suite.redacted, GLASSES).view
    assert (plain["accessory"], plain["threshold"]) == (True, "")
    [seen], [hidden] = plain["gallery"], redacted["gallery"]
    pixels = suite.accessory_pixels
    assert seen.perturbation is None and seen.amplification == "" and seen.target is None
    assert np.array_equal(_decode(seen.accessory), pixels["accessory"])  # RGBA, transparency kept
    assert seen.accessory == hidden.accessory
    assert np.array_equal(_decode(seen.adversarial), pixels["adversarial"])
    assert not np.array_equal(_decode(hidden.clean), pixels["clean"])

    def found(name: str, present: bool = True) -> Link:
        return Link(f"runs/acc/{name}", f"../runs/acc/{name}", present)  # relative to the report in site/

    assert plain["print_files"] == [PrintFile("sample 0: id0", found("0_accessory.png"), found("0_print.png"),
                                              found("0_mask.png"))]
    no_eot = suite.run(suite.plain, NO_EOT).view
    assert no_eot["gallery"] == [] and no_eot["print_files"][0].mask_png == found("missing_mask.png", False)


# --- the builder's cache -----------------------------------------------------------------------------------------

class _CountingPixel(Pixel):
    """The pixel family under another name, counting the views it builds per run."""

    name: ClassVar[str] = "counting-pixel"
    built: ClassVar[Counter[str]] = Counter()

    def report_view(self, run: RunRecord, results_dir: Path, out_dir: Path, redact: bool) -> dict[str, Any]:
        self.built[run.name] += 1
        return super().report_view(run, results_dir, out_dir, redact)


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """_CountingPixel registered for this test only."""
    for registry_part in ("_entries", "_loaded"):
        monkeypatch.setattr(FAMILIES, registry_part, {**getattr(FAMILIES, registry_part)})
    monkeypatch.setattr(families, "_INSTANCES", {**families._INSTANCES})
    families.register(_CountingPixel)
    _CountingPixel.built.clear()
    return _CountingPixel.built


def test_builder_builds_each_view_once(tmp_path: Path, counting: Counter[str]) -> None:
    gallery, _ = _pixel_gallery(tmp_path, "runs/a", 60, 1)
    runs = [_pixel(name, 8, 0.5, [0.4, 0.6], goal=goal, family="counting-pixel", gallery=gallery)
            for name, goal in (("a", "dodging"), ("b", "impersonation"))]
    builder = ReportBuilder(tmp_path)
    first = builder.write(read_results(_document(runs), "synthetic"))
    assert counting == {"a": 1, "b": 1}
    page = first.read_text(encoding="utf-8")
    runs.append(_pixel("c", 4, 0.3, [0.2, 0.4], family="counting-pixel"))
    second = builder.write(read_results(_document(runs), "synthetic"))
    assert second == first == tmp_path / "index.html"
    assert counting == {"a": 1, "b": 1, "c": 1}  # only the new run's view was built
    html = second.read_text(encoding="utf-8")
    assert html.count('class="face clean"') == page.count('class="face clean"') == 2  # the kept views are shown
    runs[0]["metrics"]["attack_success_rate"] = 0.55  # a changed record is a new view
    builder.write(read_results(_document(runs), "synthetic"))
    assert counting == {"a": 2, "b": 1, "c": 1}
    build_report(read_results(_document(runs), "synthetic"), tmp_path, tmp_path, redact=False)
    assert counting == {"a": 3, "b": 2, "c": 2}  # without a builder every view is built afresh


# --- the whole page against a golden file ------------------------------------------------------------------------

_DATA_URI = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]+")


def _normalised(html: str) -> tuple[str, list[str]]:
    """The page with each PNG data URI replaced by its number, and what each holds (mode, size, pixel digest):
    the pixels are compared, not the encoder's bytes, which may differ between zlib builds."""
    images: list[str] = []

    def replace(match: re.Match[str]) -> str:
        pixels = _decode(match.group(0))
        images.append(f"{pixels.dtype}{pixels.shape} {hashlib.sha256(pixels.tobytes()).hexdigest()[:16]}")
        return f"data:image/png;base64,<image {len(images)}>"

    return _DATA_URI.sub(replace, html), images


def _golden_suite(root: Path) -> Path:
    """Four runs at one budget (so no matplotlib figure): a passing dodging run with a gallery, an impersonation
    run with a failed gate and a flag, an accessory run with print files (one missing), a run that failed;
    one baseline rule and one skipped image."""
    dodge_gallery, _ = _pixel_gallery(root, "runs/dodge", 100, 1, target=None)
    imp_gallery, _ = _pixel_gallery(root, "runs/imp", 200, 1)
    _accessory_files(root, "runs/acc", 300)
    (root / "runs" / "dodge" / "samples.csv").write_text("index,identity\n0,7200\n", encoding="utf-8")
    worn = {"identity": "id0", "target": None, "clean": "runs/acc/0_clean.png", "adversarial": "runs/acc/0_worn.png",
            "accessory": "runs/acc/0_accessory.png", "similarity_before": 0.7, "similarity_after": 0.2,
            "success": True, "clean_success": False}
    runs = [_pixel("golden[goal=dodging]", 8, 0.25, [0.14, 0.41], gallery=dodge_gallery,
                   samples_csv="runs/dodge/samples.csv", skipped_images=[SKIP_X]),
            _impersonation("golden[goal=impersonation]", imp_gallery),
            _accessory("golden[kind=accessory]", 0.4, [0.3, 0.5], 0.1, 0.35, gallery=[worn],
                       print_files=_print_files("runs/acc", mask="missing_mask.png")),
            _failed("golden[recognizer=broken]")]
    baseline = {"path": "baseline/results.json", "rules": [
        {"run": "golden[goal=dodging]", "metric": "attack_success_rate", "old": 0.2, "new": 0.25,
         "max_increase": 0.1, "passed": True}]}
    path = root / "results.json"
    path.write_text(json.dumps(_document(runs, suite="golden", baseline=baseline)), encoding="utf-8")
    return path


def test_page_matches_golden(tmp_path: Path) -> None:
    results = _golden_suite(tmp_path)
    assert isinstance(load_results(results), Results)
    html = render_report(results).read_text(encoding="utf-8")
    assert "eps-asr-plot" not in html and str(tmp_path) not in html
    if os.environ.get("FACESEC_REGOLD") == "1":
        GOLDEN.write_text(html, encoding="utf-8")
        pytest.fail(f"FACESEC_REGOLD=1: wrote {GOLDEN}; read it, then run the tests without FACESEC_REGOLD")
    assert GOLDEN.is_file(), f"{GOLDEN} is missing: write it with FACESEC_REGOLD=1"
    want, want_images = _normalised(GOLDEN.read_text(encoding="utf-8"))
    got, got_images = _normalised(html)
    if got != want:
        diff = "\n".join(list(difflib.unified_diff(want.splitlines(), got.splitlines(), "golden", "rendered",
                                                   lineterm="", n=1))[:80])
        pytest.fail(f"the page differs from {GOLDEN.name} (FACESEC_REGOLD=1 rewrites it):\n{diff}")
    assert got_images == want_images, "the page's images differ from the golden file's"
