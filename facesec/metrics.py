"""Pure metric functions over score arrays."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from facesec.protocols import threshold_at_fmr


def accuracy_at(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> float:
    """Verification accuracy when pairs with score > threshold are accepted."""
    correct = np.count_nonzero(genuine > threshold) + np.count_nonzero(impostor <= threshold)
    return correct / (genuine.size + impostor.size)


def best_accuracy(genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, float]:
    """Highest verification accuracy over all thresholds, and that threshold."""
    candidates = np.unique(np.concatenate([genuine, impostor]))
    candidates = np.concatenate([[candidates[0] - 1.0], candidates])
    accs = [accuracy_at(genuine, impostor, t) for t in candidates]
    best = int(np.argmax(accs))
    return float(accs[best]), float(candidates[best])


def tar_at_fmr(genuine: np.ndarray, impostor: np.ndarray, fmr: float) -> tuple[float, float]:
    """True accept rate at the threshold calibrated on impostors for `fmr`, and that threshold."""
    t = threshold_at_fmr(impostor, fmr)
    return float(np.mean(genuine > t)), t


def rank1(similarity: np.ndarray, probe_labels: np.ndarray, gallery_labels: np.ndarray) -> float:
    """Closed-set identification rate: the most similar gallery entry has the probe's identity."""
    if similarity.shape[0] == 0:
        return float("nan")
    top = np.argmax(similarity, axis=1)
    return float(np.mean(gallery_labels[top] == probe_labels))


def perturbation_norms(x: torch.Tensor, x_adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample L-inf and L2 norms of x_adv - x (pixel units in [0, 1])."""
    delta = (x_adv - x).flatten(1)
    return delta.abs().amax(dim=1), delta.norm(dim=1)


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-sample SSIM (Wang et al. 2004; Gaussian window, C1=0.01^2, C2=0.03^2) of [0, 1] NCHW images."""
    coords = torch.arange(window, dtype=x.dtype, device=x.device) - window // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = (g / g.sum()).view(1, 1, 1, -1)
    channels = x.shape[1]

    def blur(t: torch.Tensor) -> torch.Tensor:
        t = F.conv2d(t, g.expand(channels, 1, 1, window), groups=channels)
        return F.conv2d(t, g.view(1, 1, -1, 1).expand(channels, 1, window, 1), groups=channels)

    c1, c2 = 0.01**2, 0.03**2
    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(dim=1)
