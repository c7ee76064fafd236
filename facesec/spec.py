"""Threat models: pydantic models of the YAML files, loading with one-line errors, matrix expansion.

A threat model names its target recognizer and data and places itself on the four FACESEC
dimensions (perturbation, knowledge, goal, capability) plus the setting. A list where a dimension
or budget takes one value (`goal: [dodging, impersonation]`, `eps: [2/255, 8/255]`) expands into
one run per combination.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from collections.abc import Hashable
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    SerializeAsAny,
    Tag,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails

from facesec.errors import ConfigError


def _fraction(value: Any) -> Any:
    """Budgets may be written as fractions of the pixel range: `8/255`."""
    if isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*/\s*\d+(\.\d+)?\s*", value):
        num, den = (Fraction(v.strip()) for v in value.split("/"))
        if den == 0:
            raise ValueError("division by zero")
        return float(num / den)
    return value


def _not_bool(value: Any) -> Any:
    """YAML's true/false are not numbers here (pydantic would read them as 1 and 0)."""
    if isinstance(value, bool):
        raise ValueError("expected a number, not true/false")
    return value


Budget = Annotated[float, BeforeValidator(_fraction), BeforeValidator(_not_bool), Field(ge=0, allow_inf_nan=False)]
Number = Annotated[float, BeforeValidator(_not_bool), Field(allow_inf_nan=False)]
"""A finite number (no .inf, .nan, true or false)."""


Whole = Annotated[int, BeforeValidator(_not_bool)]
"""A whole number (no true/false); each field bounds it, since a run that large is a typo, not a plan."""


Unit = Annotated[float, BeforeValidator(_not_bool), Field(ge=0, le=1, allow_inf_nan=False)]
Ceiling = Annotated[float, BeforeValidator(_not_bool), Field(ge=0)]
"""A non-negative number or .inf (no limit); never .nan."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Data(Strict):
    """Which faces: a dataset folder or its name under $FACESEC_DATA, and how many of them."""

    dataset: str = Field("celeba-mini", min_length=1)
    identities: Whole = Field(10, ge=2, le=100_000, description="identities sampled from the dataset")
    images_per_identity: Whole = Field(5, ge=2, le=10_000, description="images per identity (enrolment + probes)")
    seed: Whole = Field(0, ge=0, le=2**32 - 1)


class OpenSet(Strict):
    """1:1 verification at a threshold calibrated on clean impostor pairs at `fmr`."""

    kind: Literal["open-set"] = "open-set"
    fmr: Number = Field(1e-3, gt=0, lt=1)


class ClosedSet(Strict):
    """Identification over a gallery of enrolled identities."""

    kind: Literal["closed-set"] = "closed-set"
    gallery_images: Whole = Field(1, ge=1, le=10_000, description="enrolment images per identity")


class Attack(Strict):
    """The optimiser, the library that runs it, and its parameters."""

    method: Literal["pgd", "fgsm", "mi-fgsm", "di-fgsm", "ti-fgsm", "cw", "square", "hopskipjump"] = "pgd"
    library: Literal["native", "torchattacks", "art"] = "native"
    steps: Whole = Field(20, ge=0, le=100_000)
    step_size: Budget | None = Field(None, description="default: 2.5 * eps / steps (PGD), eps / steps (MI-FGSM), "
                                     "1/32 (accessories)")
    random_start: bool | None = Field(None, description="default: the method's own (PGD, CW yes; FGSM, MI-FGSM no)")
    params: dict[str, int | float | bool | str] = Field({}, description="typed per optimiser: `facesec list` shows "
                                                        "which each takes (accessories: momentum, kappa, batch_size)")
    sanity_samples: Whole = Field(8, ge=1, le=100_000, description="samples for the unbounded-budget validity check")
    shard_size: Whole = Field(32, ge=1, le=100_000, description=(
        "attempts in one shard: torchrun processes take shards in turn, and each shard draws its own random "
        "numbers, so results depend on shard_size but never on the number of processes"))


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


class Gate(Strict):
    """A condition a run must meet, e.g. attack_success_rate <= 0.5; the metric must be one its family records."""

    metric: str = Field(min_length=1)
    op: Literal["<", "<=", ">", ">=", "=="] = "<="
    value: Number


class PerturbationSpec(Strict):
    """The perturbation section: `kind` selects the attack family, whose own Spec subclass holds the rest."""

    kind: str


class SpecError(ValueError):
    """A section validated by its own model (a family's perturbation, an attack's params) failed; carries
    pydantic's errors and the section's place (`at`) so messages keep their full field paths."""

    def __init__(self, errors: list[ErrorDetails], at: tuple[str, ...] = ("perturbation",)) -> None:
        super().__init__(errors[0]["msg"] if errors else "invalid")
        self.errors = errors
        self.at = at


def _family_section(value: Any) -> Any:
    """Validate `perturbation` with its family's Spec (a mapping without `kind` is a pixel perturbation)."""
    from facesec import families  # families import this module: resolve them when a file is validated

    if isinstance(value, PerturbationSpec):
        return value
    if isinstance(value, dict) and "kind" not in value:  # the first files had no kind
        value = {"kind": "pixel", **value}
    if not isinstance(value, dict):
        raise ValueError(f"perturbation: a mapping such as {{kind: pixel, eps: 8/255}} (got {value!r})")
    kind = value.get("kind")
    known = families.available()
    if not isinstance(kind, str) or kind not in known:
        raise ValueError(f"perturbation.kind: {kind!r} is not an attack family; use one of "
                         f"{', '.join(repr(k) for k in sorted(known, key=_family_order))}")
    try:
        return families.get(kind).Spec.model_validate(value)
    except ValidationError as exc:
        raise SpecError(exc.errors()) from None


