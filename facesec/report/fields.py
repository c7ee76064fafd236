"""Reading results.json defensively: a hand-edited or foreign file may hold anything where a mapping or a
list is expected, and the report must still render."""

from __future__ import annotations

import math
from typing import Any


def as_dict(value: Any) -> dict[str, Any]:
    """`value` if it is a mapping, else an empty one."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """`value` if it is a list, else an empty one."""
    return value if isinstance(value, list) else []


def rate_text(value: Any) -> str:
    """A `{"rate", "ci95"}` mapping as "0.42 [0.29, 0.56]" (the rate alone without an interval; a dash without a
    rate)."""
    r = as_dict(value)
    rate, ci = r.get("rate"), r.get("ci95")
    if not isinstance(rate, int | float) or isinstance(rate, bool) or math.isnan(rate):
        return "—"
    if isinstance(ci, list) and len(ci) == 2 and all(isinstance(c, int | float) for c in ci):
        return f"{rate:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"
    return f"{rate:.2f}"
