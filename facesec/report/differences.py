"""The report's paired differences: runs of the suite that decided about the same people and differ in one
setting, each difference with the interval that resamples people (`measures.differences`)."""

from __future__ import annotations

from dataclasses import dataclass

from facesec.record import Difference

MAX_ROWS = 100
"""Differences shown at most (facesec records no more; a file from elsewhere may hold any number)."""


@dataclass
class DifferenceRow:
    """One compared pair as the page shows it."""

    first: str
    first_anchor: str
    second: str
    second_anchor: str
    setting: str
    values: str
    rates: str
    difference: str
    reading: str


def rows(found: list[Difference], anchors: dict[str, str]) -> list[DifferenceRow]:
    """Each difference in words; a run missing from the page links nowhere."""
    return [_row(d, anchors) for d in found[:MAX_ROWS]]


def _row(d: Difference, anchors: dict[str, str]) -> DifferenceRow:
    lo, hi = d.ci95_cluster
    if lo > 0 or hi < 0:
        reading = f"{'higher' if lo > 0 else 'lower'} in the first run, beyond the 95% interval"
    else:
        reading = "no difference shown at 95% (the interval holds 0)"
    return DifferenceRow(d.first, anchors.get(d.first, ""), d.second, anchors.get(d.second, ""), d.setting,
                         " vs ".join(d.values),
                         f"{d.decision.replace('_', ' ')}: {d.first_rate:.2f} vs {d.second_rate:.2f}",
                         f"{d.difference:+.2f} [{lo:+.2f}, {hi:+.2f}]",
                         f"{reading}; {d.n} decisions of {d.people} people")
