"""The report's "By group" parts: per run, each sliced rate by the groups of each attribute (people, decisions,
rate with its interval; small groups marked, never hidden) with its differential; across the suite, one row per
run, rate and attribute with the highest and lowest group and the gap between them. Every value is someone
else's text until escaped: group names come from an attribute table (the template escapes them)."""

from __future__ import annotations

from dataclasses import dataclass

from facesec.record import Differential, GroupRate, RunRecord, Sliced
from facesec.report.fields import DASH

CAVEATS = ("Attributes are perceived and, unless a table says otherwise, predicted from the photos (hse-faceres's "
           "gender and age heads; skin tone from the individual typology angle of the cheeks, which the lighting "
           "moves), not self-reported. Groups are small: each rate's interval resamples the group's people, and a "
           "group with fewer people than the run's minimum is marked and kept out of the differential, as are "
           "people without the attribute ('unknown') and morphs of two people in different groups ('mixed'). A "
           "differential is a description of these people under this attack, not a cause: groups differ in more "
           "than the attribute that names them (photo quality, pose, make-up, how many photos each person has).")


@dataclass
class GroupTable:
    """One sliced rate by one attribute, as a run's section shows it."""

    title: str
    rows: list[tuple[str, str, str, str, str]]
    """group, people, decisions, rate [95%], a mark for groups outside the differential."""
    differential: str


@dataclass
class GapRow:
    """One run's rate by one attribute in the suite's table."""

    run: str
    anchor: str
    rate: str
    attribute: str
    highest: str
    lowest: str
    difference: str
    ratio: str


def tables(record: RunRecord) -> list[GroupTable]:
    """The run's sliced rates, one table per rate and attribute."""
    return [GroupTable(f"{s.metric} by {s.attribute}", [_row(g, _digits(s)) for g in s.groups], _gap_words(s))
            for s in record.groups]


def _digits(s: Sliced) -> int:
    """Decimals that show the rates apart: 4 for small ones (an FMR near 1e-3), else 2."""
    return 4 if max((g.ci95_cluster[1] for g in s.groups), default=1.0) < 0.05 else 2


def _row(g: GroupRate, n: int) -> tuple[str, str, str, str, str]:
    lo, hi = g.ci95_cluster
    return (g.group, str(g.identities), str(g.decisions), f"{g.rate:.{n}f} [{lo:.{n}f}, {hi:.{n}f}]",
            "not compared" if g.small else "")


def _gap_words(s: Sliced) -> str:
    d = s.differential
    if d is None:
        return (f"No differential: fewer than two groups of at least {s.minimum} people (besides unknown and "
                "mixed).")
    return (f"Highest {d.highest}, lowest {d.lowest}: difference {_difference(d, _digits(s))}, ratio {_ratio(d)} "
            "(95% intervals resample the people of each group).")


def _difference(d: Differential, n: int) -> str:
    lo, hi = d.difference_ci95
    return f"{d.difference:+.{n}f} [{lo:+.{n}f}, {hi:+.{n}f}]"


def _ratio(d: Differential) -> str:
    if d.ratio is None or d.ratio_ci95 is None:
        return f"undefined ({d.lowest}'s rate is 0)"
    lo, hi = d.ratio_ci95
    return f"{d.ratio:.2f} [{DASH if lo is None else f'{lo:.2f}'}, {'unbounded' if hi is None else f'{hi:.2f}'}]"


def gaps(records: list[RunRecord], anchors: list[str]) -> list[GapRow]:
    """Across the suite: each run's sliced rate by each attribute, its extreme groups and the gap."""
    out = []
    for record, anchor in zip(records, anchors, strict=True):
        for s in record.groups:
            d, n = s.differential, _digits(s)
            rates = {g.group: g.rate for g in s.groups}
            out.append(GapRow(
                record.name, anchor, s.metric, s.attribute,
                DASH if d is None else f"{d.highest} {rates.get(d.highest, 0.0):.{n}f}",
                DASH if d is None else f"{d.lowest} {rates.get(d.lowest, 0.0):.{n}f}",
                DASH if d is None else _difference(d, n), DASH if d is None else _ratio(d)))
    return out
