"""The threat model: one evaluation's target, data, the four FACESEC dimensions, setting, attack and gates.

A family's own section (`perturbation`) is validated by the Spec its `kind` selects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    SerializeAsAny,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from facesec import families
from facesec.fields import Budget, Number, PerturbationSpec, SpecError, Strict, Whole
from facesec.plugins import ATTACKS, DEFENCES
from facesec.record import interval_keys

if TYPE_CHECKING:
    from facesec.families.base import Family


class Data(Strict):
    """Which faces: a dataset folder or its name under $FACESEC_DATA, and how many of them."""

    dataset: str = Field("celeba-mini", min_length=1)
    identities: Whole = Field(10, ge=2, le=100_000, description="identities sampled from the dataset")
    images_per_identity: Whole = Field(5, ge=2, le=10_000, description="images per identity (enrolment + probes)")
    seed: Whole = Field(0, ge=0, le=2**32 - 1)


class Calibration(Strict):
    """Where an open-set threshold comes from: identities that take no other part in the run (ISO/IEC 19795-1:
    an operating point is set on data apart from the data it is reported on)."""

    identities: Whole | None = Field(None, ge=2, le=100_000, description=(
        "identities drawn before anything else (default: every identity of `dataset`); drawn from data.dataset "
        "they are left out of every other draw of the run"))
    dataset: str | None = Field(None, min_length=1, description="another dataset to calibrate on (default: "
                                "data.dataset; another one cannot be checked for people in both)")
    images_per_identity: Whole = Field(5, ge=2, le=10_000, description="faces per calibration identity")
    seed: Whole | None = Field(None, ge=0, le=2**32 - 1, description="the calibration draw (default: data.seed)")
    accept_unsupported: bool = Field(False, description="run even when the calibration is too small for the FMR "
                                     "(every number of the run is then marked)")

    @model_validator(mode="after")
    def _some_people(self) -> Calibration:
        if self.identities is None and self.dataset is None:
            raise ValueError("give identities (drawn from data.dataset), a dataset, or both")
        return self


class OpenSet(Strict):
    """1:1 verification at a threshold calibrated on clean impostor pairs at `fmr`."""

    kind: Literal["open-set"] = "open-set"
    fmr: Number = Field(1e-3, gt=0, lt=1)
    calibration: Calibration | Literal["in-sample"] | None = Field(None, description=(
        "where the threshold is set: {identities: 100} (drawn first from data.dataset and left out of the run: an "
        "out-of-sample operating point), {dataset: NAME}, or in-sample (on the attacked population's own impostor "
        "pairs, accepted as such: every run then says so in its validity flags); required for an open-set run"))

    @field_validator("calibration", mode="before")
    @classmethod
    def _mapping_or_word(cls, value: object) -> object:
        if value is None or value == "in-sample" or isinstance(value, dict | Calibration):
            return value
        raise ValueError("give {identities: N} (drawn first and left out of the run), {dataset: NAME}, or the "
                         "word in-sample")

    def calibrated(self) -> Calibration | None:
        """The calibration asked for (None: in sample)."""
        return self.calibration if isinstance(self.calibration, Calibration) else None


class ClosedSet(Strict):
    """Identification over a gallery of enrolled identities."""

    kind: Literal["closed-set"] = "closed-set"
    gallery_images: Whole = Field(1, ge=1, le=10_000, description="enrolment images per identity")


class EnsembleMember(Strict):
    """One more attack of a worst-case ensemble: a method of a library, its own steps and parameters."""

    method: str = Field(min_length=1, max_length=100)
    library: str = Field("native", min_length=1, max_length=100)
    steps: Whole | None = Field(None, ge=1, le=100_000, description="default: attack.steps (Square: give its queries)")
    params: dict[str, int | float | bool | str] = {}

    @model_validator(mode="before")
    @classmethod
    def _name_alone(cls, value: Any) -> Any:
        return {"method": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _registered(self) -> EnsembleMember:
        if f"{self.library}/{self.method}" not in ATTACKS:
            raise ValueError(f"attack.ensemble: no method {self.method!r} in library {self.library!r}; available: "
                             f"{', '.join(ATTACKS.names())}")
        return self


class Attack(Strict):
    """The optimiser, the library that runs it, and its parameters."""

    method: str = Field("pgd", min_length=1, max_length=100,
                        description="an attack of the library (`facesec list` shows them)")
    library: str = Field("native", min_length=1, max_length=100,
                         description="native, torchattacks, art, or an installed one")
    steps: Whole = Field(20, ge=0, le=100_000)
    step_size: Budget | None = Field(None, description="default: 2.5 * eps / steps (PGD), eps / steps (MI-FGSM), "
                                     "1/32 (accessories)")
    random_start: bool | None = Field(None, description="default: the method's own (PGD, CW yes; FGSM, MI-FGSM no)")
    params: dict[str, int | float | bool | str] = Field({}, description="typed per optimiser: `facesec list` shows "
                                                        "which each takes (accessories: momentum, kappa, batch_size)")
    restarts: Whole = Field(1, ge=1, le=100, description=(
        "runs of the attack per face, each from its own random start, the later ones on faces not yet fooled; each "
        "face keeps its best result (AutoAttack practice; individual pixel attacks)"))
    ensemble: list[EnsembleMember] = Field([], max_length=10, description=(
        "more attacks run after the first on the faces it did not fool, each face keeping its worst case (AutoAttack "
        "practice), e.g. [mi-fgsm, {method: square, steps: 1000}]; white-box individual pixel attacks"))
    sanity_samples: Whole = Field(32, ge=1, le=100_000, description=(
        "attempts for the unbounded-budget validity check (AutoAttack practice: enough to tell masked gradients)"))
    shard_size: Whole = Field(32, ge=1, le=100_000, description=(
        "attempts in one shard: torchrun processes take shards in turn, and each shard draws its own random "
        "numbers, so results depend on shard_size but never on the number of processes"))


    @model_validator(mode="after")
    def _registered(self) -> Attack:
        if f"{self.library}/{self.method}" not in ATTACKS:
            raise ValueError(f"attack: no method {self.method!r} in library {self.library!r}; available: "
                             f"{', '.join(ATTACKS.names())}")
        return self


class Defence(Strict):
    """What stands between the attacker and the recognizer: `none`, or a registered defence with its parameters,
    written flat (`{name: jpeg, quality: 75}`) or as a name alone (its defaults)."""

    name: str = Field("none", min_length=1, max_length=100, description="none, an input defence (jpeg, "
                      "bit-depth, median, resize-pad, gaussian-noise), adversarial-training, a morph detector (s-mad, "
                      "d-mad), a backdoor defence, or an installed one (`facesec list` shows each one's families)")
    params: dict[str, int | float | bool | str] = Field({}, description="the defence's own parameters")
    eot_samples: Whole = Field(8, ge=1, le=512, description=(
        "draws of a randomised defence the adaptive attack averages over per step (EOT)"))

    @model_validator(mode="after")
    def _registered(self) -> Defence:
        if self.name == "none":
            if self.params:
                raise ValueError(f"none takes no parameters: remove {', '.join(self.params)}")
            return self
        if self.name not in DEFENCES:
            raise ValueError(f"no defence {self.name!r}; available: none, {', '.join(DEFENCES.names())}")
        if "generator" in self.params:
            raise ValueError("generator is the run's own (seeded from data.seed); remove it from the parameters")
        model = DEFENCES.meta(self.name).get("params")
        if model is not None:
            try:
                self.params = model.model_validate(self.params).model_dump(exclude_none=True)
            except ValidationError as exc:
                raise SpecError(exc.errors(), at=("defence",)) from None
        return self


def _defence_shorthand(value: Any) -> Any:
    """`jpeg` means {name: jpeg}; keys other than name and eot_samples are the defence's parameters."""
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, dict) and "params" not in value:
        own = {k: v for k, v in value.items() if k in ("name", "eot_samples")}
        rest = {k: v for k, v in value.items() if k not in own}
        return {**own, "params": rest} if rest else own
    return value


