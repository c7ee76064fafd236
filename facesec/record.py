"""The run record, typed: one run's entry in results.json. A family measures (`Measured`); the engine wraps that in
the envelope every run shares (identity, provenance, headline, gates, resume key). Imports nothing from facesec.

Written with `exclude_unset`, so a record holds exactly the entries that were given: a failed run has no
dimensions, a gate that could be judged no `error`; read back, it keeps what the file held.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    model_validator,
)

__all__ = ["Baseline", "BaselineRule", "Dimensions", "GateResult", "Headline", "Measured", "OperatingPoint",
           "Provenance", "Results", "RunRecord", "ScoreCurve", "SkippedImage", "Validity", "first_problem",
           "interval_keys", "plain", "skipped"]


SIGNED_INTERVALS = ("_drop_ci95_cluster", "_gain_ci95_cluster")
"""Interval metrics of a difference between two rates (a clean TAR drop, an adaptive attack's gain): their ends lie
in [-1, 1], not [0, 1]."""

class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Open(BaseModel):
    """A part whose family may add entries of its own (JSON values) beside the typed ones."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, JsonValue]

    def extra(self, key: str) -> JsonValue:
        """A family's own entry (None when absent)."""
        return (self.model_extra or {}).get(key)


class Dimensions(BaseModel):
    """The threat model's dimensions in words, as the matrix and the report show them."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, str]
    recognizer: str = ""
    perturbation: str = ""
    knowledge: str = ""
    goal: str = ""
    capability: str = ""
    setting: str = ""
    attack: str = ""


class Validity(_Open):
    """Warnings that a run's numbers may not mean what they seem, and the counts behind them."""

    n_flags: int = 0
    flags: list[str] = []

    def flag(self, text: str) -> None:
        """Add a warning (and count it)."""
        self.flags = [*self.flags, text]
        self.n_flags = len(self.flags)


class SkippedImage(_Closed):
    path: str
    reason: str


class Headline(_Closed):
    """The metric the matrix and summary show for the run, its words, and which direction is better."""

    metric: str
    label: str = ""
    better: Literal["lower", "higher", ""] = ""


class GateResult(_Open):
    """A gate of the threat model judged on the run: the value reached and the verdict (None: no verdict)."""

    metric: str
    op: str
    value: StrictInt | StrictFloat
    bound: Literal["lower", "upper"] | None = None
    """Set when the gate tests a bound of the metric's 95% interval instead of its value."""
    difference: str | None = None
    """Set when the gate tests the paired difference over this setting between the run and `versus`."""
    versus: str | None = None
    """The later run subtracted (None while the suite has not finished, or when no run could be paired)."""
    actual: StrictInt | StrictFloat | None = None
    passed: StrictBool | None = None
    """Only `true` is a pass: a verdict read back as anything else ("yes", 1) is none."""
    error: str | None = None


class ScoreCurve(_Closed):
    """A recognizer's clean scores on the people its threshold was calibrated on: the DET curve (FMR, FNMR) at
    thresholds set for a grid of FMRs, and histograms of the genuine and impostor scores."""

    det: list[list[float]] = []
    edges: list[float] = []
    genuine: list[int] = []
    impostor: list[int] = []


class OperatingPoint(_Closed):
    """A recognizer's threshold at an FMR: where it was calibrated, how sure it is, and the FMR it gives on the
    run's own clean impostor pairs (out of sample when the calibration identities are apart from the run)."""

    recognizer: str
    fmr: float
    threshold: float
    threshold_ci95: list[float]
    """Resampling the calibration identities (bootstrap)."""
    source: Literal["out-of-sample", "in-sample"]
    dataset: str
    identities: int
    """People the threshold was calibrated on."""
    impostor_pairs: int
    identity_pairs: int
    supported: bool
    """10 / FMR impostor pairs and 1 / FMR pairs of people behind the threshold."""
    draw: str = ""
    """The calibration draw's key (sha256 of its files): the same in every run that shares it."""
    seed: int | None = None
    fmr_measured: float | None = None
    """The share of the run's own clean impostor pairs the threshold accepts."""
    fmr_measured_ci95: list[float] = []
    fmr_measured_ci95_cluster: list[float] = []
    """Resampling the people of those pairs."""
    _run_scores: Any = PrivateAttr(None)
    """The run's own clean pair scores (`measures.operating.Scores`) while the run is in memory (never written):
    `report.by` slices the clean rates at this threshold by group."""

    def with_run_scores(self, scores: Any) -> OperatingPoint:
        self._run_scores = scores
        return self

    @property
    def run_scores(self) -> Any:
        return self._run_scores

    measured_pairs: int = 0
    curve: ScoreCurve | None = None


class Provenance(_Open):
    """What a run was measured with: versions, hashes, seed, device, times (a family adds its own entries)."""

    started: str | None = None
    finished: str | None = None
    trusted_code: bool | None = None
    processes: int | None = None
    overrides: list[str] | None = None
    """The `--set PATH=VALUE` the run was made with (`--draws N` as data.seed), in order: what changed the file."""


class RunRecord(_Open):
    """One run of results.json; a family's own sections (morph scores, print files ...) sit beside the envelope."""

    name: str
    source: str = ""
    family: str | None = None
    threat_model: dict[str, JsonValue] | None = None
    dimensions: Dimensions | None = None
    eps: float | None = None
    metrics: dict[str, JsonValue] = {}
    validity: Validity | None = None
    gates: list[GateResult] = []
    headline: Headline | None = None
    provenance: Provenance | None = None
    skipped_images: list[SkippedImage] = []
    samples_csv: str | None = None
    gallery: list[dict[str, JsonValue]] | None = None
    operating_points: list[OperatingPoint] = []
    groups: list[Sliced] = []
    """Its rates by group of people (`report.by`), each with its differential."""
    resume_key: str | None = None
    error: str | None = None
    redacted: bool | None = None
    """True when written with `--redact`: its faces blurred on disk and identity names pseudonymised."""

    def to_json(self) -> dict[str, JsonValue]:
        """The record as results.json holds it."""
        return self.model_dump(mode="json", exclude_unset=True)

    def headline_metric(self) -> str:
        """The name of the run's headline metric (attack_success_rate when the record names none)."""
        return self.headline.metric if self.headline is not None else "attack_success_rate"


class BaselineRule(_Open):
    """One run's headline against the same run in a baseline results.json."""

    run: str
    metric: str
    old: StrictInt | StrictFloat | None = None
    new: StrictInt | StrictFloat | None = None
    max_increase: StrictInt | StrictFloat = 0.0
    passed: StrictBool | None = None
    note: str | None = None
    error: str | None = None


class Baseline(_Closed):
    path: str = ""
    rules: list[BaselineRule] = []


Share = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Signed = Annotated[float, Field(ge=-1, le=1, allow_inf_nan=False)]
Short = Annotated[str, Field(max_length=300)]


class Difference(_Closed):
    """Two runs of a suite that decided about the same people and differ in one setting: the difference of their
    rates (first minus second) with the 95% interval that resamples people, both runs on the same draw."""

    first: str
    second: str
    setting: Short
    """The dotted threat-model path they differ in (`knowledge`, `perturbation.eps`)."""
    values: Annotated[list[Short], Field(min_length=2, max_length=2)]
    """That setting's value in each, as JSON."""
    decision: Short
    """The samples column compared (the family's headline decision per row)."""
    first_rate: Share
    second_rate: Share
    difference: Signed
    ci95_cluster: Annotated[list[Signed], Field(min_length=2, max_length=2)]
    n: StrictInt
    """Rows both runs decided."""
    people: StrictInt


Interval = Annotated[list[Share], Field(min_length=2, max_length=2)]
EPS = 1e-9
"""Rounding an interval's end may leave it a hair past its value (Wilson's at 0 or 1): not a disorder."""
MAX_GROUPS = 100
"""Groups of one attribute a record holds at most (a table's categories; more are refused when sliced)."""


class GroupRate(_Closed):
    """One group's rate of a sliced decision: its people and decisions, the share of True with the interval that
    resamples its people; `small` when it takes no part in the differential (too few people, or 'unknown')."""

    group: Short
    identities: StrictInt
    decisions: StrictInt
    rate: Share
    ci95_cluster: Interval
    small: StrictBool

    @model_validator(mode="after")
    def _ordered(self) -> GroupRate:
        if not self.ci95_cluster[0] - EPS <= self.rate <= self.ci95_cluster[1] + EPS:
            raise ValueError("ci95_cluster must hold the rate, lower end first")
        return self


class Differential(_Closed):
    """The group with the highest rate against the one with the lowest (among those not small): difference and
    ratio with 95% intervals from resampling people within each (a ratio is None where the lowest rate is 0, an
    interval's end None where unbounded)."""

    highest: Short
    lowest: Short
    difference: Signed
    difference_ci95: Annotated[list[Signed], Field(min_length=2, max_length=2)]
    ratio: Annotated[float, Field(ge=1, allow_inf_nan=False)] | None
    ratio_ci95: Annotated[list[Annotated[float, Field(ge=0, allow_inf_nan=False)] | None],
                          Field(min_length=2, max_length=2)] | None

    @model_validator(mode="after")
    def _ordered(self) -> Differential:
        """Intervals that hold their value, lower end first (a record read back is someone else's file)."""
        lo, hi = self.difference_ci95
        if not lo - EPS <= self.difference <= hi + EPS:
            raise ValueError("difference_ci95 must hold the difference, lower end first")
        if (self.ratio is None) != (self.ratio_ci95 is None):
            raise ValueError("ratio and ratio_ci95 are both given or both null")
        if self.ratio is not None and self.ratio_ci95 is not None:
            low, high = self.ratio_ci95
            if low is None or not low - EPS <= self.ratio <= (math.inf if high is None else high + EPS):
                raise ValueError("ratio_ci95 must hold the ratio, lower end first (an upper end of null: unbounded)")
        return self


class Sliced(_Closed):
    """A run's rate by the groups of one attribute (`report.by`)."""

    attribute: Short
    metric: Short
    """The rate sliced (a metric of the run) and the samples column of its decisions."""
    decision: Short
    minimum: StrictInt
    """Groups with fewer people are marked small."""
    groups: Annotated[list[GroupRate], Field(max_length=MAX_GROUPS + 2)]
    differential: Differential | None


MAX_CURVE = 1000
"""Runs in one curve at most (a matrix is capped at 1,000 runs)."""


class Curve(_Closed):
    """Runs of a suite that differ only in their budget: their success rates and the budget at which success
    reaches `level` (linear between the budgets measured), with its 95% interval when people are resampled (an
    end of None: beyond the largest budget measured)."""

    runs: Annotated[list[Short], Field(min_length=2, max_length=MAX_CURVE)]
    setting: Short
    decision: Short
    level: Share
    budgets: Annotated[list[Annotated[float, Field(ge=0, allow_inf_nan=False)]], Field(min_length=2,
                                                                                        max_length=MAX_CURVE)]
    rates: Annotated[list[Share], Field(min_length=2, max_length=MAX_CURVE)]
    budget_at_level: Annotated[float, Field(allow_inf_nan=False)] | None
    ci95: Annotated[list[Annotated[float, Field(allow_inf_nan=False)] | None], Field(min_length=2, max_length=2)]
    people: StrictInt


class Pairing(NamedTuple):
    """Two runs of a suite (positions in its runs, earlier first) that differ in one setting: their difference, or
    None and why it was not computed."""

    first: int
    second: int
    setting: str
    difference: Difference | None
    why: str = ""
    beside: tuple[Difference, ...] = ()
    """The same pair compared on other columns its family names for the setting (a defence's clean cost)."""


class Results(_Open):
    """The whole results.json: the suite, when and by which facesec it was written, its runs and baseline rules."""

    schema_version: int
    suite: str = ""
    created: str = ""
    facesec_version: str = ""
    runs: list[RunRecord] = []
    baseline: Baseline | None = None
    differences: list[Difference] = []
    curves: list[Curve] = []
    exit_code: Literal[0, 1, 2, 3] | None = None
    """The code `facesec run` exits with (0 gates held, 1 a gate failed, 2 a run failed on its input, 3 a run
    crashed); None while the suite runs."""

    def to_json(self) -> dict[str, JsonValue]:
        """The document as results.json holds it."""
        return self.model_dump(mode="json", exclude_unset=True)


@dataclass
class Measured:
    """What a family's run measured, for the engine to wrap in the envelope: dimensions in words, metrics,
    validity, the images it skipped, its part of the provenance, one CSV row per sample, and its own sections."""

    dimensions: Dimensions
    metrics: dict[str, Any]
    validity: Validity
    samples: Mapping[str, Any]
    skipped_images: list[SkippedImage] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    eps: float | None = None
    sections: dict[str, Any] = field(default_factory=dict)
    operating_points: list[OperatingPoint] = field(default_factory=list)


def interval_keys(metric: str) -> tuple[str, str]:
    """The keys of a rate's 95% intervals in `metrics`: the cluster interval (preferred) and Wilson's (the attack
    success rate's are `attack_success_ci95...`)."""
    stem = "attack_success" if metric == "attack_success_rate" else metric
    return f"{stem}_ci95_cluster", f"{stem}_ci95"


def first_problem(exc: ValidationError) -> str:
    """The first thing wrong with a record read back, on one printable line: where (keys escaped, since they come
    from someone else's file) and what."""
    problem = exc.errors()[0]
    where = ".".join(str(part) for part in problem["loc"]).encode("unicode_escape").decode("ascii")[:200]
    return f"{where or 'record'}: {problem['msg']}"


def skipped(items: Iterable[tuple[object, str]]) -> list[SkippedImage]:
    """The images a population left out, each with its reason, for the record."""
    return [SkippedImage(path=str(path), reason=reason) for path, reason in items]


def plain(value: Any) -> JsonValue:
    """`value` with numpy scalars and arrays, tuples and non-string keys made plain JSON values."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):  # numpy scalar or array
        return plain(value.tolist())
    if value is None or isinstance(value, str | bool | int | float):
        return value
    raise TypeError(f"not a JSON value: {type(value).__name__}")
