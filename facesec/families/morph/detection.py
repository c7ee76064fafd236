"""A morphing-attack detector in the loop (ISO/IEC 30107-3 terms). The detector is fitted on morphs made the run's
way from people apart from the attacked ones and on those people's bona fide photos; its threshold flags
`bpcer` of the bona fide presentations of other people still (half the training people fit it, half set it).
On the attacked people it gives APCER (morphs it passes) and BPCER (bona fide presentations it flags) at that
threshold, the D-EER, and the MMPMR of morphs that also pass it: an S-MAD at enrolment, a D-MAD beside each
live probe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from facesec.defences.mad import MorphDetector, equal_error_rate
from facesec.families.morph.measures import contributor_clusterings
from facesec.measures.rates import cluster_interval, multiway_interval, paired_difference


@dataclass
class Presentations:
    """What a detector is shown: feature rows of bona fide and of attack presentations, and whose they are."""

    bona_fide: torch.Tensor
    bona_fide_people: np.ndarray
    attacks: torch.Tensor
    attack_pairs: np.ndarray
    """Per attack row, the morph's two contributors (N x 2)."""


def presentations(detector: MorphDetector, emb: torch.Tensor, members: list[np.ndarray], people: list[int],
                  morph_emb: torch.Tensor, pairs: list[tuple[int, int]]) -> Presentations:
    """Bona fide: every photo of `people` as an enrolment (S-MAD), or each one's first photo beside each of its
    others as live captures (D-MAD). Attacks: each morph (S-MAD), or each beside every photo but the first of
    either contributor (D-MAD). `members[i]`: person i's rows of `emb`, the first the enrolment photo."""
    if not detector.differential:
        rows = np.concatenate([members[i] for i in people])
        whose = np.concatenate([np.full(len(members[i]), i) for i in people])
        return Presentations(detector.features(emb[rows]), whose, detector.features(morph_emb),
                             np.array(pairs, dtype=int).reshape(-1, 2))
    first = np.concatenate([np.full(len(members[i]) - 1, members[i][0]) for i in people])
    live = np.concatenate([members[i][1:] for i in people])
    whose = np.concatenate([np.full(len(members[i]) - 1, i) for i in people])
    suspect_rows, live_rows, pair_rows = [], [], []
    for k, (a, b) in enumerate(pairs):
        for who in (a, b):
            suspect_rows += [k] * (len(members[who]) - 1)
            live_rows += list(members[who][1:])
            pair_rows += [(a, b)] * (len(members[who]) - 1)
    return Presentations(detector.features(emb[first], emb[live]), whose,
                         detector.features(morph_emb[suspect_rows], emb[live_rows]),
                         np.array(pair_rows, dtype=int).reshape(-1, 2))


def fit(detector: MorphDetector, emb: torch.Tensor, members: list[np.ndarray], morph_emb: torch.Tensor,
        pairs: list[tuple[int, int]]) -> dict[str, Any]:
    """Fit `detector` on the first half of the training people (their bona fide photos, and the morphs of `pairs`,
    made among them) and set its threshold on the second half's bona fide presentations; what it used."""
    half = len(members) // 2
    shown = presentations(detector, emb, members, list(range(half)), morph_emb, pairs)
    with torch.no_grad():
        group = linked(half, pairs)  # a morph's rows go with both its contributors' photos
        detector.fit(shown.bona_fide, shown.attacks,
                     np.r_[group[shown.bona_fide_people], group[shown.attack_pairs[:, 0]]])
        apart = presentations(detector, emb, members, list(range(half, len(members))), morph_emb[:0], [])
        threshold = detector.set_threshold(detector.score(apart.bona_fide).cpu().numpy())
    return {"fit_people": half, "threshold_people": len(members) - half, "fit_bona_fide": len(shown.bona_fide),
            "fit_attacks": len(shown.attacks), "threshold_bona_fide": len(apart.bona_fide), "threshold": threshold,
            "bpcer_target": detector.bpcer, "c": detector.c}


