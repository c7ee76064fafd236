"""Operating points: a recognizer's threshold at an FMR, set on the calibration draw (out of sample; computed
once per recognizer and draw in a process, so every run of a suite judges at the same threshold) or, without
one, on the run's own people (in sample), with its bootstrap interval over the people it was set on and the
FMR it gives on the run's own clean impostor pairs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from facesec import protocols
from facesec.calibration import CalibrationDraw
from facesec.data.align import Template
from facesec.data.pipeline import align_faces
from facesec.errors import DataError
from facesec.measures.rates import rate_with_ci, wilson_interval
from facesec.recognizers.base import Recognizer
from facesec.record import OperatingPoint, ScoreCurve

THRESHOLD_DRAWS = 400
"""Resamples of the calibration identities behind a threshold's interval."""
DET_FMRS = np.logspace(-5, 0, 26)
"""FMRs at which the DET curve's thresholds are set (those the impostor pairs do not support, 10 / FMR, left out)."""
BINS = 40


@dataclass(frozen=True)
class Scores:
    """Clean scores of every pair of a set of faces: genuine ones, impostor ones and the two people of each."""

    genuine: np.ndarray
    impostor: np.ndarray
    people: np.ndarray
    """n_impostor x 2: the identity index (0 .. n_identities - 1) of each impostor pair's faces."""
    sizes: np.ndarray
    """Faces per identity."""
    genuine_people: np.ndarray | None = None
    """The identity index of each genuine pair (None where only impostor scores were given)."""
    names: np.ndarray | None = None
    """Each identity index's name in the dataset (where the run gave them: its clean rates can then be sliced by
    group of people)."""

    @property
    def n_identities(self) -> int:
        return int(np.count_nonzero(self.sizes))


def pair_scores(model: Recognizer, emb: torch.Tensor, ids: np.ndarray,
                names: list[str] | None = None) -> Scores:
    """Genuine and impostor scores of all pairs of the faces (upper triangle), with each impostor pair's people;
    with `names` (the name of each value of `ids`), the people's names too."""
    sims = model.similarity_matrix(emb, emb).cpu().numpy()
    kept, dense = np.unique(ids, return_inverse=True)
    iu = np.triu_indices(len(ids), k=1)
    same = dense[iu[0]] == dense[iu[1]]
    people = np.stack([dense[iu[0]][~same], dense[iu[1]][~same]], axis=1)
    named = None if names is None else np.array([names[int(k)] for k in kept], dtype=object)
    return Scores(sims[iu][same], sims[iu][~same], people, np.bincount(dense), dense[iu[0]][same], named)


_CACHE: dict[tuple[str, str, str], Scores] = {}
_FACES: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}


