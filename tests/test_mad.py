"""Morphing-attack detectors: the D-EER and the deployed threshold mean what ISO/IEC 30107-3 says, a fitted
detector separates what differs and scores with a gradient, and a differential one needs its live capture."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facesec.defences.base import build
from facesec.defences.mad import Differential, SingleImage, equal_error_rate


def test_the_equal_error_rate_is_where_apcer_meets_bpcer() -> None:
    """Bona fide 0..3, attacks 2.5..5.5: at 2.5 one attack passes (APCER 1/4) and one bona fide is flagged
    (BPCER 1/4)."""
    eer, at = equal_error_rate(np.array([0.0, 1, 2, 3]), np.array([2.5, 3.5, 4.5, 5.5]))
    assert eer == pytest.approx(0.25) and at == 2.5
    assert equal_error_rate(np.array([0.0, 1]), np.array([2.0, 3]))[0] == 0.0


def test_a_fitted_detector_separates_shifted_features_and_has_a_gradient() -> None:
    """Morph features shifted along one direction: fitted on one sample, the detector flags about its BPCER of
    new bona fide samples at the threshold set on others, misses few new attacks, and its score has a gradient."""
    rng = np.random.default_rng(0)

    def sample(n: int, shift: float) -> torch.Tensor:
        x = rng.normal(size=(n, 16))
        x[:, 0] += shift
        return torch.from_numpy(x).float()

    detector = build("s-mad", {"bpcer": 0.1}, 0)
    assert isinstance(detector, SingleImage)
    detector.fit(sample(200, 0), sample(200, 3))
    detector.set_threshold(detector.score(sample(400, 0)).detach().numpy())
    bona, attacks = (detector.score(sample(2000, s)).detach().numpy() for s in (0, 3))
    assert 0.06 < (bona > detector.threshold).mean() < 0.14
    assert (attacks <= detector.threshold).mean() < 0.3
    assert equal_error_rate(bona, attacks)[0] < 0.15
    x = sample(4, 3).requires_grad_(True)
    (grad,) = torch.autograd.grad(detector.score(x).sum(), x)
    assert float(grad[:, 0].min()) > 0  # moving along the morph direction raises the score


def test_a_differential_detector_compares_with_the_live_capture() -> None:
    detector = build("d-mad", {}, 0)
    assert isinstance(detector, Differential)
    a, b = torch.randn(3, 8), torch.randn(3, 8)
    assert torch.allclose(detector.features(a, a), torch.zeros(3, 8))
    assert detector.features(a, b).shape == (3, 8)
    with pytest.raises(ValueError, match="live capture"):
        detector.features(a)
