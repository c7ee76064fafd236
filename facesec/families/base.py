"""What an attack family declares and returns: the plug-in interface the engine, report and gates rely on."""

from __future__ import annotations

from abc import ABC
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple

from pydantic import BaseModel, JsonValue

from facesec.record import Measured, RunRecord, interval_keys
from facesec.registry import resolve

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from facesec.calibration import CalibrationDraw
    from facesec.threat_model import ThreatModel


class Draw(NamedTuple):
    """Identities a family draws besides the attacked ones, disjoint from them: how many, the images each needs,
    the field that asks. `with_attacked`: the run picks them together with the attacked ones, all with that many
    images, and then leaves the attacked ones out (the backdoor's fine-tuning draw)."""

    identities: int
    images: int
    field: str
    with_attacked: bool = False


@dataclass(frozen=True)
class Supports:
    """The values of the common dimensions a family gives a meaning to; others are refused at validation."""

    goals: tuple[str, ...] = ("dodging", "impersonation")
    capabilities: tuple[str, ...] = ("individual", "universal")
    knowledge: tuple[str, ...] = ("white-box", "transfer", "query")
    settings: tuple[str, ...] = ("open-set", "closed-set")
    defences: tuple[str, ...] = ()
    """The defence stages it can evaluate (input: a transform in front of the recognizer); none by default."""
    worst_case: bool = False
    """Whether it takes attack.restarts and attack.ensemble (a per-face worst case over attacks)."""


@dataclass(frozen=True)
class MetricInfo:
    """A metric a run records: what it means, how the report labels it, and which direction is better."""

    meaning: str = ""
    label: str | None = None
    """The report's words for it (its key shown beneath); None: the report shows the key itself."""
    better: Literal["lower", "higher", ""] = ""
    gate: bool = True
    """Numeric and meaningful to compare against a fixed value in a gate."""


@dataclass(frozen=True)
class SuiteFigure:
    """A figure across a family's runs in a suite, under its own heading in the report."""

    title: str
    uri: str
    """The PNG as a data URI."""
    heading: str = "Across runs"
    note: str = ""
    """A sentence under the heading: what the lines and bars are."""
    css: str = "family-plot"


@dataclass
class RunContext:
    """What the engine hands a family's run: where to compute, where the threat model came from, progress."""

    device: torch.device
    source: str = ""
    progress: bool = True
    calibration: CalibrationDraw | None = None
    """Where open-set thresholds come from (None: in sample, from the run's own people)."""

    def reserved(self) -> frozenset[str]:
        """Identities no draw of the run may take (the calibration's, when drawn from the run's dataset)."""
        return self.calibration.reserved() if self.calibration is not None else frozenset()


