"""Choosing the compute device once: CUDA when there is one (under torchrun, the process's own GPU), else CPU."""

from __future__ import annotations

import torch

from facesec import distributed


def pick_device(requested: str | None = None) -> torch.device:
    """`requested` if given (e.g. 'cpu', 'cuda:1'), else 'cuda' when available, else 'cpu'. Under torchrun with
    several processes, plain 'cuda' means this process's GPU (its LOCAL_RANK)."""
    if requested and requested != "cuda":
        return torch.device(requested)
    if requested == "cuda" or torch.cuda.is_available():
        return torch.device("cuda", distributed.local_rank()) if distributed.processes() > 1 else torch.device("cuda")
    return torch.device("cpu")
