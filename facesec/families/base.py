"""What an attack family declares and returns: the plug-in interface the engine, report and gates rely on."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from facesec.threat_model import ThreatModel


@dataclass(frozen=True)
class Supports:
    """The values of the common dimensions a family gives a meaning to; others are refused at validation."""

    goals: tuple[str, ...] = ("dodging", "impersonation")
    capabilities: tuple[str, ...] = ("individual", "universal")
    knowledge: tuple[str, ...] = ("white-box", "transfer", "query")
    settings: tuple[str, ...] = ("open-set", "closed-set")


@dataclass(frozen=True)
class MetricInfo:
    """A metric a run records: what it means, how the report labels it, and which direction is better."""

    meaning: str = ""
    label: str | None = None
    """The report's words for it (its key shown beneath); None: the report shows the key itself."""
    better: Literal["lower", "higher", ""] = ""
    gate: bool = True
    """Numeric and meaningful to compare against a fixed value in a gate."""


@dataclass
class RunContext:
    """What the engine hands a family's run: where to compute, where the threat model came from, progress."""

    device: torch.device
    source: str = ""
    progress: bool = True


@dataclass
class RunOutput:
    """A run's results.json record (with `samples`, a column mapping for its CSV); subclasses add its files."""

    record: dict[str, Any]

    def write_artefacts(self, run_dir: Path, rel: str, samples: pd.DataFrame) -> dict[str, Any]:
        """Write the run's images and files into `run_dir` (`rel`: that folder relative to the suite) and
        return what to add to its results.json record (gallery entries, file links)."""
        return {}


class Family(ABC):
    """One attack family (pixel, accessory, morph, ...): spec section, what it supports, runner, report part."""

    name: ClassVar[str]
    """The `perturbation.kind` that selects it."""
    order: ClassVar[int] = 100
    """Where it comes in lists of families (error messages, the schema); ties by name."""
    expandable: ClassVar[tuple[str, ...]] = ()
    """Fields of its section where a list means one run per value (the matrix), in the order runs are named."""
    Spec: ClassVar[type[BaseModel]]
    supports: ClassVar[Supports] = Supports()
    metrics: ClassVar[dict[str, MetricInfo]]
    headline: ClassVar[str]
    """The metric the matrix and the summary show for a run, e.g. attack_success_rate or mmpmr."""
    legend: ClassVar[str | None] = None
    """What the suite matrix's cell of one of its runs shows, in a sentence under the matrix (plain text)."""
    report_partial: ClassVar[str | None] = None
    """Template file (in `template_dir`) of the family's per-run report section; None: the evasion layout."""
    template_dir: ClassVar[Path | None] = None

    def check(self, tm: ThreatModel) -> None:
        """Refuse, with a ValueError naming the field and what is allowed, what the family cannot run."""
        return None

    def needs_target_gradients(self, tm: ThreatModel) -> bool:
        """Whether the run differentiates the target itself (white-box knowledge, by default)."""
        return tm.knowledge == "white-box"

    def preflight(self, tm: ThreatModel) -> None:
        """Check, without torch and before any run, what must exist (model files, packages, a palette), so a
        missing one fails `validate` rather than a run."""
        return None

    def shards(self, tm: ThreatModel) -> bool:
        """Whether the run spreads its attempts over torchrun's processes (`facesec.distributed.map_shards`);
        when not, process 0 runs it alone and the others wait."""
        return False

    @abstractmethod
    def run(self, tm: ThreatModel, ctx: RunContext) -> RunOutput:
        """Attack the threat model's population and measure what results.json records."""

    def report_view(self, run: dict[str, Any], results_dir: Path, redact: bool) -> dict[str, Any]:
        """Plain data the family's report partial shows, from its results.json record (images under
        `results_dir`, faces blurred when `redact`)."""
        return {}

    def suite_figures(self, runs: list[dict[str, Any]]) -> list[tuple[str, str]]:
        """Figures across this family's runs in a suite: (title, PNG data URI)."""
        return []

    def gate_metrics(self) -> tuple[str, ...]:
        """Names a gate of this family may test."""
        return tuple(k for k, info in self.metrics.items() if info.gate)
