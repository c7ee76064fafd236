"""Links from the report to files a results.json names: only relative names that stay inside the results folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from pydantic import JsonValue

from facesec.report.fields import text


@dataclass
class Link:
    """A file named in results.json: its text, the link from the report (None: not linkable), whether it exists."""

    text: str
    href: str | None
    found: bool


def link(target: JsonValue, results_dir: Path, out_dir: Path) -> Link:
    """A file named in results.json as a link from the report, and whether it is there inside the results folder."""
    path = inside(results_dir, target)
    href = _relative_href(target, results_dir, out_dir) if path is not None else None
    return Link(text(target), href, path is not None and path.is_file())


def _relative_href(target: JsonValue, results_dir: Path, out_dir: Path) -> str | None:
    """A relative link from the report to a file named in results.json; None for URLs or absolute paths."""
    if not isinstance(target, str) or not target or ":" in target or target.startswith(("/", "\\")):
        return None
    rel = os.path.relpath(results_dir.resolve() / target, out_dir.resolve())
    return quote(Path(rel).as_posix(), safe="/")


def inside(root: Path, relative: JsonValue) -> Path | None:
    """The path `relative` names when it stays inside `root` (None for an absolute path, a URL, a name that leaves
    `root` or that the file system cannot take), whether or not a file is there."""
    if not isinstance(relative, str) or not relative or ":" in relative or relative.startswith(("/", "\\")):
        return None
    try:
        path = (root / relative).resolve()
        path.is_file()  # raises for a name too long
    except (OSError, ValueError):  # a name too long, a NUL byte
        return None
    return path if path.is_relative_to(root.resolve()) else None
