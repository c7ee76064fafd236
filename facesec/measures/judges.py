"""Recognizers that judge a family's attack: each one's view of the population (in its own alignment), its
clean genuine and impostor scores, and its thresholds calibrated on them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from facesec.calibration import CalibrationDraw
from facesec.measures.operating import operating_point, pair_scores
from facesec.population import Population, realign
from facesec.recognizers.base import Recognizer
from facesec.record import OperatingPoint


@dataclass
class Judge:
    """A judging recognizer: its view of every population face and its calibrated thresholds."""

    name: str
    model: Recognizer
    pop: Population
    """The population aligned to this recognizer's template."""
    emb: torch.Tensor
    genuine: np.ndarray
    impostor: np.ndarray
    thresholds: dict[float, float]
    points: list[OperatingPoint] = field(default_factory=list)
    """Where each threshold comes from (`thresholds` in order)."""
    genuine_people: np.ndarray | None = None
    impostor_people: np.ndarray | None = None
    """Whose each genuine pair is, and the two people of each impostor pair (None for a judge given bare
    scores): what the error rates' cluster intervals resample."""

    def point(self, fmr: float) -> OperatingPoint:
        """The operating point behind the threshold at `fmr`."""
        return next(p for p in self.points if p.fmr == fmr)

    def in_sample(self) -> bool:
        """Whether the thresholds were set on the judged population itself (no calibration draw)."""
        return any(p.source == "in-sample" for p in self.points)


def own_view(model: Recognizer, pop: Population, progress: bool) -> tuple[Population, torch.Tensor]:
    """The population aligned to the model's template (realigned only when it differs) and its embeddings."""
    own = pop if pop.template == model.info.template else realign(pop, model.info.template)
    return own, model.embed(own.faces, progress=progress)


def calibrated_judge(model: Recognizer, pop: Population, fmrs: list[float], progress: bool,
                     draw: CalibrationDraw | None = None) -> Judge:
    """The model as a judge of `pop`, with a threshold at each FMR: from the calibration draw, or without one
    from all clean impostor pairs of `pop` (in sample)."""
    own, emb = own_view(model, pop, progress)
    scores = pair_scores(model, emb, own.identity, own.names)
    points = [operating_point(model, f, scores, draw, progress) for f in fmrs]
    return Judge(model.info.name, model, own, emb, scores.genuine, scores.impostor,
                 {p.fmr: p.threshold for p in points}, points, scores.genuine_people, scores.people)
