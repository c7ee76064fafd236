"""Crash safety: `facesec run` killed with SIGKILL at random moments must never leave a broken suite.

A small suite is run once to completion; then, `--trials` times, the same suite is started into the same
folder and killed after a random delay. After every kill the folder must still hold a readable
results.json whose files all exist, a complete index.html, no half-written run folder in use, and the
next run must not be blocked by the dead process's lock. Usage:
    FACESEC_DATA=../shared/data python benchmarks/kill_trials.py [--trials 20] [--seed 0] [--window 0.05 1.0] \
        [--resume]
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUITE = """name: crash
data: {identities: 3, images_per_identity: 2}
goal: [dodging, impersonation]
attack: {steps: 2}
setting: {kind: open-set, calibration: in-sample}
"""


def _run(spec: Path, out: Path, resume: bool = False) -> subprocess.Popen[bytes]:
    extra = ["--resume"] if resume else []
    return subprocess.Popen([sys.executable, "-m", "facesec.cli", "run", str(spec), "--out", str(out), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _metrics(folder: Path) -> list[dict[str, object]]:
    """Each run's metrics, times aside (they differ between any two runs)."""
    runs = json.loads((folder / "results.json").read_text())["runs"]
    return [{k: v for k, v in r["metrics"].items() if not k.endswith("time_s")} for r in runs]


def _intact(folder: Path) -> str | None:
    """None when the suite folder is whole, else what is broken."""
    try:
        results = json.loads((folder / "results.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return f"results.json unreadable ({type(exc).__name__})"
    for run in results["runs"]:
        files = [run.get("samples_csv")] + [g[k] for g in run.get("gallery", []) for k in ("clean", "adversarial")]
        missing = [f for f in files if f and not (folder / f).is_file()]
        if missing:
            return f"{run['name']}: missing {missing[:2]}"
    html = (folder / "index.html").read_text(errors="replace") if (folder / "index.html").is_file() else ""
    if not html.rstrip().endswith("</html>"):
        return "index.html incomplete"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true",
                        help="after each kill, finish the suite with `facesec run --resume` and compare it with "
                             "the uninterrupted results")
    parser.add_argument("--window", type=float, nargs=2, default=(0.05, 1.0), metavar=("FROM", "TO"),
                        help="kill between these fractions of the uninterrupted run's time (0.75 1.05: while "
                             "results are written)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="facesec-kill-") as tmp:
        spec, out = Path(tmp) / "crash.yaml", Path(tmp) / "reports"
        spec.write_text(SUITE)
        start = time.perf_counter()
        assert _run(spec, out).wait() == 0 or (out / "crash" / "results.json").is_file(), "the first run failed"
        full = time.perf_counter() - start
        reference = json.loads((out / "crash" / "results.json").read_text())["runs"]
        print(f"uninterrupted suite: {full:.1f} s; killing {args.trials} reruns at random moments")
        broken = differing = 0
        reference_metrics = _metrics(out / "crash")
        for trial in range(args.trials):
            delay = rng.uniform(args.window[0] * full, args.window[1] * full)
            proc = _run(spec, out)
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            problem = _intact(out / "crash")
            broken += problem is not None
            resumed = ""
            if args.resume:
                kept = len(json.loads((out / "crash" / "results.json").read_text())["runs"]) if problem is None else 0
                code = _run(spec, out, resume=True).wait()
                same = code == 0 and _metrics(out / "crash") == reference_metrics
                differing += not same
                resumed = f"; {kept} run(s) on disk, --resume exited {code}, {'same' if same else 'DIFFERENT'} results"
            print(f"trial {trial + 1:2d}: killed after {delay:5.1f} s: {problem or 'suite intact'}{resumed}")
        final = _run(spec, out).wait()
        again = json.loads((out / "crash" / "results.json").read_text())["runs"]
        same = [r["metrics"] for r in again] == [r["metrics"] for r in reference] or all(
            {k: v for k, v in a["metrics"].items() if not k.endswith("time_s")}
            == {k: v for k, v in b["metrics"].items() if not k.endswith("time_s")}
            for a, b in zip(again, reference, strict=True))
        if args.resume:
            print(f"{differing} of {args.trials} resumed suites differed from the uninterrupted one")
        print(f"{broken} of {args.trials} kills left a broken suite; a run after them exited {final}, "
              f"metrics {'identical to' if same else 'DIFFERENT from'} the uninterrupted run (times aside)")


if __name__ == "__main__":
    main()
