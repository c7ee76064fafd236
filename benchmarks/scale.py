"""Wall time of one suite run by one process and by torchrun with N processes (same files, warm face cache).

    python benchmarks/scale.py threat_models/quickstart.yaml --processes 2 [--set attack.steps=50]

Prints each command's wall time, the speed-up over one process, and whether the two results.json files
agree (clock readings and the process count aside). The one-process baseline runs with the machine's
default thread count, as a user would run it (`--threads N` sets OMP_NUM_THREADS for it); torchrun gives
each process OMP_NUM_THREADS=1 unless set.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from facesec.results import comparable


def _timed(command: list[str], threads: int | None = None) -> float:
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS of the one-process run (default: unset)")
    parser.add_argument("--device", help="passed to facesec run (e.g. cuda); default: facesec's choice")
    args = parser.parse_args()
    extra = [a for o in args.overrides for a in ("--set", o)] + (["--device", args.device] if args.device else [])
    run = [sys.executable, "-m", "facesec", "run", *args.files, *extra, "--suite", "scale"]
    spread = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.processes}",
              "-m", "facesec", "run", *args.files, *extra, "--suite", "scale"]
    with tempfile.TemporaryDirectory() as tmp:
        _timed([*run, "--out", f"{tmp}/warm"])  # fills the face cache, loads every model once
        one = _timed([*run, "--out", f"{tmp}/one"], args.threads)
        many = _timed([*spread, "--out", f"{tmp}/many"])
        same = comparable(json.loads(Path(f"{tmp}/one/scale/results.json").read_text())) == comparable(
            json.loads(Path(f"{tmp}/many/scale/results.json").read_text()))
    threads = f" ({args.threads} thread(s))" if args.threads else ""
    print(f"1 process{threads}: {one:.1f} s; torchrun {args.processes} processes: {many:.1f} s; "
          f"speed-up {one / many:.2f}x; "
          f"results.json {'equal' if same else 'NOT equal (thread counts differ: see docs/scale.md)'}")


if __name__ == "__main__":
    main()
