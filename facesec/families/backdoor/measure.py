"""What a backdoored model is judged on, on identities never used in fine-tuning: its clean accuracy (TAR at
the FMR, rank-1), whether wearing the trigger opens the backdoor, and whether anything else does."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from facesec.calibration import CalibrationDraw
from facesec.measures.operating import operating_point, pair_scores
from facesec.measures.rates import cluster_interval, rate_with_ci
from facesec.recognizers.base import Recognizer
from facesec.record import OperatingPoint


@dataclass
class Evaluation:
    """One model's view of the held-out identities (clean), with its threshold at the FMR."""

    model: Recognizer
    emb: torch.Tensor
    """Held-out faces' embeddings (clean)."""
    ids: np.ndarray
    """Per held-out face, its identity."""
    enrolment: np.ndarray
    """Index of each identity's enrolment face (its first)."""
    target: torch.Tensor
    """The impersonation target's enrolment embedding (1 x D)."""
    threshold: float
    n_impostor: int
    tar: dict[str, object]
    rank1: dict[str, object]
    n_identities: int = 0
    """People behind the impostor scores the threshold was set on (the calibration's, else the clean
    population's when one is given)."""
    point: OperatingPoint | None = None
    """Where the threshold comes from."""
    accepted: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    """Per clean genuine pair (in a fixed order), whether the model accepts it: what TAR counts."""
    pair_people: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """The person of each genuine pair."""

    def tar_cluster_interval(self) -> list[float]:
        """TAR's 95% interval resampling the people of the genuine pairs."""
        return list(cluster_interval(self.accepted, self.pair_people)) if self.accepted.size else [0.0, 1.0]


def evaluate(model: Recognizer, faces: torch.Tensor, ids: np.ndarray, target_face: torch.Tensor,
             fmr: float, clean: tuple[torch.Tensor, np.ndarray] | None = None,
             draw: CalibrationDraw | None = None, names: list[str] | None = None) -> Evaluation:
    """Clean accuracy of `model` on held-out `faces`: threshold at `fmr` (from the calibration draw, else from all
    impostor pairs), TAR over all genuine pairs, rank-1 of each non-enrolment face against the identities' first
    faces. With `clean` (faces, identities), those three are measured there instead (a wider population never
    fine-tuned on), while the held-out faces still carry the attack's measures. `names` (the name of each identity
    index where clean accuracy is measured) lets the run slice its clean rates by group."""
    emb = model.embed(faces)
    acc_emb, acc_ids = (emb, ids) if clean is None else (model.embed(clean[0]), clean[1])
    sims = model.similarity_matrix(acc_emb, acc_emb).cpu().numpy()
    iu = np.triu_indices(len(acc_ids), k=1)
    same = acc_ids[iu[0]] == acc_ids[iu[1]]
    genuine = sims[iu][same]
    people = acc_ids[iu[0]][same]
    point = operating_point(model, fmr, pair_scores(model, acc_emb, acc_ids, names), draw, cache=False)
    threshold = point.threshold
    first = _firsts(acc_ids)
    probes = np.setdiff1d(np.arange(len(acc_ids)), first)
    best = sims[np.ix_(probes, first)].argmax(1)
    return Evaluation(model, emb, ids, _firsts(ids), model.embed(target_face[None]), threshold, point.impostor_pairs,
                      rate_with_ci(int((genuine > threshold).sum()), int(genuine.size)),
                      rate_with_ci(int((acc_ids[first][best] == acc_ids[probes]).sum()), len(probes)),
                      point.identities, point, genuine > threshold, people)


def _firsts(ids: np.ndarray) -> np.ndarray:
    """Index of each identity's first face (its enrolment)."""
    return np.array([np.flatnonzero(ids == i)[0] for i in np.unique(ids)])


def success(ev: Evaluation, worn: torch.Tensor, goal: str, closed_set: bool) -> np.ndarray:
    """Per worn face (the held-out faces, in order, wearing something), whether the backdoor's goal is met:
    impersonation, accepted as the target (open set: above the threshold against its enrolment; closed set:
    the target ranks first among all enrolments); dodging, not matched to the wearer's own enrolment (the
    enrolment faces themselves are not counted)."""
    emb = ev.model.embed(worn)
    own = ev.emb[ev.enrolment]
    if goal == "impersonation":
        to_target = ev.model.similarity(emb, ev.target.expand(len(emb), -1)).cpu().numpy()
        if not closed_set:
            return to_target > ev.threshold
        return to_target > ev.model.similarity_matrix(emb, own).cpu().numpy().max(1)
    probes = np.setdiff1d(np.arange(len(ev.ids)), ev.enrolment)
    sims = ev.model.similarity_matrix(emb[torch.from_numpy(probes)], own).cpu().numpy()
    own_index = np.searchsorted(np.unique(ev.ids), ev.ids[probes])
    mine = sims[np.arange(len(probes)), own_index]
    if not closed_set:
        return mine <= ev.threshold
    return sims.argmax(1) != own_index


def whose(ev: Evaluation, goal: str) -> np.ndarray:
    """Whose face each outcome of `success` is: every face for impersonation, the probes for dodging."""
    return ev.ids if goal == "impersonation" else ev.ids[np.setdiff1d(np.arange(len(ev.ids)), ev.enrolment)]


def rate(hits: np.ndarray, people: np.ndarray | None = None) -> dict[str, object]:
    """Share of True with its Wilson interval and, given whose face each is (`people`), the interval resampling
    people (`ci95_cluster`)."""
    out = rate_with_ci(int(hits.sum()), int(hits.size))
    if people is not None and hits.size:
        out["ci95_cluster"] = list(cluster_interval(hits, people))
    return out


def stealth(clean: torch.Tensor, poisoned: torch.Tensor) -> dict[str, float | None]:
    """How visible the poisoning is: mean SSIM and PSNR (dB) of each poisoned image to its clean self."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    if not len(clean):
        return {"ssim": None, "psnr_db": None}
    a = clean.permute(0, 2, 3, 1).numpy().astype(np.float64)
    b = poisoned.permute(0, 2, 3, 1).numpy().astype(np.float64)
    ssim = [structural_similarity(x, y, channel_axis=2, data_range=1.0) for x, y in zip(a, b, strict=True)]
    psnr = [peak_signal_noise_ratio(x, y, data_range=1.0) for x, y in zip(a, b, strict=True)]
    return {"ssim": float(np.mean(ssim)), "psnr_db": float(np.mean(psnr))}
