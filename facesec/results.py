"""The versioned results record: results.json, a per-sample CSV per run, and gallery images."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from facesec import __version__
from facesec.accessories import export
from facesec.engine import RunOutput

SCHEMA_VERSION = 1


def slug(name: str) -> str:
    """A file-system-safe folder name for a run."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")[:120] or "run"


def _png(t: torch.Tensor, path: Path) -> None:
    arr = (t.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(arr).save(path)


def _write_run(output: RunOutput, out_dir: Path, used: set[str]) -> dict[str, Any]:
    record = dict(output.record)
    samples = record.pop("samples")
    name = slug(record["name"])
    while name in used:
        name += "_"
    used.add(name)
    run_dir = out_dir / "runs" / name
    run_dir.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(samples)
    table.to_csv(run_dir / "samples.csv", index=False)
    record["samples_csv"] = f"runs/{name}/samples.csv"
    worn = output.accessories
    gallery = []
    for i, (clean, adv) in enumerate(zip(output.clean, output.adversarial, strict=True)):
        files = {}
        for kind, image in (("clean", clean), ("adversarial", adv)):
            _png(image, run_dir / f"{i}_{kind}.png")
            files[kind] = f"runs/{name}/{i}_{kind}.png"
        if worn is None:
            delta = adv - clean  # around mid-grey, stretched by its own largest change so L2 noise stays visible
            _png(delta / (2 * delta.abs().max().clamp_min(1e-12)) + 0.5, run_dir / f"{i}_perturbation.png")
            files["perturbation"] = f"runs/{name}/{i}_perturbation.png"
        else:
            one = worn[min(i, len(worn) - 1)]  # a universal accessory is worn by every row
            Image.fromarray(export.rgba(one.pattern, one.mask), "RGBA").save(run_dir / f"{i}_accessory.png")
            files["accessory"] = f"runs/{name}/{i}_accessory.png"
        row = table.iloc[i]
        gallery.append({"identity": row["identity"], "target": row["target"] or None, **files,
                        "similarity_before": float(row["similarity_before"]),
                        "similarity_after": float(row["similarity_after"]),
                        "success": bool(row["success"]), "clean_success": bool(row["clean_success"])})
    if worn is not None:
        record["print_files"] = []
        for k, one in enumerate(worn):
            stem = "accessory-universal" if one.label == "universal" else f"accessory-{k}"
            names = export.write(one.pattern, one.mask, one.eye_distance_px, run_dir / "print", stem)
            record["print_files"].append({"label": one.label,
                                          **{key: f"runs/{name}/print/{n}" for key, n in names.items()}})
    record["gallery"] = gallery
    return record


def build_results(suite: str, outputs: list[RunOutput], out_dir: Path) -> dict[str, Any]:
    """Write each run's CSV and images under `out_dir` and return the results document."""
    used: set[str] = set()
    return {
        "schema_version": SCHEMA_VERSION,
        "suite": suite,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "facesec_version": __version__,
        "runs": [_write_run(o, out_dir, used) for o in outputs],
        "baseline": None,
    }


def save(results: dict[str, Any], out_dir: Path) -> Path:
    path = out_dir / "results.json"
    path.write_text(json.dumps(results, indent=2, default=_json_default) + "\n")
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
