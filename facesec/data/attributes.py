"""A dataset's attribute table: per identity, attributes such as perceived sex, age band and skin tone, by which a
run's rates are sliced. Two sources, merged cell by cell: the table `facesec data annotate` predicts (kept in the
per-user folder, with its provenance in comment lines) and the dataset's own `attributes.csv` (someone's table,
any columns), whose non-empty cells win. A table is someone else's file: it is read within limits, and any row
facesec cannot use safely is a one-line error naming the file, the line and the fix."""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from facesec.csv_cells import safe_cell
from facesec.data.dataset import default_root, resolve
from facesec.data.images import read_regular
from facesec.errors import DataError
from facesec.suite_files import write_atomic

OWN = "attributes.csv"
"""A dataset folder's own table (given by `data import --attributes`, or put there by hand)."""
UNKNOWN, MIXED = "unknown", "mixed"
"""The group of identities whose attribute is missing (shown like any other group, never dropped; a cell saying
'unknown' is read as empty), and that of a decision about two people in different groups (no table may use it)."""
MAX_COMMENTS, MAX_COMMENT = 20, 300
MAX_BYTES, MAX_ROWS, MAX_COLUMNS, MAX_CELL = 64 * 1024 * 1024, 1_000_000, 64, 200
"""A table larger, longer or wider, or with a longer cell, is refused (one identity per row)."""
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
"""Characters no attribute value may hold: they would break lines of reports or drive a terminal."""
COLUMN = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")
"""An attribute's name: it becomes a key of results.json and a `report.by` value."""


