"""Identity-folder datasets (LFW layout, optional manifest.csv), found by path or by name."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from facesec.data.images import IMAGE_SUFFIXES, UnusableImage, regular_file
from facesec.errors import DataError

DATA_ENV = "FACESEC_DATA"


@dataclass(frozen=True)
class Dataset:
    """Images with identity labels; `items` are (path, identity), sorted by identity then file. Entries that
    cannot be images (folders named like images, FIFOs, broken links, paths outside the dataset) are in
    `skipped` with their reason, never silently dropped."""

    name: str
    root: Path
    items: tuple[tuple[Path, str], ...]
    skipped: tuple[tuple[Path, str], ...] = ()

    @property
    def identities(self) -> list[str]:
        return sorted({ident for _, ident in self.items})


def default_root() -> Path:
    """Where datasets live when $FACESEC_DATA is unset: the platform's per-user data folder
    (~/.local/share/facesec/datasets on Linux)."""
    return Path(platformdirs.user_data_dir("facesec", appauthor=False)) / "datasets"


def data_roots() -> list[Path]:
    """Where datasets are looked for by name: the folders named by $FACESEC_DATA (os.pathsep-separated), then
    the per-user folder, where `data import` and `data fetch` write unless told otherwise."""
    value = os.environ.get(DATA_ENV, "")
    named = [Path(p) for p in value.split(os.pathsep) if p]
    return named + [default_root()] if default_root() not in named else named


def find_datasets() -> dict[str, Path]:
    """Datasets in the data folders: sub-folders holding a manifest.csv or identity folders (hidden ones, such
    as an import in progress, are not datasets)."""
    found: dict[str, Path] = {}
    for root in data_roots():
        if root.is_dir():
            for sub in sorted(root.iterdir()):
                if not sub.name.startswith(".") and sub.is_dir() and (
                        (sub / "manifest.csv").is_file() or any(p.is_dir() for p in sub.iterdir())):
                    found.setdefault(sub.name, sub)
    return found


def resolve(name_or_path: str | Path) -> Path:
    """A dataset folder from a path, or from a name under $FACESEC_DATA."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    for root in data_roots():
        if (root / str(name_or_path)).is_dir():
            return root / str(name_or_path)
    where = (f"${DATA_ENV} is {os.environ[DATA_ENV]!r}, then {default_root()}" if os.environ.get(DATA_ENV)
             else f"${DATA_ENV} is unset, so {default_root()}")
    raise DataError(f"dataset '{name_or_path}' not found: not a folder, and not in the data folders ({where}); "
                    "`facesec data list` shows what is there, `facesec data import FOLDER --name NAME` adds your "
                    "own photos, `facesec data fetch lfw` gets LFW (README: Data)")


def load_dataset(name_or_path: str | Path) -> Dataset:
    """Read a dataset: `manifest.csv` (columns path,identity) if present, else identity folders."""
    root = resolve(name_or_path)
    manifest = root / "manifest.csv"
    items: list[tuple[Path, str]] = []
    skipped: list[tuple[Path, str]] = []
    if manifest.is_file():
        inside = root.resolve()
        with manifest.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as fh:
            reader = csv.DictReader(fh)
            try:
                if not reader.fieldnames or not {"path", "identity"} <= set(reader.fieldnames):
                    raise DataError(f"{manifest}: needs the columns 'path' and 'identity' (found "
                                    f"{reader.fieldnames})")
                for row in reader:
                    path = root / str(row["path"])
                    if not path.resolve().is_relative_to(inside):
                        skipped.append((path, "outside the dataset folder (manifest paths are relative to it)"))
                    else:
                        items.append((path, str(row["identity"])))
            except csv.Error as exc:
                raise DataError(f"{manifest}, line {reader.line_num}: not a readable CSV ({exc})") from exc
    else:
        for ident_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            for f in sorted(ident_dir.iterdir()):
                if f.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                try:
                    regular_file(f)
                except UnusableImage as exc:
                    skipped.append((f, str(exc)))
                    continue
                items.append((f, ident_dir.name))
    if not items:
        raise DataError(f"dataset {root} holds no images (expected <identity>/<image> folders or manifest.csv)")
    items.sort(key=lambda it: (it[1], it[0].name))
    return Dataset(Path(name_or_path).name, root, tuple(items), tuple(skipped))
