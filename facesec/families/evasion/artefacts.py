"""An evasion run's files: gallery images (clean, attacked, amplified perturbation or accessory) and print files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from PIL import Image

from facesec.families.evasion.accessories import export
from facesec.gallery import png

if TYPE_CHECKING:
    from facesec.families.evasion.run import EvasionOutput


def write(output: EvasionOutput, run_dir: Path, rel: str, table: pd.DataFrame) -> dict[str, Any]:
    """Gallery rows (and accessories' print files) for results.json, their images written under `run_dir`."""
    worn = output.accessories
    gallery = []
    for i, (clean, adv) in enumerate(zip(output.clean, output.adversarial, strict=True)):
        files = {}
        for kind, image in (("clean", clean), ("adversarial", adv)):
            png(image, run_dir / f"{i}_{kind}.png")
            files[kind] = f"{rel}/{i}_{kind}.png"
        if worn is None:
            delta = adv - clean  # around mid-grey, stretched by its own largest change so L2 noise stays visible
            png(delta / (2 * delta.abs().max().clamp_min(1e-12)) + 0.5, run_dir / f"{i}_perturbation.png")
            files["perturbation"] = f"{rel}/{i}_perturbation.png"
        else:
            one = worn[min(i, len(worn) - 1)]  # a universal accessory is worn by every row
            Image.fromarray(export.rgba(one.pattern, one.mask), "RGBA").save(run_dir / f"{i}_accessory.png")
            files["accessory"] = f"{rel}/{i}_accessory.png"
        row = table.iloc[i]
        gallery.append({"identity": row["identity"], "target": row["target"] or None, **files,
                        "similarity_before": float(row["similarity_before"]),
                        "similarity_after": float(row["similarity_after"]),
                        "success": bool(row["success"]), "clean_success": bool(row["clean_success"])})
    added: dict[str, Any] = {"gallery": gallery}
    if worn is not None:
        added["print_files"] = []
        for k, one in enumerate(worn):
            stem = "accessory-universal" if one.label == "universal" else f"accessory-{k}"
            names = export.write(one.pattern, one.mask, one.eye_distance_px, run_dir / "print", stem)
            added["print_files"].append({"label": one.label, **{key: f"{rel}/print/{n}" for key, n in names.items()}})
    return added


def faceless(run_dir: Path) -> set[str]:
    """Accessories and their print files: the images an evasion run writes that show no face (a pixel
    perturbation, stretched, can show the face's outline, so it is blurred with the faces)."""
    return {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*")
            if p.name.endswith("_accessory.png") or p.relative_to(run_dir).parts[0] == "print"}