@dataclass
class Table:
    """Attribute values by identity (empty cells left out), the columns in file order, and where it came from."""

    values: dict[str, dict[str, str]]
    columns: list[str]
    source: str
    provenance: list[str] = field(default_factory=list)
    """The comment lines at the top of a predicted table (model, version, methods)."""
    sha256: str = ""
    """Of the file's bytes (merged: of both files' digests): a changed table changes a sliced run's resume key."""

    def categorical(self) -> list[str]:
        """The columns a run can be sliced by: those with a value that is not a number (age is not; age_band is)."""
        return [c for c in self.columns if any(not _number(v[c]) for v in self.values.values() if c in v)]

    def sizes(self, attribute: str, identities: Iterable[str]) -> dict[str, int]:
        """How many of `identities` each value of `attribute` holds, largest first ('unknown' included)."""
        counts: dict[str, int] = {}
        for value in self.groups(attribute, identities).values():
            counts[value] = counts.get(value, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def groups(self, attribute: str, identities: Iterable[str]) -> dict[str, str]:
        """Each identity's value of `attribute` ('unknown' where the table has none)."""
        return {i: self.values.get(i, {}).get(attribute, UNKNOWN) for i in identities}


def predicted_path(dataset: str) -> Path:
    """Where `data annotate` keeps a dataset's predicted table: the per-user folder beside the datasets (a shared
    $FACESEC_DATA stays read-only), named by the dataset folder's name and where it is (two datasets of one name
    in two places never share a table)."""
    root = resolve(dataset).resolve()
    where = hashlib.sha256(str(root).encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return default_root().parent / "attributes" / f"{root.name}-{where}.csv"


def read_table(path: Path, known: set[str] | None = None) -> Table:
    """A table from `path` (UTF-8 CSV, an `identity` column, comment lines starting with '#' before the header);
    with `known`, an identity not in the dataset is refused too."""
    data = _bounded(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: not UTF-8 text; save the table as UTF-8 CSV") from exc
    lines = text.splitlines(keepends=True)
    provenance = []
    while lines and lines[0].startswith("#"):
        provenance.append(lines.pop(0)[1:].strip())
        if len(provenance) > MAX_COMMENTS or len(provenance[-1]) > MAX_COMMENT or CONTROL.search(provenance[-1]):
            raise DataError(f"{path}, line {len(provenance)}: comment lines ('#') are at most {MAX_COMMENTS} of "
                            f"{MAX_COMMENT} plain characters (they say how the table was made)")
    reader = csv.reader(io.StringIO("".join(lines)))
    try:
        header = next(reader, [])
        columns = _header(path, header, len(provenance) + 1)
        values: dict[str, dict[str, str]] = {}
        first: dict[str, int] = {}
        for row in reader:
            _row(path, reader.line_num + len(provenance), row, columns, values, first, known)
    except csv.Error as exc:
        raise DataError(f"{path}, line {reader.line_num + len(provenance)}: not a readable CSV ({exc})") from exc
    return Table(values, columns[1:], str(path), provenance, hashlib.sha256(data).hexdigest())


def _bounded(path: Path) -> bytes:
    """The file's bytes (at most MAX_BYTES), read from a regular file reached without following a link (a table
    is read from where it was given, never from where a link points)."""
    try:
        data = read_regular(path, MAX_BYTES)
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc.strerror or type(exc).__name__}; a link is not followed)") \
            from exc
    if data is None:
        raise DataError(f"{path}: not a regular file (an attribute table is a CSV file)")
    if len(data) > MAX_BYTES:
        raise DataError(f"{path}: larger than {MAX_BYTES // (1024 * 1024)} MB; an attribute table has one short row "
                        "per identity")
    return data


def _header(path: Path, header: list[str], line: int) -> list[str]:
    names = [h.strip() for h in header]
    if not names or names[0] != "identity":
        raise DataError(f"{path}, line {line}: the first column must be 'identity' (found "
                        f"{safe_cell(names[0]) if names else 'nothing'!r})")
    if len(names) > MAX_COLUMNS:
        raise DataError(f"{path}, line {line}: {len(names)} columns; at most {MAX_COLUMNS}")
    for name in names[1:]:
        if not COLUMN.fullmatch(name):
            raise DataError(f"{path}, line {line}: column {safe_cell(name)[:40]!r}: name attributes with a letter "
                            "then letters, digits or '_' (up to 40)")
    if len(set(names)) != len(names):
        raise DataError(f"{path}, line {line}: a column is named twice")
    return names


def _row(path: Path, line: int, row: list[str], columns: list[str], values: dict[str, dict[str, str]],
         first: dict[str, int], known: set[str] | None) -> None:
    """One data row into `values`, or a one-line error: wrong width, a long cell, a repeat, an unknown identity."""
    if not row:
        return
    if len(row) != len(columns):
        raise DataError(f"{path}, line {line}: {len(row)} cells, the header has {len(columns)}")
    if len(first) >= MAX_ROWS:
        raise DataError(f"{path}: more than {MAX_ROWS:,} rows")
    if any(len(cell) > MAX_CELL for cell in row):
        raise DataError(f"{path}, line {line}: a cell longer than {MAX_CELL} characters")
    if any(CONTROL.search(cell) for cell in row):
        raise DataError(f"{path}, line {line}: a cell holds a control character (a line break, an escape code); "
                        "attribute values are plain text")
    identity = row[0].strip()
    if not identity:
        raise DataError(f"{path}, line {line}: empty identity")
    if identity in first:
        raise DataError(f"{path}, line {line}: identity {safe_cell(identity)!r} is listed again (first on line "
                        f"{first[identity]}); one row per identity")
    if known is not None and identity not in known:
        raise DataError(f"{path}, line {line}: identity {safe_cell(identity)!r} is not in the dataset; remove the "
                        "row or fix the name")
    cells = {c: v.strip() for c, v in zip(columns[1:], row[1:], strict=True) if v.strip()}
    if any(v.lower() == MIXED for v in cells.values()):
        raise DataError(f"{path}, line {line}: '{MIXED}' is facesec's name for a morph of two people in different "
                        "groups; call the value otherwise")
    first[identity] = line
    values[identity] = {c: v for c, v in cells.items() if v.lower() != UNKNOWN}  # 'unknown': as if empty


def merged(predicted: Table | None, own: Table | None) -> Table | None:
    """The predicted table with the dataset's own non-empty cells over it (and its extra columns after)."""
    if predicted is None or own is None:
        return own or predicted
    values = {i: dict(v) for i, v in predicted.values.items()}
    for identity, cells in own.values.items():
        values.setdefault(identity, {}).update(cells)
    columns = predicted.columns + [c for c in own.columns if c not in predicted.columns]
    both = hashlib.sha256(f"{own.sha256}+{predicted.sha256}".encode()).hexdigest()
    return Table(values, columns, f"{own.source} over {predicted.source}", predicted.provenance, both)


def load(dataset: str) -> Table | None:
    """The dataset's attributes (None when it has no table): its own `attributes.csv` over the predicted one,
    each checked against the dataset's identities."""
    from facesec.data.dataset import load_dataset

    known = set(load_dataset(dataset).identities)
    own_path = resolve(dataset) / OWN
    pred_path = predicted_path(dataset)
    own = read_table(own_path, known) if own_path.is_file() else None
    predicted = read_table(pred_path, known) if pred_path.is_file() else None
    return merged(predicted, own)


def write_table(path: Path, table: Table) -> None:
    """The table as CSV (comment lines first), written whole: a text cell a spreadsheet would run as a formula is
    defused, numbers are kept (an ITA of -12.5), identities are kept as the dataset names them (read back)."""
    out = io.StringIO()
    for line in table.provenance:
        out.write(f"# {line}\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["identity", *table.columns])
    for identity in sorted(table.values):
        cells = table.values[identity]
        writer.writerow([identity, *(_cell(cells.get(c, "")) for c in table.columns)])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, out.getvalue())


def _cell(text: str) -> str:
    return text if _number(text) else safe_cell(text)


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
