"""Text cells for the CSV files facesec writes, which people open in spreadsheets: names and paths come from
datasets someone else made, and a cell a spreadsheet would run as a formula is defused."""

from __future__ import annotations

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""A CSV cell starting with one of these is read as a formula by spreadsheets; such text gets a leading quote."""


def safe_cell(text: str) -> str:
    """A text cell: bytes that were not UTF-8 (file names) shown as \\xNN, a formula start defused."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return f"'{text}" if text.startswith(FORMULA_START) else text