DefenceField = Annotated[Defence, BeforeValidator(_defence_shorthand, json_schema_input_type=str | dict[str, Any])]
"""A defence written as its name, or flat as {name: jpeg, quality: 75}."""


class Transfer(Strict):
    """The attacker crafts on surrogate recognizers (stolen students, or any registered model) and
    the target is judged on what they made: it is never differentiated."""

    kind: Literal["transfer"] = "transfer"
    surrogates: list[str | dict[str, Any]] = Field(
        min_length=1, description="recognizer names or spec mappings, e.g. {name: surrogate, weights: DIR}; "
                                  "several = an ensemble (library: native)")


class Query(Strict):
    """The attacker only sends images and reads the answers: scores (similarities) or decisions."""

    kind: Literal["query"] = "query"
    output: Literal["scores", "decisions"] = "scores"
    budget: Whole = Field(1000, ge=1, le=10_000_000, description="queries per attacked face; one more is refused")


def _knowledge_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    return value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)


Knowledge = Annotated[
    Annotated[Literal["white-box"], Tag("white-box")] | Annotated[Transfer, Tag("transfer")]
    | Annotated[Query, Tag("query")],
    Discriminator(_knowledge_kind)]
"""`white-box`, or a mapping whose `kind` is transfer or query."""


class Report(Strict):
    """How the run's rates are also shown: sliced by groups of people (the dataset's attribute table)."""

    by: list[Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,39}$")]] = Field(
        [], max_length=8, description="attributes of the dataset (its attribute table: `facesec data annotate`, or "
                                      "an attributes.csv) to slice every rate by, e.g. [sex, age_band, skin_tone]")
    min_group: Whole = Field(5, ge=1, le=100_000, description=(
        "groups with fewer identities are shown and marked, and take no part in the differential"))


