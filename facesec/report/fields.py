"""Values of a results.json as the report shows them: a hand-edited or foreign file may hold anything where a
number, a mapping or a list is expected, and the report must still render."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from facesec import families
from facesec.errors import FacesecError
from facesec.record import interval_keys

if TYPE_CHECKING:
    from facesec.families.base import Family
    from facesec.record import RunRecord

DASH = "—"


def as_dict(value: Any) -> dict[str, Any]:
    """`value` if it is a mapping, else an empty one."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """`value` if it is a list, else an empty one."""
    return value if isinstance(value, list) else []


def number(value: Any) -> float | None:
    """A number from results.json as float; None for anything else, booleans and NaN included."""
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


def fmt(value: Any) -> str:
    """A results value as text: numbers to 4 significant digits, None as a dash."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def text(value: Any, default: str = DASH) -> str:
    """A results string for display; numbers and other values are formatted, None becomes `default`."""
    if value is None or value == "":
        return default
    return value if isinstance(value, str) else fmt(value)


def rate(value: Any) -> str:
    """A success rate to two decimals, as in the matrix; a dash when missing."""
    value = number(value)
    return DASH if value is None else f"{value:.2f}"


def fixed(value: Any) -> str:
    """A similarity to three decimals, so the before and after columns line up."""
    value = number(value)
    return DASH if value is None else f"{value:.3f}"


def family_of(run: RunRecord) -> Family | None:
    """The run's attack family (by `family`, else its threat model's perturbation kind); None when the record
    names none, or one not installed here (the report then shows the shared parts only, guessing nothing)."""
    kind = run.family or as_dict(as_dict(run.threat_model).get("perturbation")).get("kind")
    if not kind:
        return None
    try:
        return families.get(str(kind))
    except FacesecError:  # a family not installed here (or a broken plug-in)
        return None


def interval(metrics: dict[str, Any], key: str) -> Any:
    """The 95% interval the report shows beside metric `key`: the one that resamples people where the run records
    it, else Wilson's (`record.interval_keys`)."""
    cluster, wilson = interval_keys(key)
    return metrics.get(cluster, metrics.get(wilson))


def rate_text(value: Any) -> str:
    """A `{"rate", "ci95"}` mapping as "0.42 [0.29, 0.56]", its cluster interval (`ci95_cluster`) in preference (the
    rate alone without an interval; a dash without a rate)."""
    r = as_dict(value)
    rate, ci = r.get("rate"), r.get("ci95_cluster") or r.get("ci95")
    if not isinstance(rate, int | float) or isinstance(rate, bool) or math.isnan(rate):
        return DASH
    if isinstance(ci, list) and len(ci) == 2 and all(isinstance(c, int | float) for c in ci):
        return f"{rate:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"
    return f"{rate:.2f}"
