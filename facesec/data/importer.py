"""`facesec data import`: someone's photos (identity folders, or a CSV of path,identity) checked and copied into the
data folder as a dataset any threat model can name. Every photo left out is listed with its reason."""

from __future__ import annotations

import csv
import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from facesec.csv_cells import safe_cell
from facesec.data.attributes import OWN, read_table, write_table
from facesec.data.dataset import data_roots, default_root
from facesec.data.faces import FaceAnalyzer, NoFace
from facesec.data.images import IMAGE_SUFFIXES, MAX_FILE_BYTES, UnusableImage, read_rgb, regular_file
from facesec.errors import DataError
from facesec.progress import bar

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""A dataset's name: a plain folder name (no separators, no leading dot)."""

MAX_ROWS = 1_000_000
"""A CSV with more rows is refused (a dataset that size is imported in parts)."""

SPARE_BYTES = 1 << 30
"""Free space left on the data folder's disk after copying, or the import is refused before it starts."""


@dataclass
class Imported:
    """What an import made."""

    name: str
    root: Path
    images: int
    identities: int
    skipped: list[tuple[str, str]]
    """(source path, reason) of every photo left out."""


def _slug(identity: str) -> str:
    """A folder name for an identity label of any content: safe characters, plus a hash when it had others."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", identity).strip("._")[:48] or "id"
    digest = hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return safe if safe == identity else f"{safe}-{digest}"


def _from_folder(source: Path) -> tuple[list[tuple[Path, str]], list[tuple[str, str]]]:
    items, skipped = [], []
    for entry in sorted(source.iterdir()):
        if not entry.is_dir():
            skipped.append((str(entry), "not inside an identity folder (expected SOURCE/<identity>/<photo>)"))
            continue
        for f in sorted(entry.iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                items.append((f, entry.name))
            else:
                skipped.append((str(f), f"not an image file name (suffix {f.suffix or 'none'!r})"))
    return items, skipped


def _from_csv(source: Path) -> tuple[list[tuple[Path, str]], list[tuple[str, str]]]:
    items: list[tuple[Path, str]] = []
    skipped: list[tuple[str, str]] = []
    seen: set[tuple[Path, str]] = set()
    with source.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as fh:
        reader = csv.DictReader(fh)
        try:
            if not reader.fieldnames or not {"path", "identity"} <= set(reader.fieldnames):
                raise DataError(f"{source}: needs the columns 'path' and 'identity' (found {reader.fieldnames})")
            for row in reader:
                if len(items) >= MAX_ROWS:
                    raise DataError(f"{source}: more than {MAX_ROWS:,} rows; import it in parts")
                path, ident = str(row["path"] or ""), str(row["identity"] or "").strip()
                if not path or not ident:
                    raise DataError(f"{source}, line {reader.line_num}: empty path or identity")
                photo = (source.parent / path).expanduser()
                if photo.suffix.lower() not in IMAGE_SUFFIXES:
                    skipped.append((str(photo), f"not an image file name (suffix {photo.suffix or 'none'!r})"))
                elif (photo, ident) in seen:
                    skipped.append((str(photo), f"listed again for {ident!r} (line {reader.line_num})"))
                else:
                    seen.add((photo, ident))
                    items.append((photo, ident))
        except csv.Error as exc:
            raise DataError(f"{source}, line {reader.line_num}: not a readable CSV ({exc})") from exc
    return items, skipped


def import_dataset(source: str | Path, name: str, detect: bool = True, progress: bool = False,
                   follow_links: bool = False, to: Path | None = None, attributes: Path | None = None) -> Imported:
    """Check every photo (readable, within size limits, and with `detect` exactly one face) and copy the good ones
    into `to` (default: the per-user data folder, never a shared $FACESEC_DATA) as `name`, with its manifest.csv
    and a skipped.csv of what was left out. Photos outside SOURCE (through links, or CSV paths outside the CSV's
    folder) are skipped unless `follow_links`. An `attributes` table is checked against the photos' identities
    before anything is copied, and kept as the dataset's attributes.csv (rows of people left with no photo
    dropped)."""
    source = Path(source).expanduser()
    if not NAME.fullmatch(name):
        raise DataError(f"--name {name!r}: use letters, digits, '_', '.', '-' (up to 64, not starting with a dot)")
    if source.is_dir():
        items, skipped = _from_folder(source)
        inside = source
    elif source.is_file() and source.suffix.lower() == ".csv":
        items, skipped = _from_csv(source)
        inside = source.parent
    else:
        raise DataError(f"{source}: not a folder of identity folders, nor a .csv of path,identity")
    if not items:
        raise DataError(f"{source}: no photos found (expected <identity>/<photo> folders or a CSV of them)")
    table = read_table(attributes, {ident for _, ident in items}) if attributes is not None else None
    root = to or default_root()
    final = root / name
    for taken in [final] + [folder / name for folder in data_roots()]:
        if os.path.lexists(taken):  # one found first by name elsewhere would stand in for this import in every run
            raise DataError(f"dataset {name!r} already exists at {taken}; choose another --name or remove it")
    sizes = 0
    for path, _ in items:
        try:
            sizes += path.stat().st_size
        except OSError:
            pass  # recorded as unusable below
    root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(root).free
    if sizes + SPARE_BYTES > free:
        raise DataError(f"{root}: {free / 1e9:.1f} GB free; these photos need {sizes / 1e9:.1f} GB plus "
                        f"{SPARE_BYTES / 1e9:.0f} GB to spare")
    partial = root / f".{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)  # an earlier interrupted import of the same name
    partial.mkdir()
    analyzer = FaceAnalyzer() if detect else None
    rows: list[tuple[str, str]] = []
    folders: dict[str, str] = {}
    try:
        for path, ident in bar(items, desc="importing photos", unit="photo", enabled=progress):
            if not follow_links and not _within(path, inside):
                skipped.append((str(path), f"outside {inside} (reached through a link, or an absolute or ../ "
                                           "path); not imported without --follow-links"))
                continue
            folder = folders.get(ident) or _slug(ident)
            target = partial / folder / f"{len(rows):07d}{path.suffix.lower()}"
            try:
                _copy_checked(path, target, analyzer)
            except (UnusableImage, NoFace) as exc:
                skipped.append((str(path), str(exc)))
                continue
            folders[ident] = folder
            rows.append((f"{folder}/{target.name}", ident))
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # an interrupted import leaves no hidden copy behind
        raise
    if not rows:
        shutil.rmtree(partial, ignore_errors=True)
        raise DataError(f"{source}: none of {len(items)} photos is usable; first reasons: "
                        + "; ".join(f"{p}: {r}" for p, r in skipped[:3]))
    _write_csv(partial / "manifest.csv", ("path", "identity"), rows, paths_read_back=True)
    _write_csv(partial / "skipped.csv", ("path", "reason"), skipped, paths_read_back=False)
    if table is not None:
        table.values = {safe_cell(i): v for i, v in table.values.items() if i in folders}  # as the manifest names them
        write_table(partial / OWN, table)
    partial.rename(final)
    return Imported(name, final, len(rows), len(folders), skipped)


def _within(path: Path, root: Path) -> bool:
    """Whether `path`, every link in it followed, is a file inside `root`: photos are taken from SOURCE only."""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, ValueError, RuntimeError):  # a name too long, a NUL byte, a link loop
        return False


def _copy_checked(path: Path, target: Path, analyzer: FaceAnalyzer | None) -> None:
    """The photo's bytes (at most MAX_FILE_BYTES, read once) written to `target`, then decoded from there and,
    with an analyzer, required to hold exactly one face; UnusableImage or NoFace (and no file) otherwise."""
    regular_file(path)
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise UnusableImage(f"cannot read ({exc.strerror or type(exc).__name__})") from exc
    if len(data) > MAX_FILE_BYTES:
        raise UnusableImage(f"file too large (limit {MAX_FILE_BYTES:,} bytes)")
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(data)
    try:
        image, _ = read_rgb(target)
        if analyzer is not None:
            analyzer.detect(image)
    except BaseException:
        target.unlink()
        raise


def _write_csv(path: Path, header: tuple[str, str], rows: list[tuple[str, str]], paths_read_back: bool) -> None:
    """A two-column CSV whose text cells a spreadsheet will not run as formulas; with `paths_read_back` the first
    column is kept as written (facesec's own folder names, read back by the dataset loader)."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows((a if paths_read_back else safe_cell(a), safe_cell(b)) for a, b in rows)
