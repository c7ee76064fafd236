"""What a dataset holds, told to a person choosing one: identities, images, what was skipped and why, and the
smallest false-match rate its impostor pairs can support."""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facesec.csv_cells import safe_cell
from facesec.data import attributes
from facesec.data.dataset import Dataset, load_dataset
from facesec.data.images import UnusableImage, read_rgb
from facesec.progress import bar
from facesec.protocols import SUPPORT_COUNT, pair_counts


@dataclass
class DatasetInfo:
    """A dataset's size and what it supports."""

    name: str
    root: Path
    identities: int
    images: int
    images_per_identity: dict[str, int]
    """min, median and max images per identity."""
    genuine_pairs: int
    impostor_pairs: int
    smallest_fmr: float | None
    """The smallest FMR whose threshold its impostor pairs support (SUPPORT_COUNT scores above it)."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(path, reason) of every file that is not a usable image."""
    checked: bool = False
    """Whether every image was decoded (else only the folder structure was read)."""
    groups: dict[str, dict[str, int]] = field(default_factory=dict)
    """Identities per value of each attribute a run can be sliced by (`report.by`); where the table is."""
    attributes: str = ""

    def lines(self) -> list[str]:
        """The summary as a person reads it."""
        per = self.images_per_identity
        out = [f"{self.name}  ({self.root})",
               f"  identities: {self.identities:,}",
               f"  images: {self.images:,} (per identity: min {per['min']}, median {per['median']}, "
               f"max {per['max']})",
               f"  genuine pairs: {self.genuine_pairs:,}; impostor pairs: {self.impostor_pairs:,}",
               "  smallest FMR supported: " + (f"{self.smallest_fmr:.1g} (about {SUPPORT_COUNT} impostor scores "
                                                "above its threshold)" if self.smallest_fmr else
                                                f"none (fewer than {SUPPORT_COUNT} impostor pairs)"),
               f"  skipped: {len(self.skipped)}" + ("" if self.checked else " (folder structure only; --check "
                                                                           "decodes every image)")]
        reasons = Counter(reason for _, reason in self.skipped)
        out += [f"    {count} x {reason}" for reason, count in reasons.most_common()]
        out += [f"    {path}: {reason}" for path, reason in self.skipped[:20]]
        if len(self.skipped) > 20:
            out.append(f"    ... and {len(self.skipped) - 20} more")
        out.append(f"  attributes: {self.attributes}" if self.attributes else
                   "  attributes: none (`facesec data annotate NAME` predicts them; an attributes.csv in the "
                   "dataset folder gives your own)")
        for attribute, sizes in self.groups.items():
            out.append(f"    {attribute}: " + ", ".join(f"{safe_cell(v)} {n}" for v, n in sizes.items()))
        return out


def describe(name_or_path: str | Path, check: bool = False, progress: bool = False) -> DatasetInfo:
    """A dataset's summary; with `check`, every image is decoded and the unreadable ones are listed as skipped
    (and not counted)."""
    ds: Dataset = load_dataset(name_or_path)
    skipped = [(str(p), reason) for p, reason in ds.skipped] + _skipped_at_import(ds.root)
    items = list(ds.items)
    if check:
        usable = []
        for path, ident in bar(items, desc="checking images", unit="image", enabled=progress):
            try:
                read_rgb(path)
            except UnusableImage as exc:
                skipped.append((str(path), str(exc)))
                continue
            usable.append((path, ident))
        items = usable
    per = Counter(ident for _, ident in items)
    counts = sorted(per.values())
    genuine, impostor = pair_counts(counts)
    return DatasetInfo(
        name=ds.name, root=ds.root, identities=len(per), images=len(items),
        images_per_identity={"min": counts[0] if counts else 0, "median": int(np.median(counts)) if counts else 0,
                             "max": counts[-1] if counts else 0},
        genuine_pairs=genuine, impostor_pairs=impostor,
        smallest_fmr=SUPPORT_COUNT / impostor if impostor >= SUPPORT_COUNT else None, skipped=skipped, checked=check,
        **_groups(name_or_path, list(per)))


def _groups(name_or_path: str | Path, identities: list[str]) -> dict[str, Any]:
    """The group sizes of the dataset's attribute table, and where it is (nothing without one)."""
    table = attributes.load(str(name_or_path))
    if table is None:
        return {}
    return {"attributes": table.source, "groups": {a: table.sizes(a, identities) for a in table.categorical()}}


def _skipped_at_import(root: Path) -> list[tuple[str, str]]:
    """The photos `facesec data import` left out (its skipped.csv), if the dataset was imported."""
    path = root / "skipped.csv"
    if not path.is_file():
        return []
    try:
        with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as fh:
            return [(str(row.get("path", "")), f"at import: {row.get('reason', '')}") for row in csv.DictReader(fh)]
    except csv.Error as exc:
        return [(str(path), f"skipped.csv is not readable ({exc})")]
