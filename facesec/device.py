"""Choosing the compute device once: CUDA when there is one, else CPU."""

from __future__ import annotations

import torch


def pick_device(requested: str | None = None) -> torch.device:
    """`requested` if given (e.g. 'cpu', 'cuda:1'), else 'cuda' when available, else 'cpu'."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
