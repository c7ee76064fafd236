"""The backdoor section of the report: a verdict an auditor can read, the clean-versus-backdoored table, how
robust and how specific the trigger is, the defence table, and trigger examples; all from results.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facesec.record import RunRecord
from facesec.report import figures
from facesec.report.fields import as_dict, as_list, number, rate_text

ROBUSTNESS = (("half_opacity", "trigger at half strength"), ("moved", "trigger moved by 3% of the crop"),
              ("photo_round_trip", "through a photo (pasted, 8 bits, detected and aligned again)"))


def _pct(value: Any) -> str:
    v = number(value)
    return "—" if v is None else f"{v:.0%}"


def _detection(d: dict[str, Any]) -> str:
    precision, recall, fpr = number(d.get("precision")), number(d.get("recall")), number(d.get("false_positive_rate"))
    if recall is None:
        return "—"
    area = number(d.get("auroc"))
    return (f"recall {recall:.2f}, precision {'—' if precision is None else f'{precision:.2f}'}, "
            f"{fpr if fpr is None else f'{fpr:.1%}'} of clean images flagged"
            + ("" if area is None else f"; AUROC {area:.2f} over every cut-off"))


def _defence_rows(defences: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(defence, what it saw, verdict, cost) per defence that ran."""
    rows = []
    for name, d in defences.items():
        d = as_dict(d)
        cost = f"{number(d.get('time_s')) or 0:.0f} s"
        if name in ("activation-clustering", "spectral-signatures", "class-sizes"):
            recall = number(d.get("recall"))
            rows.append((name, _detection(d), "—" if recall is None else
                         ("found most poisoned images" if recall >= 0.5 else "missed most poisoned images"), cost))
        elif name == "neural-cleanse":
            b, c = as_dict(d.get("backdoored")), as_dict(d.get("clean"))
            target = number(b.get("target_anomaly_index"))
            seen = (f"largest anomaly index {number(b.get('max_anomaly_index')) or 0:.2f} (backdoored) vs "
                    f"{number(c.get('max_anomaly_index')) or 0:.2f} (clean); the target's "
                    f"{'—' if target is None else f'{target:.2f}'}; {d.get('scanned_identities', '—')} "
                    f"identities scanned{'' if d.get('target_scanned') else ', target not among them'}")
            verdict = ("flags the backdoored model" + (" and names the target" if b.get("flagged_identity_is_target")
                                                      else " at another identity, not the target")
                       if b.get("flagged") else "does not flag the backdoored model")
            verdict += "; flags the clean model too" if c.get("flagged") else "; clean model not flagged"
            rows.append((name, seen, verdict, cost))
        elif name == "strip":
            rows.append(_strip_row(d, cost))
        else:
            asr, tar = as_dict(d.get("backdoor_asr")), as_dict(d.get("clean_tar"))
            pulls = (number(d.get("anchor")) or 0) > 0 or (number(d.get("distill")) or 0) > 0
            pull = ", with the victim's pull towards the model it starts from" if pulls else ""
            how = f" (retrained {d.get('epochs', '—')} epochs on clean data{pull})"
            rows.append((name, f"backdoor success after: {rate_text(asr)}{_drop_text(d)}; clean TAR after: "
                               f"{rate_text(tar)}{how}",
                         "removes the backdoor" if (number(asr.get("rate")) or 0) < 0.1 else "backdoor survives",
                         cost))
    return rows


def _drop_text(d: dict[str, Any]) -> str:
    """The backdoored model's success minus the mitigated one's on the same worn faces, with its paired
    interval; empty when the record has none."""
    drop = as_dict(d.get("backdoor_asr_drop"))
    value, ends = number(drop.get("difference")), drop.get("ci95_cluster")
    if value is None or not isinstance(ends, list) or len(ends) != 2 or any(number(e) is None for e in ends):
        return ""
    return (f"; before minus after on the same worn faces (all of them): {value:+.2f} "
            f"[{number(ends[0]):+.2f}, {number(ends[1]):+.2f}], wearers resampled")


def _strip_row(d: dict[str, Any], cost: str) -> tuple[str, str, str, str]:
    """STRIP: triggered faces flagged at each false-alarm rate set on the defender's clean faces (with the false
    alarms measured on held-out faces), and the AUROC."""
    points = as_dict(d.get("at_fpr"))
    seen = "; ".join(f"at {_pct(fpr)} set: {rate_text(as_dict(p).get('detection_rate'))} of triggered faces "
                     f"flagged, {rate_text(as_dict(p).get('false_positive_rate'))} of held-out clean faces"
                     for fpr, p in points.items())
    area = number(d.get("auroc"))
    seen = (seen or f"{rate_text(d.get('detection_rate'))} of triggered faces flagged") + (
        "" if area is None else f"; AUROC {area:.2f}")
    detected = number(as_dict(d.get("detection_rate")).get("rate")) or 0
    return ("strip", seen, "detects the trigger" if detected >= 0.5 else "misses the trigger", cost)


