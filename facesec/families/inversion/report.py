"""The template-inversion section of the report: a plain-language reading, the attack beside its baselines,
cross-model acceptance, and the gallery (enrolment photo, reconstruction, another photo); from results.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facesec.record import RunRecord
from facesec.report import figures
from facesec.report.fields import as_dict, as_list, rate_text

ATTEMPTS = (("reconstruction", "reconstruction (the attack)"),
            ("decoded_face", "the decoder's face alone (the search's start)"),
            ("random_prior_sample", "a random face from the prior"), ("mean_public_face", "the mean public face"),
            ("nearest_public_face", "the public face nearest the template"))
"""Rows of the rates table: key in results.json and what it is."""


def view(run: RunRecord, results_dir: Path, out_dir: Path, redact: bool) -> dict[str, Any]:
    """Everything the inversion partial shows; every field may be missing from a hand-edited results.json."""
    metrics = run.metrics
    detail = as_dict(metrics.get("detail"))
    target = as_dict(detail.get("target"))
    cross = as_dict(detail.get("cross_model"))
    judges = list(cross)
    rows = []
    for key, label in ATTEMPTS:
        if key not in target:
            continue
        r = as_dict(target.get(key))
        cells = [rate_text(r.get("type1")), rate_text(r.get("type2"))]
        cells += [rate_text(as_dict(as_dict(cross.get(j)).get(key)).get(kind)) for j in judges
                  for kind in ("type1", "type2")]
        rows.append((label, cells, key == "reconstruction"))
    return {
        "reading": _reading(metrics, as_dict(run.dimensions.model_dump() if run.dimensions else None), judges),
        "columns": ["type I (leaked template)", "type II (other photos)"]
        + [f"{j}, {kind}" for j in judges for kind in ("type I (leaked photo)", "type II (other photos)")],
        "rows": rows,
        "queries": metrics.get("queries_per_sample"),
        "training_queries": _count(metrics.get("training_queries")),
        "gallery": [_entry(as_dict(g), results_dir, redact) for g in as_list(run.gallery)],
    }


def _reading(metrics: dict[str, Any], dims: dict[str, Any], judges: list[str]) -> str:
    """One sentence an auditor can quote."""
    t1, t2, n = metrics.get("type1_success_rate"), metrics.get("type2_success_rate"), metrics.get("n_identities")
    if not all(isinstance(v, int | float) for v in (t1, t2)) or not isinstance(n, int):
        return ""
    text = (f"From one leaked template each, the attacker made faces that {dims.get('recognizer', 'the target')} "
            f"accepted as the enrolled person for {t1:.0%} of {n} templates, and against that person's other photos "
            f"in {t2:.0%} of comparisons")
    if metrics.get("restart_choice") == "target-template":
        text += (" (of its restarts the attacker kept the face the target matched best to the leaked template: the "
                 "type-I comparison itself, so type I is near its ceiling by construction; type II is the test)")
    cross = metrics.get("cross_model_type2_success_rate")
    if judges and isinstance(cross, int | float):
        text += (f"; {judges[0]}, never used by the attacker, accepted them against the person's other photos in "
                 f"{cross:.0%} of comparisons")
    return text + "."


def _count(value: Any) -> str | None:
    """A positive count with thousands separators; None for zero or anything else."""
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _entry(g: dict[str, Any], results_dir: Path, redact: bool) -> dict[str, Any]:
    images = figures.face_uris(results_dir, g, ("enrolment", "reconstruction", "probe"), redact)
    score = g.get("type1_score")
    return {**images, "identity": str(g.get("identity", "")),
            "score": f"{score:.3g}" if isinstance(score, int | float) and not isinstance(score, bool) else "—",
            "type1": g.get("type1") if isinstance(g.get("type1"), bool) else None,
            "type2": f"{g.get('type2_accepted', '—')} of {g.get('type2_photos', '—')}",
            "detected": g.get("detected") is not False}


CLASSIFIER_ROWS = (("reconstruction", "reconstruction (the attack)", "attack_accuracy"),
                   ("random_prior_sample", "a random face from the prior", "random_prior_sample"),
                   ("chance", "chance", "chance"))


def classifier_view(run: RunRecord, results_dir: Path, out_dir: Path, redact: bool) -> dict[str, Any]:
    """Everything the classifier-inversion partial shows; every field may be missing from results.json."""
    m = run.metrics
    rows = []
    for _, label, prefix in CLASSIFIER_ROWS:
        cells = [rate_text({"rate": m.get(f"{prefix}_top1"), "ci95": m.get(f"{prefix}_top1_ci95")}),
                 rate_text({"rate": m.get(f"{prefix}_top5"), "ci95": m.get(f"{prefix}_top5_ci95")})]
        rows.append((label, cells, prefix == "attack_accuracy"))
    top1, n, chance = m.get("attack_accuracy_top1"), m.get("n_identities"), m.get("chance_top1")
    reading = ""
    if isinstance(top1, int | float) and isinstance(n, int) and isinstance(chance, int | float) and chance:
        reading = (f"Knowing only a class index, the attacker made faces that an independent evaluation model "
                   f"recognised as the right one of {n} private identities {top1:.0%} of the time "
                   f"({top1 / chance:.1f} times chance).")
    knn = m.get("knn_distance")
    return {"reading": reading, "rows": rows, "queries": m.get("queries_per_sample"),
            "training_queries": _count(m.get("training_queries")),
            "knn": f"{knn:.3f}" if isinstance(knn, int | float) and not isinstance(knn, bool) else "—",
            "evaluator_accuracy": rate_text({"rate": m.get("evaluator_accuracy")}),
            "gallery": [{**figures.face_uris(results_dir, as_dict(g), ("private", "reconstruction"), redact),
                         "identity": str(as_dict(g).get("identity", "")),
                         "top1": as_dict(g).get("evaluator_top1") if isinstance(as_dict(g).get("evaluator_top1"),
                                                                                bool) else None,
                         "rank": as_dict(g).get("evaluator_rank", "—")}
                        for g in as_list(run.gallery)]}
