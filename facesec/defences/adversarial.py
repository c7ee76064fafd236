"""Adversarial fine-tuning (registered as `adversarial-training`): the recognizer's last stage (or every layer)
trained further on PGD perturbations of faces of people apart from the run's, with the metric loss it was trained
with (Madry et al. 2018), by the project's fine-tuning loop; cached and resumed like the backdoor fine-tunes."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import JsonValue

from facesec.data.cache import cache_root
from facesec.defences.base import Hardened, WeightsDefence
from facesec.finetune import Adversary, Recipe, finetune, training_threshold
from facesec.recognizers.base import Recognizer

TRAINING_FMR = 1e-3
"""Where the training loss puts 'same person' for a model with no native threshold (on the training pairs)."""


class AdversarialTraining(WeightsDefence):
    """PGD adversarial training at budget `eps` (L-inf) with `steps` steps per batch, for `epochs` epochs."""

    def __init__(self, generator: torch.Generator, eps: float = 8 / 255, steps: int = 3, epochs: int = 5,
                 learning_rate: float = 1e-4, layers: Literal["last", "all"] = "last", identities: int = 100,
                 images_per_identity: int = 5, batch_identities: int = 16, batch_images: int = 4) -> None:
        super().__init__(generator, identities, images_per_identity)
        self.adversary = Adversary(eps, steps)
        self.epochs, self.learning_rate, self.layers = epochs, learning_rate, layers
        self.batch = (batch_identities, batch_images)

    def harden(self, model: Recognizer, faces: torch.Tensor, labels: np.ndarray, progress: bool) -> Hardened:
        recipe = Recipe(self.layers, self.epochs, self.learning_rate, *self.batch,
                        training_threshold(model, faces, labels, TRAINING_FMR), self.seed, adversary=self.adversary)
        done = finetune(model, faces, labels, recipe, progress, cache_root() / "adversarial-training")
        record: dict[str, JsonValue] = {
            "identities": len(np.unique(labels)), "faces": len(faces), "epochs": self.epochs,
            "eps": self.adversary.eps, "steps": self.adversary.steps, "layers": self.layers,
            "learning_rate": self.learning_rate, "training_threshold": recipe.threshold,
            "losses": [float(v) for v in done.losses], "seconds": done.seconds,
            "resumed_from_epoch": done.resumed_from, "trainable_parameters": done.trainable_parameters}
        return Hardened(done.model, record)