def calibration_faces(draw: CalibrationDraw, template: Template, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """The calibration draw's faces aligned to `template` (uint8 crops, N x H x W x 3) and each one's identity
    index; aligned once per process and template, whatever models are calibrated on them."""
    key = (template.name, draw.key())
    if key not in _FACES:
        faces = align_faces([path for path, _ in draw.files], template, progress=progress)
        of = {path: ident for path, ident in draw.files}
        index = {name: i for i, name in enumerate(draw.names)}
        ids = np.array([index[of[path]] for path in faces.paths], dtype=np.int64)
        if len(np.unique(ids)) < 2:
            raise DataError(f"setting.calibration: only {len(np.unique(ids))} calibration identities have a "
                            "usable face; draw more")
        _FACES[key] = (faces.crops, ids)
    return _FACES[key]


def calibration_scores(model: Recognizer, draw: CalibrationDraw, progress: bool, cache: bool = True) -> Scores:
    """The model's scores on the calibration draw; kept for the process when the model's weights are known by
    hash, so a suite calibrates each recognizer once (`cache` False for a model changed since it was loaded, e.g.
    fine-tuned: its hash is its origin's)."""
    key = (model.info.name, model.info.weights_sha256 or "", draw.key())
    cache = cache and model.info.weights_sha256 is not None and model.info.deterministic
    if cache and key in _CACHE:
        return _CACHE[key]
    crops, ids = calibration_faces(draw, model.info.template, progress)
    with torch.no_grad():
        faces = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(255.0)
        scores = pair_scores(model, model.embed(faces), ids)
    if cache:
        _CACHE[key] = scores
    return scores


def _resampled_people(scores: Scores, draws: int, seed: int) -> Iterator[tuple[np.ndarray, float]]:
    """Per bootstrap draw of the people (with replacement), how often each was drawn (m) and the total weight of
    all impostor pairs, a pair of people drawn m and n times weighing m x n (a person drawn twice is no impostor
    of itself): (S^2 - sum s_i^2) / 2 with s_i = faces x draws of person i. Draws with no impostor pair left out."""
    k = scores.sizes.size
    rng = np.random.default_rng(seed)
    for _ in range(draws):
        m = rng.multinomial(k, np.full(k, 1 / k)).astype(float)
        s = scores.sizes * m
        total = float((s.sum() ** 2 - (s ** 2).sum()) / 2)
        if total > 0:
            yield m, total


def threshold_interval(scores: Scores, fmr: float, draws: int = THRESHOLD_DRAWS, seed: int = 0) -> list[float]:
    """95% interval of the threshold when the people it was set on are resampled (`_resampled_people`). Only the
    highest scores can hold a threshold at a small FMR, so the weights are summed there; a draw whose threshold
    falls below them weighs every pair."""
    order = np.argsort(-scores.impostor, kind="stable")
    top = min(scores.impostor.size, max(4096, int(50 * fmr * scores.impostor.size)))
    desc, a, b = scores.impostor[order], scores.people[order, 0], scores.people[order, 1]
    found = []
    for m, total in _resampled_people(scores, draws, seed):
        at = int(np.searchsorted(np.cumsum(m[a[:top]] * m[b[:top]]), fmr * total, side="right"))
        if at >= top and top < desc.size:  # the threshold lies below the scores kept: weigh them all
            at = int(np.searchsorted(np.cumsum(m[a] * m[b]), fmr * total, side="right"))
        found.append(float(desc[min(at, desc.size - 1)]))
    lo, hi = np.quantile(found, [0.025, 0.975])
    return [float(lo), float(hi)]


def pair_rate_interval(accepted: np.ndarray, scores: Scores, draws: int = THRESHOLD_DRAWS,
                       seed: int = 0) -> list[float]:
    """95% interval of the share of impostor pairs accepted when their people are resampled
    (`_resampled_people`), widened to hold Wilson's interval as every cluster interval is."""
    hit = np.flatnonzero(accepted)
    a, b = scores.people[hit, 0], scores.people[hit, 1]
    found = [float((m[a] * m[b]).sum() / total) for m, total in _resampled_people(scores, draws, seed)]
    w_lo, w_hi = wilson_interval(int(hit.size), int(accepted.size))
    lo, hi = np.quantile(found, [0.025, 0.975]) if found else (0.0, 1.0)
    return [float(min(lo, w_lo)), float(max(hi, w_hi))]


def curve(scores: Scores) -> ScoreCurve:
    """DET points at thresholds set for a grid of FMRs (only those the impostor pairs support) and histograms."""
    det = []
    for f in DET_FMRS:
        if not protocols.supported_fmr(int(scores.impostor.size), float(f)):
            continue
        t = protocols.threshold_at_fmr(scores.impostor, float(f))
        det.append([float(np.mean(scores.impostor > t)), float(np.mean(scores.genuine <= t))])
    both = np.concatenate([scores.genuine, scores.impostor])
    edges = np.linspace(float(both.min()), float(both.max()), BINS + 1)
    return ScoreCurve(det=det, edges=[float(e) for e in edges],
                      genuine=np.histogram(scores.genuine, edges)[0].tolist(),
                      impostor=np.histogram(scores.impostor, edges)[0].tolist())


def operating_point(model: Recognizer, fmr: float, run: Scores, draw: CalibrationDraw | None,
                    progress: bool = False, cache: bool = True) -> OperatingPoint:
    """The model's threshold at `fmr`: from the calibration draw, or in sample from `run` (the run's own clean
    scores) without one, and the FMR it gives on `run`'s impostor pairs with Wilson's and the people's interval."""
    cal = run if draw is None else calibration_scores(model, draw, progress, cache)
    t = protocols.threshold_at_fmr(cal.impostor, fmr)
    accepted = run.impostor > t
    measured = rate_with_ci(int(accepted.sum()), int(accepted.size))
    by_people = pair_rate_interval(accepted, run) if accepted.size else []
    n_pairs = protocols.identity_pairs(cal.n_identities)
    return OperatingPoint(
        recognizer=model.info.name, fmr=fmr, threshold=t, threshold_ci95=threshold_interval(cal, fmr),
        source="in-sample" if draw is None else "out-of-sample", dataset="" if draw is None else draw.dataset,
        identities=cal.n_identities, impostor_pairs=int(cal.impostor.size), identity_pairs=n_pairs,
        supported=protocols.supported_fmr(int(cal.impostor.size), fmr)
        and protocols.people_flag(cal.n_identities, fmr, "") is None,
        draw="" if draw is None else draw.key()[:16], seed=None if draw is None else draw.seed,
        fmr_measured=measured["rate"] if accepted.size else None, fmr_measured_ci95=measured["ci95"],
        fmr_measured_ci95_cluster=by_people, measured_pairs=int(accepted.size), curve=curve(cal)
    ).with_run_scores(run)
