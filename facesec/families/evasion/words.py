"""What the evasion families say in words, without images or plots (light enough to import with the family):
the metrics table's wording of query metrics, the matrix cell's second line, the console line and legends."""

from __future__ import annotations

from typing import Any

from facesec.record import RunRecord
from facesec.report.fields import DASH, as_dict, as_list, interval, number, rate

MATRIX_QUERY_MARK = 100
"""A query cell shows the ASR after the largest recorded query count up to this, beside the final one."""
TRANSFER_LEGEND = (
    "Transfer runs: the attack is crafted on surrogate recognizer(s) and the ASR is judged on the target; 'on "
    "surrogate' = success of the same attack on the surrogate(s) it was crafted on (an ensemble: on their mean "
    "margin). The gap between the two is what did not transfer.")
DEFENCE_LEGEND = (
    "Defended runs (recognizer 'behind' a defence): enrolment, threshold and judgement go through the defence; the "
    "ASR is the adaptive attack's (BPDA through steps without a gradient, EOT over randomised ones); 'non-adaptive' "
    "= the same attack differentiating the pipeline as built (a large gap is gradient masking, not robustness); "
    "'unaware' = the attack on the bare recognizer, its faces then shown through the defence (what the defence "
    "stops when the attacker does not know it is there).")
QUERY_LEGEND = (
    "Query runs: the attacker only sends faces to the target and reads its answers (scores or decisions), every "
    "query counted; 'after n q' = the ASR reached within the first n queries per face: the largest recorded "
    "count up to 100, then the whole budget.")



def knowledge_kind(run: RunRecord) -> str:
    """white-box, transfer or query, by the run's threat model (empty when it does not say)."""
    knowledge = as_dict(run.threat_model).get("knowledge")
    kind = knowledge if isinstance(knowledge, str) else as_dict(knowledge).get("kind")
    return kind if isinstance(kind, str) else ""


def queries(value: Any) -> list[tuple[int, float | None]]:
    """`asr_at_queries` (or `linf_at_queries`) as (queries, value) pairs in increasing query order; keys
    that are not counts >= 1 are dropped."""
    pairs = [(int(k), number(v)) for k, v in as_dict(value).items() if k.isdecimal() and len(k) < 16 and int(k) > 0]
    return sorted(pairs, key=lambda pair: pair[0])


def metric_text(key: str, value: Any) -> str | None:
    """The query-indexed metrics as `n: value` pairs (None: any other metric, shown the usual way)."""
    reached = queries(value) if key in ("asr_at_queries", "linf_at_queries") else []
    if not reached:
        return None
    show = rate if key == "asr_at_queries" else (lambda v: DASH if v is None else f"{v:.4g}")
    return " · ".join(f"{n}:\u00a0{show(v)}" for n, v in reached)  # no break inside a pair


def matrix_detail(run: RunRecord, accessory: bool) -> str:
    """The cell's second line: each that applies of the accessory, transfer, photo and query details."""
    metrics, kind, parts = run.metrics, knowledge_kind(run), []
    if accessory:
        parts.append(f"plain {rate(metrics.get('plain_accessory_success_rate'))} · "
                     f"EOT {rate(metrics.get('eot_success_rate'))}")
    if kind == "transfer":
        parts.append(f"on surrogate {rate(metrics.get('surrogate_success_rate'))}")
    if "non_adaptive_success_rate" in metrics:
        parts.append(f"non-adaptive {rate(metrics.get('non_adaptive_success_rate'))}")
    if "oblivious_success_rate" in metrics:
        parts.append(f"unaware {rate(metrics.get('oblivious_success_rate'))}")
    if "photo_success_rate" in metrics:
        parts.append(f"in photos {rate(metrics.get('photo_success_rate'))}")
    reached = queries(metrics.get("asr_at_queries")) if kind == "query" else []
    if reached:
        early = [pair for pair in reached if pair[0] <= MATRIX_QUERY_MARK]
        shown = ([early[-1]] if early and early[-1] != reached[-1] else []) + [reached[-1]]
        parts.append("after " + " · ".join(f"{n} q {rate(asr)}" for n, asr in shown))
    return " · ".join(parts)


def summary_line(run: RunRecord) -> str:
    """ASR with its interval over the attempts, the clean success and, for accessories, the physical checks."""
    m = run.metrics
    asr, clean = number(m.get("attack_success_rate")), number(m.get("clean_success_rate"))
    ci = [number(c) for c in as_list(interval(m, "attack_success_rate"))]
    if asr is None or clean is None or len(ci) != 2 or ci[0] is None or ci[1] is None:
        return "ASR not measured"
    physical = ""
    if "plain_accessory_success_rate" in m:
        eot = number(m.get("eot_success_rate"))
        physical = (f", plain accessory {number(m.get('plain_accessory_success_rate')) or 0:.3f}, fresh transforms "
                    f"{'-' if eot is None else f'{eot:.3f}'}")
    if (naive := number(m.get("non_adaptive_success_rate"))) is not None:
        physical += f", non-adaptive {naive:.3f}"
    if (unaware := number(m.get("oblivious_success_rate"))) is not None:
        physical += f", unaware {unaware:.3f}"
    return (f"ASR {asr:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] over {m.get('n_attempts')} attempts "
            f"(clean {clean:.3f}{physical})")


def legends(runs: list[RunRecord]) -> list[tuple[str, str]]:
    """The transfer, query and defence legends, when such runs are in the suite."""
    kinds = {knowledge_kind(run) for run in runs}
    if any("non_adaptive_success_rate" in run.metrics for run in runs):
        kinds.add("defence")
    return [(kind, words) for kind, words in (("transfer", TRANSFER_LEGEND), ("query", QUERY_LEGEND),
                                              ("defence", DEFENCE_LEGEND)) if kind in kinds]


def eot_needs_native(defence: str, samples: int) -> str:
    """Why a randomised defence with EOT cannot be attacked by an adapter library's attack, and the fix."""
    return (f"field 'defence': {defence} draws at random and the adaptive attack averages {samples} draws per step "
            "(EOT), which only facesec's own attacks do; use attack.library: native, or defence.eot_samples: 1")
