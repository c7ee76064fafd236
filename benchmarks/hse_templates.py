"""Which crop hse-faceres was trained on: clean verification and rank-1 on a dataset for each
candidate alignment template (dlib chips at several paddings, an ArcFace-style layout at 224 px).

Usage: FACESEC_DATA=../shared/data python benchmarks/hse_templates.py [--data celeba-mini]
(needs `facesec models fetch hse-faceres`). Prints a Markdown table; docs/recognizers.md has the result.
"""

from __future__ import annotations

import argparse
import time

from facesec.api import evaluate
from facesec.data.align import HSE_CANDIDATES
from facesec.recognizers.base import load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default="celeba-mini")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", help="template names to try (default: every candidate)")
    args = ap.parse_args()
    print("| template | faces | best accuracy | TAR at FMR 1e-2 | TAR at FMR 1e-3 | rank-1 | seconds |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for template in HSE_CANDIDATES:
        if args.only and template.name not in args.only:
            continue
        t = time.perf_counter()
        r = evaluate(load({"name": "hse-faceres", "template": template.name}), args.data, seed=args.seed,
                     progress=False)
        print(f"| {template.name} | {r['n_faces']} | {r['best_accuracy']:.3f} | {r['tar_at_fmr']['0.01']:.3f} | "
              f"{r['tar_at_fmr']['0.001']:.3f} | {r['rank1']:.3f} | {time.perf_counter() - t:.0f} |", flush=True)


if __name__ == "__main__":
    main()