def linked(people: int, pairs: list[tuple[int, int]]) -> np.ndarray:
    """Per person, a label shared by everyone a chain of morphs links them to (connected components of the pair
    graph): the folds that cross-validate a detector keep each label whole, so no person's face is on both sides."""
    label = np.arange(people)

    def root(i: int) -> int:
        while label[i] != i:
            label[i] = label[label[i]]
            i = int(label[i])
        return i

    for a, b in pairs:
        if a < people and b < people:
            label[root(a)] = root(b)
    return np.array([root(i) for i in range(people)])


def judged(detector: MorphDetector, shown: Presentations) -> dict[str, Any]:
    """APCER and BPCER at the detector's threshold with intervals resampling people, and the D-EER."""
    with torch.no_grad():
        bona = detector.score(shown.bona_fide).cpu().numpy()
        attack = detector.score(shown.attacks).cpu().numpy()
    passed, flagged = attack <= detector.threshold, bona > detector.threshold
    out: dict[str, Any] = {"mad_threshold": detector.threshold, "mad_bona_fide": len(bona),
                           "mad_attacks": len(attack)}
    if len(attack):
        out["mad_apcer"] = float(passed.mean())
        rows = [(int(a), int(b)) for a, b in shown.attack_pairs]  # clustered as MMPMR is: pair, A, B
        out["mad_apcer_ci95_cluster"] = list(multiway_interval(passed, contributor_clusterings(rows)))
    if len(bona):
        out["mad_bpcer"] = float(flagged.mean())
        out["mad_bpcer_ci95_cluster"] = list(cluster_interval(flagged, shown.bona_fide_people))
    if len(attack) and len(bona):
        out["mad_deer"] = equal_error_rate(bona, attack)[0]
    return out


def passes(detector: MorphDetector, morph_emb: torch.Tensor, live: list[torch.Tensor]) -> list[np.ndarray]:
    """Per morph, whether the detector lets each of its live probes through: S-MAD decides once at enrolment
    (the same for every probe), D-MAD beside each probe (`live[i]`: morph i's probe embeddings)."""
    out = []
    with torch.no_grad():
        for i, probes in enumerate(live):
            if detector.differential:
                score = detector.score(detector.features(morph_emb[i:i + 1].expand(len(probes), -1), probes))
            else:
                score = detector.score(detector.features(morph_emb[i:i + 1])).expand(len(probes))
            out.append((score <= detector.threshold).cpu().numpy())
    return out


def worst_case(past: dict[str, np.ndarray], pairs: list[tuple[int, int]]) -> tuple[dict[str, Any], list[str]]:
    """The MMPMR past the detector when the attacker submits, for each pair, whichever of its morphs (the
    detection-aware, the unaware and the landmark one) passes: a pair counts if any does. And a validity flag
    when the detection-aware morphs pass fewer pairs than the unaware ones beyond the paired interval: that
    optimisation is then not the attacker's best, and its row understates the attack."""
    either = np.logical_or.reduce([past[k] for k in past])
    ways = contributor_clusterings(pairs)
    out: dict[str, Any] = {"mmpmr_past_detector_worst_case": float(either.mean()),
                           "mmpmr_past_detector_worst_case_ci95_cluster": list(multiway_interval(either, ways))}
    aware, plain = past.get(""), past.get("_non_adaptive")
    if aware is None or plain is None:
        return out, []
    ends = [paired_difference(aware, plain, way)["ci95_cluster"] for way in ways]
    upper = max(hi for _, hi in ends)
    if upper >= 0:
        return out, []
    return out, [f"the detection-aware morphs pass the detector and both contributors less often than the unaware "
                 f"ones ({aware.mean():.2f} against {plain.mean():.2f}, paired 95% interval of the difference up to "
                 f"{upper:+.2f}): that optimisation is not the attacker's best; read the per-pair worst case "
                 f"({either.mean():.2f})"]
