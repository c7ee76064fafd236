"""The report's defence table (attack x defence per recognizer, as BackdoorBench lays it out): each defended run
beside the same run without its defence, with a plain reading of what the defence does against an attacker unaware
of it, one who differentiates the pipeline as built and one who adapts to it, and what it costs genuine users."""

from __future__ import annotations

from dataclasses import dataclass

from facesec.record import Difference, RunRecord
from facesec.report.fields import DASH, number, rate

ADAPTIVE_CLOSE = 0.10
"""An adaptive attack within this many points of the undefended model's success: the defence does not hold."""


@dataclass
class DefenceRow:
    """One defended run as the page shows it."""

    recognizer: str
    defence: str
    anchor: str
    undefended: str
    non_adaptive: str
    oblivious: str
    adaptive: str
    clean_cost: str
    reading: str


def rows(records: list[RunRecord], anchors: list[str], found: list[Difference]) -> list[DefenceRow]:
    """A row per defended attack run that finished, its undefended partner found among the suite's paired
    differences (a defence with no parameters differs from none in `defence.name`). Runs that measure a defence
    their own way (a morph detector, a backdoor scan) have no attack success rate and show it in their section."""
    by_name = {r.name: r for r in records}
    out = []
    for record, anchor in zip(records, anchors, strict=True):
        defence = (record.dimensions.model_extra or {}).get("defence") if record.dimensions else None
        if not defence or record.error is not None or "attack_success_rate" not in record.metrics:
            continue
        pairs = [d for d in found if d.setting.split(".")[0] == "defence" and record.name in (d.first, d.second)]
        bare = next((by_name[n] for d in pairs for n in (d.first, d.second)
                     if n != record.name and n in by_name and _undefended(by_name[n])), None)
        clean = next((d for d in pairs if d.decision == "clean_success" and bare is not None
                      and bare.name in (d.first, d.second)), None)
        out.append(_row(record, str(defence), anchor, bare, clean))
    return out


def _undefended(record: RunRecord) -> bool:
    return record.dimensions is not None and not (record.dimensions.model_extra or {}).get("defence")


def _row(record: RunRecord, defence: str, anchor: str, bare: RunRecord | None, clean: Difference | None) -> DefenceRow:
    adaptive = number(record.metrics.get("attack_success_rate"))
    naive = number(record.metrics.get("non_adaptive_success_rate"))
    unaware = number(record.metrics.get("oblivious_success_rate"))
    base = None if bare is None else number(bare.metrics.get("attack_success_rate"))
    recognizer = (record.dimensions.recognizer if record.dimensions else "").split(" behind ")[0].split(" with ")[0]
    return DefenceRow(recognizer, defence, anchor, rate(base), rate(naive), rate(unaware), rate(adaptive),
                      _cost(record, clean), reading(defence, base, naive, adaptive, unaware))


def _cost(record: RunRecord, clean: Difference | None) -> str:
    """The defended run's clean success minus the undefended one's, on the same probes (people resampled)."""
    if clean is None:
        return DASH
    sign = 1 if clean.first == record.name else -1
    lo, hi = sorted(sign * v + 0.0 for v in clean.ci95_cluster)  # + 0.0: no "-0.00"
    return f"{sign * clean.difference + 0.0:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def reading(defence: str, base: float | None, naive: float | None, adaptive: float | None,
            unaware: float | None = None) -> str:
    """What the numbers say in a sentence."""
    if adaptive is None:
        return "not measured"
    start = f"{defence}: " + ("" if base is None else f"without it the attack succeeds {base:.2f}; ")
    start += "" if unaware is None else f"an attacker unaware of it gets {unaware:.2f}; "
    told = start + ("" if naive is None else f"one who differentiates it as built gets {naive:.2f}; ")
    # One attack only (a weights defence, or a transfer or query attacker): nothing to adapt past but the defence.
    told += f"one who adapts (BPDA, EOT) gets {adaptive:.2f}" if naive is not None else \
        f"the attack on the defended model gets {adaptive:.2f}"
    whom = "an adaptive attacker" if naive is not None else "this attacker"
    if base is None:
        return told
    if adaptive >= base - ADAPTIVE_CLOSE:
        return told + f": not a defence against {whom}"
    return told + f": it holds {base - adaptive:.2f} of the success back against {whom} (try more steps, " \
                  "restarts and an ensemble before trusting it)"