def _family_order(kind: str) -> tuple[int, str]:
    order = ("pixel", "accessory", "morph", "template-inversion", "classifier-inversion")
    return (order.index(kind) if kind in order else len(order), kind)


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
    goal: Literal["dodging", "impersonation"] = "dodging"
    capability: Literal["individual", "universal"] = "individual"
    setting: Annotated[OpenSet | ClosedSet, Field(discriminator="kind")] = OpenSet()
    attack: Attack = Attack()
    photo_round_trip: bool = Field(False, description="also judge each attack pasted into its original photo at 8 "
                                   "bits, with the face detected and aligned again (as a deployed system would)")
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
        from facesec import families

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
        family.check(self)
        names = family.gate_metrics()
        for i, gate in enumerate(self.gates):
            if gate.metric not in names:
                raise ValueError(f"field 'gates.{i}.metric': {gate.metric!r} is not a metric of perturbation.kind "
                                 f"{kind}; gates may test {', '.join(names)}")
        return self


MAX_DOCUMENT_BYTES = 1 << 20
MAX_DEPTH = 32
"""Nesting deeper than this is refused while composing (a threat model is a few levels deep)."""
MAX_RUNS = 1000
"""A matrix expanding to more runs is refused unless the limit is raised (`--max-runs`)."""


EXPANDABLE = ("goal", "capability", "knowledge", "perturbation.shape", "perturbation.eps", "perturbation.norm",
              "perturbation.method", "perturbation.alpha", "perturbation.pairing", "perturbation.prior",
              "perturbation.jitter", "perturbation.restarts", "perturbation.loss", "perturbation.model_augmentation",
              "perturbation.trigger", "perturbation.poison_rate", "perturbation.epochs",
              "perturbation.trigger_rounds", "perturbation.poison_choice", "perturbation.poison_opacity",
              "perturbation.mitigation", "setting.fmr",
              "attack.steps", "attack.method", "attack.library")
"""Fields where a list means 'one run per value'."""


def _get(doc: dict[str, Any], path: str) -> Any:
    node: Any = doc
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path; numeric parts index lists (gates.0.value)."""
    keys = path.split(".")
    node: Any = doc
    for i, key in enumerate(keys):
        is_last = i == len(keys) - 1
        if isinstance(node, list) and key.isdigit() and int(key) < len(node):
            if is_last:
                node[int(key)] = value
            else:
                node = node[int(key)]
        elif isinstance(node, dict):
            if is_last:
                node[key] = value
            else:
                node = node.setdefault(key, {})
        else:
            raise ConfigError(f"--set {path}: cannot reach '{key}' (not a mapping, or no such list item)")


def _label(value: Any) -> str:
    """A short name for one value of a matrix axis: mappings by their kind and the models they name."""
    if not isinstance(value, dict):
        return str(value)
    models = [m if isinstance(m, str) else Path(str(m.get("weights") or m.get("name", "?"))).name
              for m in value.get("surrogates", [])]
    return "+".join([str(value.get("kind", "?"))] + models) if models else str(value.get("kind", value))


def expand(doc: dict[str, Any], max_runs: int = MAX_RUNS) -> list[dict[str, Any]]:
    """One document per combination of the list-valued EXPANDABLE fields; names get a suffix. The number
    of runs is checked before anything is expanded."""
    axes = [(p, v) for p in EXPANDABLE if isinstance(v := _get(doc, p), list)]
    for path, values in axes:
        if not values:
            raise ConfigError(f"field '{path}': empty list; give at least one value")
    total = math.prod(len(values) for _, values in axes)
    if total > max_runs:
        raise ConfigError(f"the matrix expands to {total:,} runs, more than the limit of {max_runs:,}; shorten its "
                          "lists or raise the limit with --max-runs")
    if not axes:
        return [doc]
    runs = []
    for combo in itertools.product(*(values for _, values in axes)):
        run = copy.deepcopy(doc)
        for (path, _), value in zip(axes, combo, strict=True):
            _set(run, path, value)
        suffix = ",".join(f"{path.split('.')[-1]}={_label(v)}" for (path, _), v in zip(axes, combo, strict=True))
        run["name"] = f"{doc.get('name', '')}[{suffix}]"
        runs.append(run)
    return runs


_UNION_TAGS = ("open-set", "closed-set", "white-box", "transfer", "query")
"""Discriminator values pydantic puts in error locations; the YAML has no such level."""


def _describe_error(source: str, err: ErrorDetails) -> str:
    inner = err.get("ctx", {}).get("error")
    if isinstance(inner, SpecError) and inner.errors:  # a section's own error, under the section's place
        first = inner.errors[0]
        return _describe_error(source, {**first, "loc": (*inner.at, *first["loc"])})
    loc = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
    kind = err["type"]
    if kind == "extra_forbidden":
        return (f"{source}: field '{loc}': unknown key; remove it or check its spelling "
                "(`facesec schema` lists the keys)")
    given = err.get("input")
    if not loc:  # a check across fields: its message names them
        return f"{source}: {err['msg'].removeprefix('Value error, ')}"
    shown = "" if kind == "missing" else f" (got {given!r})"
    return f"{source}: field '{loc}': {err['msg']}{shown}"


def _parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    parsed = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected path.to.key=value")
        if len(raw) > MAX_DOCUMENT_BYTES:
            raise ConfigError(f"--set {key.strip()}: value longer than {MAX_DOCUMENT_BYTES:,} characters")
        try:  # the threat-model loader's limits: no aliases, bounded nesting
            value = yaml.load(raw, Loader=_ThreatModelLoader) if raw.strip() else ""  # noqa: S506 - a SafeLoader
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or exc.__class__.__name__
            raise ConfigError(f"--set {key.strip()}: value is not plain YAML ({problem})") from exc
        parsed.append((key.strip(), value))
    return parsed


class _ThreatModelLoader(yaml.SafeLoader):
    """`yaml.safe_load` plus: no aliases (a few lines of them expand to gigabytes), no duplicate keys (the
    later one would silently win), and bounded nesting (deep brackets exhaust the stack)."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed; write the value out",
                                              event.start_mark)  # type: ignore[arg-type]
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                                  event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key) if isinstance(key, Hashable) else None
        return super().construct_mapping(node, deep)