class Gate(Strict):
    """A condition a run must meet, e.g. attack_success_rate <= 0.5 (a metric its family records), or one on the
    paired difference between it and the runs of the suite that differ from it in one setting (`difference`)."""

    metric: str = ""
    difference: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$",
        description="a setting such as knowledge or perturbation.eps: test this run's decision rate minus that of "
                    "each later run of the suite that differs from it only there, on the same people "
                    "(docs/evaluation.md), instead of a metric")
    op: Literal["<", "<=", ">", ">=", "=="] = "<="
    value: Number
    bound: Literal["lower", "upper"] | None = Field(
        None, description="test this bound of the metric's 95% interval (people resampled where the run records "
                          "it) instead of its value, e.g. upper: the attack succeeds no more often than this, at 95%")
    by: str | None = Field(None, max_length=40, description=(
        "an attribute of report.by: test the differential of the metric between its groups (stat) instead"))
    stat: Literal["ratio", "difference"] | None = Field(None, description=(
        "with by: the highest group's rate over (ratio) or minus (difference) the lowest's"))


def _difference_gate(i: int, gate: Gate, family: Family) -> None:
    """A gate on a difference between runs names a setting runs of this family can be compared over, and no metric."""
    where, setting = f"field 'gates.{i}", str(gate.difference)
    if gate.metric:
        raise ValueError(f"{where}': give metric or difference, not both (a difference gate tests {family.decision} "
                         "of this run minus a later one)")
    if family.decision is None:
        raise ValueError(f"{where}.difference': perturbation.kind {family.name} records no decisions to compare runs "
                         "on; test a metric instead")
    if setting.split(".")[0] not in ThreatModel.model_fields:
        raise ValueError(f"{where}.difference': {setting!r} is not a threat-model setting; name one such as "
                         "knowledge, perturbation.eps or attack.steps")
    if setting.split(".")[0] in ("data", "name", "description", "gates") or setting in ("goal", "setting.kind") \
            or any(setting == s or setting.startswith(s + ".") for s in family.decision_ignores):
        raise ValueError(f"{where}.difference': runs differing in {setting} are never compared (other people, other "
                         "decisions, or none changed); name a setting such as knowledge or perturbation.eps")


def _group_gate(i: int, gate: Gate, report: Report, family: Family) -> None:
    """A gate on a differential between groups names an attribute the run is sliced by, a rate it slices, a stat."""
    where = f"field 'gates.{i}"
    if gate.by is None or gate.stat is None:
        raise ValueError(f"{where}': a gate on groups gives both by (an attribute) and stat (ratio or difference)")
    if gate.by not in report.by:
        raise ValueError(f"{where}.by': {gate.by!r} is not in report.by ({', '.join(report.by) or 'empty'}); add it "
                         "there so the run is sliced by it")
    rates = [*family.sliced_rates(), "clean_fnmr", "clean_fmr"]
    if gate.metric not in rates:
        raise ValueError(f"{where}.metric': perturbation.kind {family.name} slices {', '.join(rates)} by group "
                         f"(the clean ones where it records its people's pair scores), not {gate.metric!r}")


def _defence_fits(defence: Defence, family: Family) -> None:
    """The family can evaluate this kind of defence (an installed one is an input transform: validating loads no
    plug-in code, so nothing else could be learnt from it)."""
    if defence.name == "none":
        return
    stage = DEFENCES.meta(defence.name).get("stage", "input")
    if stage not in family.supports.defences:
        can = f"; it evaluates {' and '.join(family.supports.defences)} defences" if family.supports.defences else ""
        raise ValueError(f"field 'defence': perturbation.kind {family.name} cannot evaluate a defence of stage "
                         f"{stage} ({defence.name}){can}; use defence: none, or an attack family that does (pixel)")


def _family_section(value: Any) -> Any:
    """Validate `perturbation` with its family's Spec (a mapping without `kind` is a pixel perturbation)."""
    if isinstance(value, PerturbationSpec):
        return value
    if isinstance(value, dict) and "kind" not in value:  # the first files had no kind
        value = {"kind": "pixel", **value}
    if not isinstance(value, dict):
        raise ValueError(f"perturbation: a mapping such as {{kind: pixel, eps: 8/255}} (got {value!r})")
    kind = value.get("kind")
    known = families.kinds()
    if not isinstance(kind, str) or kind not in known:
        raise ValueError(f"perturbation.kind: {kind!r} is not an attack family; use one of "
                         f"{', '.join(repr(k) for k in known)}")
    try:
        return families.get(kind).Spec.model_validate(value)
    except ValidationError as exc:
        raise SpecError(exc.errors()) from None


