"""The report kept up to date during a suite: the page written after each of N finished runs, two ways.

- from disk (how `facesec run` did it before issue 38): results.json saved, then read back and every run's
  section built again (its gallery images read, redacted and encoded) after every run: N(N+1)/2 sections;
- `ReportBuilder` (now): the records in memory, each run's section built once and kept: N sections.

Synthetic pixel runs, each with a six-row gallery of 150 px noise images (never a face), redaction on as an
auditor's copy would have it. Prints both totals and their ratio, measured in the same process. Usage:
    python benchmarks/report_updates.py [--runs 30]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from facesec.record import Results, RunRecord
from facesec.report.render import ReportBuilder, render_report
from facesec.results import SCHEMA_VERSION, save


def _run(folder: Path, index: int, rng: np.random.Generator) -> RunRecord:
    """A finished pixel run with its gallery images written under `folder`."""
    run_dir = folder / "runs" / f"r{index}"
    run_dir.mkdir(parents=True)
    gallery = []
    for row in range(6):
        for kind in ("clean", "adversarial", "perturbation"):
            Image.fromarray(rng.integers(0, 256, (150, 150, 3), dtype=np.uint8)).save(run_dir / f"{row}_{kind}.png")
        gallery.append({"identity": str(row), "target": None, "similarity_before": 0.7, "similarity_after": 0.2,
                        "success": True, "clean_success": False,
                        **{k: f"runs/r{index}/{row}_{k}.png" for k in ("clean", "adversarial", "perturbation")}})
    return RunRecord.model_validate({
        "name": f"run {index}", "family": "pixel", "eps": 8 / 255,
        "threat_model": {"perturbation": {"kind": "pixel"}, "knowledge": "white-box"},
        "dimensions": {"recognizer": "dlib-resnet", "perturbation": "pixel linf 8/255", "goal": "dodging"},
        "metrics": {"attack_success_rate": 0.5, "attack_success_ci95": [0.3, 0.7], "n_attempts": 20},
        "validity": {"n_flags": 0, "flags": []}, "gallery": gallery})


def _time(folder: Path, runs: list[RunRecord], incremental: bool) -> float:
    """Seconds to write the page after each run in turn."""
    builder = ReportBuilder(folder, folder / "index.html", redact=True)
    start = time.perf_counter()
    for k in range(1, len(runs) + 1):
        results = Results(schema_version=SCHEMA_VERSION, suite="bench", runs=runs[:k])
        if incremental:
            builder.write(results)
        else:
            save(results, folder)
            render_report(folder / "results.json", redact=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rng = np.random.default_rng(0)
        runs = [_run(folder, i, rng) for i in range(args.runs)]
        disk = _time(folder, runs, incremental=False)
        kept = _time(folder, runs, incremental=True)
    print(f"{platform.machine()}, {args.runs} runs of 6 gallery rows, redacted")
    print(f"from disk, every section rebuilt after each run: {disk:.1f} s")
    print(f"ReportBuilder, each section built once:          {kept:.1f} s  ({disk / kept:.1f}x faster)")


if __name__ == "__main__":
    main()
