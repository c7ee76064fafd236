"""Morphing-attack detectors (registered as `s-mad` and `d-mad`), on the deployed recognizer's own embeddings, as
Scherhag et al. (IEEE TIFS 2020, "Deep face representations for differential morphing attack detection") build
them: S-MAD scores the suspected (enrolment) image alone, from its normalised embedding; D-MAD scores it beside a
trusted live capture, from how far the two normalised embeddings differ in each dimension (the squared difference:
its sign says nothing, a morph and a bona fide photo differ from the live face in opposite directions as often as
not). A logistic regression (scikit-learn) on standardised features is fitted to bona fide and morph samples of
people apart from the attacked ones, its regularisation chosen by cross-validation that keeps each person in one
fold; its decision function, held as torch tensors, is differentiable, so a morph can be optimised to pass it."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

STANDARD_BPCER = 0.10
"""The operating point ISO/IEC 30107-3 practice for MAD reports APCER at (BPCER 10%)."""

C_GRID = np.logspace(-3, 2, 11)
"""Inverse regularisation strengths the cross-validation chooses from."""
FOLDS = 5


class MorphDetector:
    """A fitted linear detector over embedding features: `score` > `threshold` flags a morph (an attack
    presentation). `differential`: the features need a live capture beside the suspected image."""

    differential: ClassVar[bool] = False

    def __init__(self, generator: torch.Generator, c: float | None = None, bpcer: float = STANDARD_BPCER,
                 identities: int = 60, images_per_identity: int = 3) -> None:
        self.seed = generator.initial_seed()
        self.c: float | None = c
        """Inverse regularisation strength; None: chosen by person-grouped cross-validation when fitted."""
        self.bpcer = bpcer
        self.identities, self.images_per_identity = identities, images_per_identity
        self.mean = self.scale = self.weight = torch.zeros(0)
        self.bias, self.threshold = 0.0, float("inf")

    def features(self, suspect: torch.Tensor, live: torch.Tensor | None = None) -> torch.Tensor:
        """The detector's features from the recognizer's embeddings of the images (N x D each), differentiable."""
        own = F.normalize(suspect, dim=-1)
        if not self.differential:
            return own
        if live is None:
            raise ValueError("a differential detector needs the live capture beside each suspected image")
        return (own - F.normalize(live, dim=-1)) ** 2

    def fit(self, bona_fide: torch.Tensor, attacks: torch.Tensor, groups: np.ndarray | None = None) -> None:
        """Fit the regression to feature rows of bona fide samples and of attacks (balanced classes); `groups`
        (a person per row) keeps each person in one fold when the regularisation is cross-validated."""
        from sklearn.linear_model import LogisticRegression  # imported here: listing defences needs no sklearn

        x = torch.cat([bona_fide, attacks]).detach().cpu().double().numpy()
        y = np.r_[np.zeros(len(bona_fide)), np.ones(len(attacks))]
        mean, scale = x.mean(0), x.std(0) + 1e-6
        z = (x - mean) / scale
        if self.c is None:
            self.c = self._cross_validated(z, y, np.arange(len(y)) if groups is None else np.asarray(groups))
        fitted = LogisticRegression(C=self.c, class_weight="balanced", max_iter=5000).fit(z, y)
        self.mean, self.scale = torch.from_numpy(mean).float(), torch.from_numpy(scale).float()
        self.weight, self.bias = torch.from_numpy(fitted.coef_[0]).float(), float(fitted.intercept_[0])

    @staticmethod
    def _cross_validated(z: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
        """The C of `C_GRID` with the best mean ROC AUC over folds that keep each person's rows together (the
        smallest such C on a tie: the most regularised; scikit-learn's default 1.0 when fewer than two groups or
        no fold holds both classes)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import roc_auc_score
        from sklearn.model_selection import GroupKFold

        splits = min(FOLDS, len(np.unique(groups)))
        folds = [] if splits < 2 else [(a, b) for a, b in GroupKFold(n_splits=splits).split(z, y, groups)
                                       if len(np.unique(y[a])) == 2 and len(np.unique(y[b])) == 2]
        if not folds:
            return 1.0
        auc = [np.mean([roc_auc_score(y[b], LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
                                      .fit(z[a], y[a]).decision_function(z[b])) for a, b in folds]) for c in C_GRID]
        return float(C_GRID[int(np.argmax(auc))])

    def score(self, features: torch.Tensor) -> torch.Tensor:
        """The decision function (log-odds of a morph), differentiable in `features`."""
        device = features.device
        z = (features - self.mean.to(device)) / self.scale.to(device)
        return z @ self.weight.to(device) + self.bias

    def set_threshold(self, bona_fide_scores: np.ndarray) -> float:
        """The threshold that flags `bpcer` of these bona fide scores (people apart from those it is fitted on)."""
        self.threshold = float(np.quantile(bona_fide_scores, 1 - self.bpcer, method="higher"))
        return self.threshold


class SingleImage(MorphDetector):
    """S-MAD: the suspected image alone."""


class Differential(MorphDetector):
    """D-MAD: the suspected image beside a trusted live capture of whoever presents."""

    differential: ClassVar[bool] = True


def equal_error_rate(bona_fide: np.ndarray, attacks: np.ndarray) -> tuple[float, float]:
    """D-EER: where APCER (attacks scored at or below t) meets BPCER (bona fide scored above t), over every
    threshold the scores give (the mean of the two rates at the closest crossing), and that threshold."""
    candidates = np.unique(np.r_[bona_fide, attacks])
    apcer = np.searchsorted(np.sort(attacks), candidates, side="right") / len(attacks)
    bpcer = 1 - np.searchsorted(np.sort(bona_fide), candidates, side="right") / len(bona_fide)
    best = int(np.argmin(np.abs(apcer - bpcer)))
    return float((apcer[best] + bpcer[best]) / 2), float(candidates[best])
