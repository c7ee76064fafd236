"""Runs one threat model: the family its `perturbation.kind` selects does the work; the engine labels the record."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

import torch

from facesec import distributed, families
from facesec.families import RunContext, RunOutput
from facesec.provenance import envelope
from facesec.recognizers.base import watching_embeddings
from facesec.threat_model import ThreatModel

NONFINITE = "nonfinite_embeddings"
"""The `validity` entry counting NaN or infinite embeddings; any above 0 fails the run's gates."""

__all__ = ["NONFINITE", "RunOutput", "run_threat_model", "runs_here"]


def run_threat_model(tm: ThreatModel, device: torch.device, source: str = "", progress: bool = True) -> RunOutput:
    """Attack the threat model's population with its family; the record names the family and its headline metric.
    Under torchrun, a family that shards uses every process; any other runs in process 0 alone (see `runs_here`)."""
    family = families.get(tm.perturbation.kind)
    started = datetime.now(UTC)
    with contextlib.nullcontext() if family.shards(tm) else distributed.alone(), watching_embeddings() as bad:
        out = family.run(tm, RunContext(device, source, progress))
        nonfinite = sum(distributed.exchange("non-finite embeddings", bad.total()))
    if nonfinite:
        _flag_nonfinite(out.record, nonfinite)
    _envelope(out.record, tm, source, device, started)
    info = family.metrics[family.headline]
    out.record["family"] = family.name
    out.record["headline"] = {"metric": family.headline, "label": info.label or family.headline,
                              "better": info.better}
    return out


def _envelope(record: dict[str, Any], tm: ThreatModel, source: str, device: torch.device, started: datetime) -> None:
    """What every record holds, whatever its family filled in: name, source, threat model, provenance, validity."""
    record.setdefault("name", tm.name)
    record.setdefault("source", source)
    record.setdefault("threat_model", tm.model_dump(mode="json"))
    record["provenance"] = {**envelope(tm, device, started), **record.get("provenance", {})}
    record.setdefault("validity", {"n_flags": 0, "flags": []})


def _flag_nonfinite(record: dict[str, Any], count: int) -> None:
    """Record in `validity` that the recognizers gave `count` NaN or infinite embeddings (api fails the gates)."""
    validity = record.setdefault("validity", {})
    flags = validity.setdefault("flags", [])
    flags.append(f"{count} embedding(s) held NaN or infinite values: the recognizer is broken for these inputs, "
                 "so no success rate of this run means anything")
    validity["n_flags"] = len(flags)
    validity[NONFINITE] = count


def runs_here(tm: ThreatModel) -> bool:
    """Whether this process works on the run: every process when its family shards, else process 0 only."""
    return distributed.is_main() or families.get(tm.perturbation.kind).shards(tm)
