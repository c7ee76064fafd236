"""Reading JSON that someone else may have written (results.json, a baseline): bounded in size, nesting and
number length, so a crafted file is a ValueError its caller turns into one line, never a crash or a hang."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MAX_BYTES = 256 << 20
"""Larger files are refused unread (a results.json of a thousand runs is a few megabytes)."""
MAX_DEPTH = 64
"""Deeper nesting is refused (facesec writes fewer than ten levels)."""
MAX_INT_DIGITS = 300
"""Longer integers are refused: beyond float range, they would overflow every computation that reads them."""


def load(path: Path) -> Any:
    """The JSON document in `path`; OSError when it cannot be read, ValueError (with the reason) when it is not
    JSON facesec can use."""
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ValueError(f"larger than {MAX_BYTES:,} bytes ({size:,})")
    return loads(path.read_text(encoding="utf-8"))


def loads(text: str | bytes) -> Any:
    """The JSON document in `text`; ValueError (with the reason) when it is not JSON facesec can use."""
    try:
        doc = json.loads(text, parse_int=_bounded_int)
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels") from None
    if _depth(doc) > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    return doc


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"a number of {len(text):,} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _depth(doc: Any) -> int:
    """How deeply lists and mappings nest in `doc` (walked without recursion)."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest
