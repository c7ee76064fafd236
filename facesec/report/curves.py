"""The report's robustness curves: the budget at which an attack fools half of the attempts, with its interval."""

from __future__ import annotations

from dataclasses import dataclass

from facesec.record import Curve

NAME_LIMIT = 3
"""Runs named in a row before the rest are counted."""


@dataclass
class CurveRow:
    """One curve as the page shows it."""

    runs: str
    points: str
    at: str


def rows(found: list[Curve]) -> list[CurveRow]:
    """Each curve in words: its runs, the success at each budget and the budget at its level."""
    return [_row(c) for c in found]


def _budget(value: float) -> str:
    n = value * 255
    return f"{n:.3g}/255" if value < 1 else f"{value:g}"


def _row(c: Curve) -> CurveRow:
    names = ", ".join(c.runs[:NAME_LIMIT]) + (f" and {len(c.runs) - NAME_LIMIT} more" if len(c.runs) > NAME_LIMIT
                                               else "")
    points = " · ".join(f"{_budget(b)}: {r:.2f}" for b, r in zip(c.budgets, c.rates, strict=False))
    lo, hi = c.ci95
    if c.budget_at_level is None:
        at = f"not reached within {_budget(max(c.budgets))}"
    else:
        ends = f"{'below ' + _budget(min(c.budgets)) if lo is None else _budget(lo)}, " \
               f"{'beyond ' + _budget(max(c.budgets)) if hi is None else _budget(hi)}"
        at = f"{_budget(c.budget_at_level)} [{ends}]"
    return CurveRow(names, points, f"{at} ({c.people} people)")