@dataclass
class RunOutput:
    """What a family's run returns: its measurements; subclasses add the files it writes beside them."""

    measured: Measured

    def write_artefacts(self, run_dir: Path, rel: str, samples: pd.DataFrame) -> dict[str, JsonValue]:
        """Write the run's images and files into `run_dir` (`rel`: that folder relative to the suite) and
        return what to add to its results.json record (gallery entries, file links)."""
        return {}

    def faceless(self, run_dir: Path) -> set[str]:
        """The files it wrote (relative to `run_dir`) that show no face, left as they are by `--redact`; every
        other image there is blurred as a face."""
        return set()


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
    decision: ClassVar[str | None] = None
    """The samples column holding each row's headline decision (True / False; empty where the run made none):
    two runs of a suite that differ in one setting are compared on it row by row (`measures.differences`)."""
    decision_ignores: ClassVar[tuple[str, ...]] = ()
    """Threat-model settings (dotted paths) that change none of those decisions: runs differing only there are
    not compared (their difference would be noise, read as 'no effect')."""
    decision_clusters: ClassVar[tuple[tuple[str, ...], ...]] = (("identity",),)
    """The ways its decisions cluster, each a tuple of samples columns (several: a row belongs to the unordered set
    of their values, e.g. a morph's pair of contributors); a paired interval takes the widest over them."""
    decision_beside: ClassVar[dict[str, tuple[str, ...]]] = {}
    """Samples columns compared too when two runs differ in a setting (by its top key), e.g. the clean decisions
    when they differ in `defence`: what the defence costs a genuine user beside what it does to the attack."""
    sliced: ClassVar[dict[str, str]] = {}
    """Rates `report.by` slices by group of people: metric -> the samples column of its decisions (True / False per
    row, empty where none), the rate being their share of True; empty: the headline and its `decision`."""
    legend: ClassVar[str | None] = None
    """What the suite matrix's cell of one of its runs shows, in a sentence under the matrix (plain text)."""
    runner: ClassVar[str | None] = None
    """`module:function` that runs it, `(tm, ctx) -> RunOutput`; imported when a run starts (torch lives there)."""
    report_partial: ClassVar[str | None] = None
    """Template file (in `template_dir`) of the family's per-run report section; None: none."""
    template_dir: ClassVar[Path | None] = None
    viewer: ClassVar[str | None] = None
    """`module:function` giving what the partial shows, `(run, results_dir, out_dir, redact) -> dict`."""
    plotter: ClassVar[str | None] = None
    """`module:function` drawing figures across its runs in a suite, `(runs) -> list[SuiteFigure]`."""

    def check(self, tm: ThreatModel) -> None:
        """Refuse, with a ValueError naming the field and what is allowed, what the family cannot run."""
        return None

    def draws(self, tm: ThreatModel) -> tuple[Draw, ...]:
        """Identities it draws from data.dataset besides the attacked ones, disjoint from them, so `validate` can
        tell a run the dataset cannot fill."""
        return ()

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

    def run(self, tm: ThreatModel, ctx: RunContext) -> RunOutput:
        """Attack the threat model's population and measure what results.json records (by its `runner`)."""
        if self.runner is None:
            raise NotImplementedError(f"family {self.name!r} declares no runner")
        output: RunOutput = resolve(self.runner)(tm, ctx)
        return output

    def report_view(self, run: RunRecord, results_dir: Path, out_dir: Path, redact: bool) -> dict[str, Any]:
        """Plain data the family's report partial shows, from its results.json record (images under
        `results_dir`, links relative to the report's folder `out_dir`, faces blurred when `redact`)."""
        view: dict[str, Any] = resolve(self.viewer)(run, results_dir, out_dir, redact) if self.viewer else {}
        return view

    def metric_text(self, key: str, value: JsonValue) -> str | None:
        """A metric as the report's metrics table shows it (None: formatted the usual way)."""
        return None

    def suite_figures(self, runs: list[RunRecord]) -> list[SuiteFigure]:
        """Figures across this family's runs in a suite (by its `plotter`)."""
        found: list[SuiteFigure] = resolve(self.plotter)(runs) if self.plotter else []
        return found

    def legends(self, runs: list[RunRecord]) -> list[tuple[str, str]]:
        """(id, sentence) under the suite matrix on what these runs' cells show; by default its `legend`."""
        return [(self.name, self.legend)] if self.legend else []

    def matrix_detail(self, run: RunRecord) -> str:
        """The second line of a run's matrix cell, under its headline (empty: none)."""
        return ""

    def summary_line(self, run: RunRecord) -> str:
        """The run's result in one line of the console summary: its headline with the interval."""
        key = run.headline_metric()
        cluster, wilson = interval_keys(key)
        value, ci = run.metrics.get(key), run.metrics.get(cluster, run.metrics.get(wilson))
        label = run.headline.label if run.headline is not None else key
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{label} not measured"
        interval = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if isinstance(ci, list) and len(ci) == 2 \
            and all(isinstance(c, int | float) and not isinstance(c, bool) for c in ci) else ""
        return f"{label} {value:.3f}{interval}"

    def sliced_rates(self) -> dict[str, str]:
        """The rates sliced by group and their decision columns (see `sliced`)."""
        return self.sliced or ({self.headline: self.decision} if self.decision else {})

    def gate_metrics(self) -> tuple[str, ...]:
        """Names a gate of this family may test."""
        return tuple(k for k, info in self.metrics.items() if info.gate)
