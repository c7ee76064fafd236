"""Runs one threat model: the family its `perturbation.kind` selects does the work; the engine labels the record."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import torch

from facesec import calibration, distributed, families
from facesec.families import RunContext, RunOutput
from facesec.groups import run as by_group
from facesec.provenance import envelope
from facesec.recognizers.base import watching_embeddings
from facesec.record import Headline, OperatingPoint, Provenance, RunRecord, Validity, plain
from facesec.threat_model import ThreatModel

NONFINITE = "nonfinite_embeddings"
"""The `validity` entry counting NaN or infinite embeddings; any above 0 fails the run's gates."""

__all__ = ["NONFINITE", "FinishedRun", "RunOutput", "run_threat_model", "runs_here"]


@dataclass
class FinishedRun:
    """A run's record and, when it finished, its family's output (samples and files still to write)."""

    record: RunRecord
    output: RunOutput | None = None

    def samples(self) -> Mapping[str, Any]:
        """The per-sample columns for its CSV (none for a failed run)."""
        return self.output.measured.samples if self.output is not None else {}


def run_threat_model(tm: ThreatModel, device: torch.device, source: str = "", progress: bool = True) -> FinishedRun:
    """Attack the threat model's population with its family; the record names the family and its headline metric.
    Under torchrun, a family that shards uses every process; any other runs in process 0 alone (see `runs_here`)."""
    family = families.get(tm.perturbation.kind)
    started = datetime.now(UTC)
    with contextlib.nullcontext() if family.shards(tm) else distributed.alone(), watching_embeddings() as bad:
        out = family.run(tm, RunContext(device, source, progress, calibration.draw(tm)))
        nonfinite = sum(distributed.exchange("non-finite embeddings", bad.total()))
    m = out.measured
    m.validity.flags = list(m.validity.flags)  # set, so written even when empty; counted as they stand
    m.validity.n_flags = len(m.validity.flags)
    if nonfinite:
        _flag_nonfinite(m.validity, nonfinite)
    _flag_operating_points(m.validity, m.operating_points)
    info = family.metrics[family.headline]
    sliced = by_group.slice_run(tm, family, m.samples, m.operating_points) if tm.report.by else {}
    for point in m.operating_points:  # the pair scores served the slicing; a suite keeps its records, not them
        point.with_run_scores(None)
    record = RunRecord(
        name=tm.name, source=source, family=family.name, threat_model=tm.model_dump(mode="json"),
        dimensions=m.dimensions, eps=m.eps, metrics=plain(m.metrics), validity=m.validity,
        headline=Headline(metric=family.headline, label=info.label or family.headline, better=info.better),
        provenance=Provenance.model_validate(plain({**envelope(tm, device, started), **m.provenance,
                                                    **({"attributes": sliced["attributes"]} if sliced else {})})),
        skipped_images=m.skipped_images, **{key: plain(value) for key, value in m.sections.items()},
        **({"operating_points": m.operating_points} if m.operating_points else {}),
        **({"groups": sliced["groups"]} if sliced else {}))
    return FinishedRun(record, out)


def _flag_nonfinite(validity: Validity, count: int) -> None:
    """Record in `validity` that the recognizers gave `count` NaN or infinite embeddings (api fails the gates)."""
    validity.flag(f"{count} embedding(s) held NaN or infinite values: the recognizer is broken for these inputs, "
                  "so no success rate of this run means anything")
    setattr(validity, NONFINITE, count)


def _flag_operating_points(validity: Validity, points: list[OperatingPoint]) -> None:
    """Say in `validity` which thresholds were set on the run's own people, and which rest on a calibration too
    small for their FMR."""
    inside = sorted({p.recognizer for p in points if p.source == "in-sample"})
    if inside:
        validity.flag(f"in-sample operating point: the threshold of {', '.join(inside)} was set on the run's own "
                      "people, so its FMR is not measured apart from them; set setting.calibration (e.g. "
                      "{identities: 100}) to calibrate on people who take no other part in the run")
    for p in points:
        if p.source == "out-of-sample" and not p.supported:
            validity.flag(f"FMR {p.fmr:g} of {p.recognizer} is not supported by its calibration ({p.identities} "
                          f"identities, {p.impostor_pairs} impostor pairs, {p.identity_pairs} pairs of people; "
                          f"needs {10 / p.fmr:.0f} and {1 / p.fmr:.0f})")


def runs_here(tm: ThreatModel) -> bool:
    """Whether this process works on the run: every process when its family shards, else process 0 only."""
    return distributed.is_main() or families.get(tm.perturbation.kind).shards(tm)
