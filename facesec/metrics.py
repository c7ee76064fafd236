"""Pure metric functions over score arrays."""

from __future__ import annotations

import numpy as np

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
