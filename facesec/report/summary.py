"""The report's first page for an auditor: the findings in sentences, a robustness rating per attack family with
its cut-offs stated, what the CI gates said (kept apart from the rating), and a glossary of every metric shown."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from facesec.families.base import MetricInfo
from facesec.record import RunRecord
from facesec.report.fields import family_of, interval, number

CUTOFFS = ((0.05, "robust"), (0.25, "partly robust"), (0.75, "weak"), (math.inf, "not robust"))
"""Rating of a family by its worst headline success rate (an attack's success: lower is more robust), read at
the upper end of the rate's 95% interval so that few attempts never earn a good rating: at most 5% robust, at
most 25% partly robust, at most 75% weak, above that not robust."""

CUTOFF_TEXT = ("robust ≤ 5%, partly robust ≤ 25%, weak ≤ 75%, not robust above, applied to the upper end of the "
               "worst run's 95% interval (the rate itself where no interval is recorded)")

RATING_COLOURS = {"robust": ("#1a7f37", "#ffffff"), "partly robust": ("#fee08b", "#1f2328"),
                  "weak": ("#f08c4b", "#1f2328"), "not robust": ("#c62828", "#ffffff")}
"""Background and text of each rating, wherever a rating or a rated rate is drawn (matrix cells included)."""

EXIT_MEANINGS = {0: "no gate failed", 1: "a gate failed", 2: "a run failed on its input (the error says which)",
                 3: "a run crashed (facesec's fault: please report it)"}


_OPS = {"<=": "≤", ">=": "≥", "==": "=", "!=": "≠"}


def rating_of(rate: float) -> str:
    """The CUTOFFS label of an attack's success rate."""
    return next(label for cut, label in CUTOFFS if rate <= cut)


def rated(run: RunRecord) -> float | None:
    """What the run is rated by when its headline is an attack's success (lower is more robust): the upper end of
    the rate's 95% interval, or the rate where none is recorded; None for other headlines and failed runs."""
    key, _, better = _headline(run)
    rate = number(run.metrics.get(key))
    if better != "lower" or run.error is not None or rate is None:
        return None
    ci = interval(run.metrics, key)
    upper = number(ci[1]) if isinstance(ci, list | tuple) and len(ci) == 2 else None
    return rate if upper is None else max(rate, upper)


def overall(ratings: list[Rating]) -> str | None:
    """The worst family rating: what the suite's robustness verdict says (None when no run was rated)."""
    order = [label for _, label in CUTOFFS]
    return max((r.rating for r in ratings), key=order.index, default=None)


@dataclass
class Finding:
    """One run in one sentence."""

    anchor: str
    family: str
    text: str
    rate: float | None


@dataclass
class Rating:
    """A family's robustness rating from its worst run."""

    family: str
    rating: str
    worst: str
    anchor: str


@dataclass
class Term:
    """A metric in the glossary."""

    key: str
    label: str
    meaning: str


def percent(rate: float | None, ci: Any = None) -> str:
    """'100% [95%, 100%]': a rate with its interval, as a person reads it."""
    if rate is None:
        return "—"
    text = f"{rate:.0%}" if rate in (0.0, 1.0) or rate >= 0.1 else f"{rate:.1%}"
    if isinstance(ci, list | tuple) and len(ci) == 2 and all(number(v) is not None for v in ci):
        text += f" [{float(ci[0]):.0%}, {float(ci[1]):.0%}]"
    return text


def _headline(run: RunRecord) -> tuple[str, str, str]:
    """(metric key, words for it, better) of the run's headline."""
    key = run.headline_metric()
    family = family_of(run)
    info = family.metrics.get(key) if family is not None else None
    head = run.headline
    words = head.label if head is not None and head.label and head.label != key else None
    if words is None and info is not None:
        words = info.label or info.meaning.split(":")[0]
    better = head.better if head is not None and head.better else (info.better if info is not None else "")
    return key, str(words or key), better


def findings(runs: list[RunRecord]) -> list[Finding]:
    """Each run as a sentence: what attacked which recognizer how, and the headline with its interval."""
    out = []
    for i, run in enumerate(runs):
        dims, m = (run.dimensions.model_dump() if run.dimensions is not None else {}), run.metrics
        key, words, _ = _headline(run)
        rate = number(m.get(key))
        family = family_of(run)
        if run.error is not None:
            out.append(Finding(f"run-{i + 1}", family.name if family else "unknown",
                               f"{run.name or f'run {i + 1}'} did not finish: {run.error}", None))
            continue
        ci = interval(m, key)
        attempts = m.get("n_attempts")
        how = ", ".join(str(dims[k]) for k in ("knowledge", "goal", "capability") if dims.get(k))
        text = (f"{dims.get('perturbation') or 'attack'} ({how}) against {dims.get('recognizer') or 'the recognizer'}"
                f"{', ' + str(dims['setting']) if dims.get('setting') else ''}: {words} {percent(rate, ci)}"
                + (f" of {attempts} attempts" if isinstance(attempts, int) and not isinstance(attempts, bool) else ""))
        out.append(Finding(f"run-{i + 1}", family.name if family else "unknown", text, rate))
    return out


def ratings(runs: list[RunRecord]) -> list[Rating]:
    """Per family whose headline is an attack's success: the rating of its worst run (CUTOFFS)."""
    worst: dict[str, tuple[float, str, str]] = {}
    for i, run in enumerate(runs):
        _, words, _ = _headline(run)
        rate = rated(run)
        family = family_of(run)
        if rate is None or family is None:
            continue
        if family.name not in worst or rate > worst[family.name][0]:
            key = run.headline_metric()
            shown = percent(number(run.metrics.get(key)), interval(run.metrics, key))
            worst[family.name] = (rate, f"{words} {shown} ({run.name or f'run {i + 1}'})", f"run-{i + 1}")
    return [Rating(name, rating_of(rate), text, anchor) for name, (rate, text, anchor) in worst.items()]


def glossary(runs: list[RunRecord]) -> list[Term]:
    """Every metric key the runs record (what gates name) with what it means: its family's meaning, else the
    words the report labels it with, never the key again (sorted by key; 'not described' when the family gives
    nothing)."""
    terms: dict[str, Term] = {}
    for run in runs:
        family = family_of(run)
        known: dict[str, MetricInfo] = family.metrics if family is not None else {}
        for key in run.metrics:
            info = known.get(key)
            words = [w for w in ((info.meaning, info.label) if info else ()) if w and w.strip() != key]
            terms.setdefault(key, Term(key, key, words[0] if words else "not described by its family"))
    return sorted(terms.values(), key=lambda t: t.key)


def gate_tests(runs: list[RunRecord]) -> list[str]:
    """What the suite's gates test, each condition once in words ("noise success rate ≤ 0.1"): a reader sees at
    once when the release checks leave the attack itself untested."""
    found: dict[str, None] = {}
    for run in runs:
        family = family_of(run)
        for gate in run.gates:
            if gate.metric == "run_completed":
                words = "the run finished"
            else:
                info = family.metrics.get(gate.metric) if family is not None else None
                words = (info.label or info.meaning.split(":")[0] or gate.metric) if info is not None else gate.metric
                if gate.difference:
                    words = f"{words}: difference over {gate.difference}"
                if gate.bound:
                    words = f"{words} ({gate.bound} 95% bound)"
                words = f"{words} {_OPS.get(gate.op, gate.op)} {gate.value:g}"
            found.setdefault(words)
    return list(found)
