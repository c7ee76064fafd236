"""Recognizers that judge a family's attack: each one's view of the population (in its own alignment), its
clean genuine and impostor scores, and its thresholds calibrated on them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from facesec import protocols
from facesec.population import Population, realign
from facesec.recognizers.base import Recognizer


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


def own_view(model: Recognizer, pop: Population, progress: bool) -> tuple[Population, torch.Tensor]:
    """The population aligned to the model's template (realigned only when it differs) and its embeddings."""
    own = pop if pop.template == model.info.template else realign(pop, model.info.template)
    return own, model.embed(own.faces, progress=progress)


def pair_scores(model: Recognizer, emb: torch.Tensor, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Genuine and impostor scores of all pairs of the faces (upper triangle)."""
    sims = model.similarity_matrix(emb, emb).cpu().numpy()
    iu = np.triu_indices(len(ids), k=1)
    same = ids[iu[0]] == ids[iu[1]]
    return sims[iu][same], sims[iu][~same]


def calibrated_judge(model: Recognizer, pop: Population, fmrs: list[float], progress: bool) -> Judge:
    """The model as a judge of `pop`, with a threshold at each FMR from all clean impostor pairs."""
    own, emb = own_view(model, pop, progress)
    genuine, impostor = pair_scores(model, emb, own.identity)
    return Judge(model.info.name, model, own, emb, genuine, impostor,
                 {f: protocols.threshold_at_fmr(impostor, f) for f in fmrs})