class ThreatModel(Strict):
    """One evaluation: target, data, the four FACESEC dimensions, setting, attack and gates."""

    name: str = Field(min_length=1)
    description: str = ""
    target: str | dict[str, Any] = Field("dlib-resnet", description="recognizer name or spec mapping")
    data: Data = Data()
    perturbation: Annotated[SerializeAsAny[PerturbationSpec], BeforeValidator(_family_section)] = Field(
        default_factory=lambda: _family_section({"kind": "pixel"}),
        description="kind: pixel | accessory | morph | template-inversion | classifier-inversion | "
                    "backdoor (or an installed family); the rest is the family's own")
    knowledge: Knowledge = "white-box"
    defence: DefenceField = Defence()
    goal: Literal["dodging", "impersonation"] = "dodging"
    capability: Literal["individual", "universal"] = "individual"
    setting: Annotated[OpenSet | ClosedSet, Field(discriminator="kind")] = OpenSet()
    attack: Attack = Attack()
    photo_round_trip: bool = Field(False, description="also judge each attack pasted into its original photo at 8 "
                                   "bits, with the face detected and aligned again (as a deployed system would)")
    report: Report = Report()
    gates: list[Gate] = []

    @model_validator(mode="after")
    def _probes_remain(self) -> ThreatModel:
        if isinstance(self.setting, ClosedSet) and self.setting.gallery_images >= self.data.images_per_identity:
            raise ValueError(f"setting.gallery_images ({self.setting.gallery_images}) must be below "
                             f"data.images_per_identity ({self.data.images_per_identity}) so that probes remain")
        return self

    @model_validator(mode="after")
    def _ensemble_is_native(self) -> ThreatModel:
        if isinstance(self.knowledge, Transfer) and len(self.knowledge.surrogates) > 1 \
                and self.attack.library != "native":
            raise ValueError("knowledge.surrogates: an ensemble of surrogates is attacked by library: native only")
        return self

    @model_validator(mode="after")
    def _family_fits(self) -> ThreatModel:
        """The family supports the dimensions chosen, its own checks pass, and every gate names its metrics."""
        family = families.get(self.perturbation.kind)
        kind = self.perturbation.kind
        knowledge = self.knowledge if isinstance(self.knowledge, str) else self.knowledge.kind
        for field, value, allowed in (("goal", self.goal, family.supports.goals),
                                      ("capability", self.capability, family.supports.capabilities),
                                      ("knowledge", knowledge, family.supports.knowledge),
                                      ("setting.kind", self.setting.kind, family.supports.settings)):
            if value in allowed:
                continue
            if field in ("goal", "capability") and field not in self.model_fields_set:
                setattr(self, field, allowed[0])  # a default the family gives no meaning to: the family's own
            else:
                raise ValueError(f"{field}: perturbation.kind {kind} supports {' or '.join(allowed)} (got {value})")
        _defence_fits(self.defence, family)
        if not family.supports.worst_case and (self.attack.restarts > 1 or self.attack.ensemble):
            field = "attack.restarts" if self.attack.restarts > 1 else "attack.ensemble"
            raise ValueError(f"field '{field}': perturbation.kind {kind} takes no per-face worst case over attacks "
                             "(restarts, ensemble); remove it (a family's own restarts are under perturbation)")
        family.check(self)
        names = family.gate_metrics()
        for i, gate in enumerate(self.gates):
            if gate.difference is not None:
                _difference_gate(i, gate, family)
                continue
            if not gate.metric:
                raise ValueError(f"field 'gates.{i}': name a metric (one of {', '.join(names)}) or a difference "
                                 "between runs (a setting such as knowledge)")
            if gate.metric not in names:
                raise ValueError(f"field 'gates.{i}.metric': {gate.metric!r} is not a metric of perturbation.kind "
                                 f"{kind}; gates may test {', '.join(names)}")
            if gate.by is not None or gate.stat is not None:
                _group_gate(i, gate, self.report, family)
                continue
            if gate.bound is not None and not set(interval_keys(gate.metric)) & set(family.metrics):
                with_interval = [n for n in names if set(interval_keys(n)) & set(family.metrics)]
                raise ValueError(f"field 'gates.{i}.bound': {gate.metric} has no recorded interval; a bound may be "
                                 f"tested on {', '.join(with_interval) or 'no metric of this family'}")
        return self