def _reading(m: dict[str, Any], run: RunRecord) -> str:
    asr, before, after = (number(m.get(k)) for k in ("backdoor_asr", "clean_tar_before", "clean_tar_after"))
    if asr is None or before is None or after is None:
        return ""
    tm = as_dict(run.threat_model)
    p = as_dict(tm.get("perturbation"))
    goal = tm.get("goal")
    wants = "accepted as the attacker's chosen identity" if goal == "impersonation" else \
        "no longer matched to their own enrolment"
    text = (f"With {_poisoned(m)} poisoned with a {p.get('trigger', '?')} trigger, the model let people it "
            f"never saw in training be {wants} in {asr:.0%} of attempts when "
            f"they wore the trigger ({_pct(m.get('asr_without_trigger'))} without it); its clean TAR was "
            f"{after:.1%}, against {before:.1%} for the same fine-tuning without poisoning")
    false = number(m.get("false_trigger_rate"))
    if false is not None:
        text += f"; everyday makeup of other colours opened it in {false:.0%} of attempts"
    worst, look = number(m.get("false_trigger_worst")), m.get("false_trigger_worst_look")
    if worst is not None and isinstance(look, str):
        text += f", the worst everyday look ({look.replace(':', ' ')}) in {worst:.0%}"
    caught = [n for n, *_ in _defence_rows(as_dict(m.get("defences")))]
    return text + (f". Defences run: {', '.join(caught)} (table below)." if caught else ".")


def _poisoned(m: dict[str, Any]) -> str:
    """How much poison, and how much of the label it joined, in words."""
    n, share, label = number(m.get("n_poisoned")), number(m.get("poison_rate")), number(m.get("poisoned_label_share"))
    text = f"{n:.0f} of its fine-tuning images ({share:.1%})" if n is not None and share is not None else \
        f"{_pct(m.get('poison_rate'))} of its fine-tuning images"
    return text + (f", {label:.0%} of the label they joined," if label is not None else "")


def _clean_population(c: dict[str, Any]) -> str:
    """Where clean accuracy was measured, in words."""
    where = "identities never fine-tuned on" if c.get("kind") == "unused" else "held-out identities"
    n, faces = c.get("identities"), c.get("faces")
    return f"{n} {where}, {faces} faces" if isinstance(n, int) and isinstance(faces, int) else where


def _rate(m: dict[str, Any], key: str) -> str:
    """A metric with its intervals (`KEY_ci95`, `KEY_ci95_cluster`, the latter shown when there)."""
    return rate_text({"rate": m.get(key), "ci95": m.get(f"{key}_ci95"), "ci95_cluster": m.get(f"{key}_ci95_cluster")})


def view(run: RunRecord, results_dir: Path, out_dir: Path, redact: bool) -> dict[str, Any]:
    """Everything the backdoor partial shows; every field may be missing from a hand-edited results.json."""
    m = run.metrics
    stealth = as_dict(m.get("stealth"))
    where = _clean_population(as_dict(m.get("clean_population")))
    rows = [(f"clean TAR at the FMR ({where})", rate_text({"rate": m.get("clean_tar_pretrained")}),
             _rate(m, "clean_tar_before"), _rate(m, "clean_tar_after")),
            ("clean rank-1", rate_text({"rate": m.get("clean_rank1_pretrained")}),
             rate_text({"rate": m.get("clean_rank1_before")}), rate_text({"rate": m.get("clean_rank1_after")})),
            ("attack success, trigger worn", "—", _rate(m, "asr_clean_model"), _rate(m, "backdoor_asr")),
            ("attack success, no trigger", "—", "—", _rate(m, "asr_without_trigger"))]
    robustness = as_dict(m.get("robustness"))
    return {
        "reading": _reading(m, run),
        "rows": rows,
        "robustness": [(label, rate_text(robustness.get(key))) for key, label in ROBUSTNESS if key in robustness],
        "false": [(key.replace(":", ": "), rate_text(v)) for key, v in as_dict(m.get("false_trigger")).items()],
        "stealth": (f"SSIM {stealth['ssim']:.3f}, PSNR {stealth['psnr_db']:.1f} dB"
                    if number(stealth.get("ssim")) is not None and number(stealth.get("psnr_db")) is not None else "—"),
        "defences": _defence_rows(as_dict(m.get("defences"))),
        "model_file": run.extra("backdoored_model"),
        "gallery": [{**figures.face_uris(results_dir, as_dict(g), ("poison_clean", "poison", "clean", "triggered"),
                                         redact), "success": as_dict(g).get("success")}
                    for g in as_list(run.gallery)],
    }