def read_document(path: str | Path) -> dict[str, Any]:
    """The YAML mapping in `path`; ConfigError (one line, file and place) for anything else."""
    source = str(path)
    try:
        with Path(path).open("rb") as fh:
            raw = fh.read(MAX_DOCUMENT_BYTES + 1)
        if len(raw) > MAX_DOCUMENT_BYTES:
            raise ConfigError(f"{source}: larger than {MAX_DOCUMENT_BYTES:,} bytes; not a threat model")
        text = raw.decode("utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{source}: file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read as UTF-8 text ({exc.__class__.__name__})") from exc
    try:
        doc = yaml.load(text, Loader=_ThreatModelLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        where = f":{mark.line + 1}" if mark else ""
        if str(exc.problem).startswith("duplicate key"):
            raise ConfigError(f"{source}{where}: {exc.problem}; keep one") from exc
        raise ConfigError(f"{source}{where}: YAML tag not allowed ({exc.problem}); "
                          "threat models are plain YAML (no !!python tags)") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}{where}: YAML syntax error: {problem}") from exc
    if doc is None:
        raise ConfigError(f"{source}: empty file; a threat model needs at least 'name' "
                          "(`facesec schema` lists the fields)")
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: top level must be a mapping of fields (name, target, data, ...), "
                          f"got a {type(doc).__name__}")
    return doc


def load_threat_models(path: str | Path, overrides: list[str] | None = None,
                       max_runs: int = MAX_RUNS) -> list[ThreatModel]:
    """Validated threat models of one file: its matrix expanded, `--set path=value` applied first."""
    doc = read_document(path)
    for key, value in _parse_overrides(overrides or []):
        _set(doc, key, value)
    models = []
    try:
        runs = expand(doc, max_runs)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    for run in runs:
        try:
            models.append(ThreatModel.model_validate(run))
        except ValidationError as exc:
            raise ConfigError(_describe_error(str(path), exc.errors()[0])) from exc
    return models


def json_schema() -> dict[str, Any]:
    """JSON Schema of a threat-model file, for editors; lists are allowed where EXPANDABLE says, and
    `perturbation` is one of the installed families' sections, chosen by `kind`."""
    from facesec import families

    schema = ThreatModel.model_json_schema()
    defs = schema.setdefault("$defs", {})
    sections = []
    for kind in sorted(families.available(), key=_family_order):
        spec = families.get(kind).Spec
        section = spec.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(section.pop("$defs", {}))
        defs[spec.__name__] = section
        sections.append({"$ref": f"#/$defs/{spec.__name__}"})
    schema["properties"]["perturbation"] = {"oneOf": sections, "description": "kind selects the attack family"}
    for path in EXPANDABLE:
        head, _, field = path.partition(".")
        if not field:
            holders = [schema]
        else:
            node = schema["properties"][head]
            refs = [node.get("$ref")] + [o.get("$ref") for o in node.get("oneOf", []) + node.get("anyOf", [])]
            holders = [defs[r.rsplit("/", 1)[-1]] for r in refs if r]
            head = field
        for holder in holders:
            prop = holder.get("properties", {}).get(head)
            if prop is not None:
                single = {k: v for k, v in prop.items() if k not in ("default", "title", "description")}
                holder["properties"][head] = {**{k: v for k, v in prop.items() if k in ("default", "title")},
                                              "anyOf": [single, {"type": "array", "items": single, "minItems": 1}]}
    return schema
