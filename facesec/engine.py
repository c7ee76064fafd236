"""Runs one threat model: the family its `perturbation.kind` selects does the work; the engine labels the record."""

from __future__ import annotations

import torch

from facesec import families
from facesec.families import RunContext, RunOutput
from facesec.spec import ThreatModel

__all__ = ["RunOutput", "preflight", "run_threat_model"]


def run_threat_model(tm: ThreatModel, device: torch.device, source: str = "", progress: bool = True) -> RunOutput:
    """Attack the threat model's population with its family; the record names the family and its headline metric."""
    family = families.get(tm.perturbation.kind)
    out = family.run(tm, RunContext(device, source, progress))
    info = family.metrics[family.headline]
    out.record["family"] = family.name
    out.record["headline"] = {"metric": family.headline, "label": info.label or family.headline,
                              "better": info.better}
    return out


def preflight(tm: ThreatModel) -> None:
    """Build what the threat model's family can build before any run, so a bad setting fails early."""
    families.get(tm.perturbation.kind).preflight(tm)
