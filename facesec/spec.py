"""Threat models: pydantic models of the YAML files, loading with one-line errors, matrix expansion.

A threat model names its target recognizer and data and places itself on the four FACESEC
dimensions (perturbation, knowledge, goal, capability) plus the setting. A list where a dimension
or budget takes one value (`goal: [dodging, impersonation]`, `eps: [2/255, 8/255]`) expands into
one run per combination.
"""

from __future__ import annotations

import copy
import itertools
import re
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, ValidationError, model_validator
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


Budget = Annotated[float, BeforeValidator(_fraction), Field(ge=0)]


Unit = Annotated[float, Field(ge=0, le=1)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Data(Strict):
    """Which faces: a dataset folder or its name under $FACESEC_DATA, and how many of them."""

    dataset: str = "celeba-mini"
    identities: int = Field(10, ge=2, description="identities sampled from the dataset")
    images_per_identity: int = Field(5, ge=2, description="images per identity (enrolment + probes)")
    seed: int = 0


class PixelPerturbation(Strict):
    """Additive noise bounded in an Lp norm, in [0, 1] pixel units."""

    kind: Literal["pixel"] = "pixel"
    norm: Literal["linf", "l2"] = "linf"
    eps: Budget = 8 / 255


class Eot(Strict):
    """Random physical transforms of the worn accessory (expectation over transformation)."""

    samples: int = Field(2, ge=1, description="transforms averaged at every optimisation step")
    shift: float = Field(0.02, ge=0, le=0.2, description="translation, fraction of the crop")
    rotation: float = Field(4.0, ge=0, le=45, description="degrees")
    scale: float = Field(0.04, ge=0, le=0.5, description="relative size change")
    brightness: float = Field(0.08, ge=0, le=0.5, description="added to the colours")
    contrast: float = Field(0.1, ge=0, le=0.5, description="relative change of the colours' spread")
    blur: float = Field(0.8, ge=0, le=5, description="largest Gaussian sigma in pixels")
    eval_draws: int = Field(8, ge=1, description="fresh transforms per attempt when measuring physical robustness")


_SHAPE_FIELDS = {"frame_width": "eyeglasses", "anchor": "sticker", "width": "sticker", "height": "sticker"}


class AccessoryPerturbation(Strict):
    """Something worn: eyeglass frames, a sticker or a face mask, placed from the face's landmarks.

    Colours are free in [0, 1] inside the accessory and start from `colour`; nothing else changes.
    """

    kind: Literal["accessory"] = "accessory"
    shape: Literal["eyeglasses", "sticker", "facemask"] = "eyeglasses"
    frame_width: float = Field(0.035, gt=0, le=0.2, description="eyeglasses: rim thickness, fraction of the crop")
    anchor: Literal["forehead", "left-cheek", "right-cheek", "nose"] = Field("forehead", description="sticker")
    width: float = Field(0.25, gt=0, le=1, description="sticker: fraction of the crop")
    height: float = Field(0.12, gt=0, le=1, description="sticker: fraction of the crop")
    grid: tuple[Annotated[int, Field(ge=1, le=64)], Annotated[int, Field(ge=1, le=64)]] | None = Field(
        None, description="[columns, rows]: one colour per cell (FACESEC masks: [16, 8]); null = per pixel")
    colour: tuple[Unit, Unit, Unit] = Field((0.5, 0.5, 0.5), description="plain starting colour, RGB in [0, 1]")
    eot: Eot | None = Field(Eot(), description="null: optimise and judge the digital accessory only")
    tv_weight: float = Field(0.0, ge=0, description="total-variation penalty (smoothness)")
    nps_weight: float = Field(0.0, ge=0, description="non-printability penalty (distance to the palette)")
    palette: str = Field("default", description="'default' or a file of R,G,B lines in 0-255")

    @model_validator(mode="after")
    def _fields_fit_shape(self) -> AccessoryPerturbation:
        for name, shape in _SHAPE_FIELDS.items():
            if name in self.model_fields_set and self.shape != shape:
                raise ValueError(f"perturbation.{name} applies to shape {shape} only (this one is {self.shape}); "
                                 "remove it")
        return self


def _pixel_by_default(value: Any) -> Any:
    """A perturbation without `kind` is a pixel perturbation (the first files had no kind)."""
    if isinstance(value, dict) and "kind" not in value:
        return {"kind": "pixel", **value}
    return value


Perturbation = Annotated[PixelPerturbation | AccessoryPerturbation, BeforeValidator(_pixel_by_default),
                         Field(discriminator="kind")]


class OpenSet(Strict):
    """1:1 verification at a threshold calibrated on clean impostor pairs at `fmr`."""

    kind: Literal["open-set"] = "open-set"
    fmr: float = Field(1e-3, gt=0, lt=1)


class ClosedSet(Strict):
    """Identification over a gallery of enrolled identities."""

    kind: Literal["closed-set"] = "closed-set"
    gallery_images: int = Field(1, ge=1, description="enrolment images per identity")


class Attack(Strict):
    """The optimiser, the library that runs it, and its parameters."""

    method: Literal["pgd", "fgsm", "mi-fgsm", "di-fgsm", "ti-fgsm", "cw", "square", "hopskipjump"] = "pgd"
    library: Literal["native", "torchattacks", "art"] = "native"
    steps: int = Field(20, ge=0)
    step_size: Budget | None = Field(None, description="default: 2.5 * eps / steps (PGD), eps / steps (MI-FGSM), "
                                     "1/32 (accessories)")
    random_start: bool | None = Field(None, description="default: the method's own (PGD, CW yes; FGSM, MI-FGSM no)")
    params: dict[str, int | float | bool | str] = Field({}, description="method-specific: momentum, kappa, batch_size")
    sanity_samples: int = Field(8, ge=1, description="samples for the unbounded-budget validity check")


METRIC_NAMES = (
    "attack_success_rate", "n_attempts", "n_samples", "clean_success_rate", "noise_success_rate",
    "protocol_before", "protocol_after", "similarity_before_mean", "similarity_after_mean",
    "similarity_shift_mean", "threshold", "linf_mean", "l2_mean", "ssim_mean", "queries_per_sample",
    "attack_time_s", "wall_time_s", "n_identities", "n_skipped_images",
    "plain_accessory_success_rate", "eot_success_rate", "surrogate_success_rate", "photo_success_rate",
    "validity.noise_baseline_asr", "validity.unbounded_asr", "validity.n_flags",
)
"""What gates may test: the run's numeric metrics and its validity checks."""


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
    budget: int = Field(1000, ge=1, description="queries per attacked face; one more is refused")


QUERY_METHODS = {"scores": ("square",), "decisions": ("hopskipjump",)}
"""Attacks that need only what the target returns."""


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
    """A condition a run must meet, e.g. attack_success_rate <= 0.5."""

    metric: Literal[METRIC_NAMES]  # type: ignore[valid-type]
    op: Literal["<", "<=", ">", ">=", "=="] = "<="
    value: float


class ThreatModel(Strict):
    """One evaluation: target, data, the four FACESEC dimensions, setting, attack and gates."""

    name: str = Field(min_length=1)
    description: str = ""
    target: str | dict[str, Any] = Field("dlib-resnet", description="recognizer name or spec mapping")
    data: Data = Data()
    perturbation: Perturbation = PixelPerturbation()
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
    def _query_attack(self) -> ThreatModel:
        allowed = QUERY_METHODS[self.knowledge.output] if isinstance(self.knowledge, Query) else ()
        if isinstance(self.knowledge, Query):
            if self.attack.method not in allowed:
                raise ValueError(f"attack.method: a target returning {self.knowledge.output} is attacked by "
                                 f"{' or '.join(allowed)} (got {self.attack.method})")
            if self.capability != "individual" or not isinstance(self.perturbation, PixelPerturbation):
                raise ValueError("knowledge: query attacks are per-image pixel attacks (capability: individual, "
                                 "perturbation.kind: pixel)")
        elif self.attack.method in ("square", "hopskipjump"):
            raise ValueError(f"attack.method: {self.attack.method} is a query attack; use it with knowledge: "
                             "{kind: query, output: scores|decisions, budget: N}")
        return self

    @model_validator(mode="after")
    def _accessory_attack(self) -> ThreatModel:
        if not isinstance(self.perturbation, AccessoryPerturbation):
            return self
        if self.attack.library != "native":
            raise ValueError(f"attack.library: accessories are optimised by facesec itself; use library: native "
                             f"(got {self.attack.library})")
        if self.attack.method not in ACCESSORY_METHODS:
            raise ValueError(f"attack.method: accessories take {' or '.join(ACCESSORY_METHODS)} "
                             f"(got {self.attack.method})")
        if self.attack.random_start:
            raise ValueError("attack.random_start: accessories start from perturbation.colour; remove it")
        return self


ACCESSORY_METHODS = ("pgd", "mi-fgsm")
"""Optimisers of accessory colours: signed gradient steps, with momentum for mi-fgsm."""

EXPANDABLE = ("goal", "capability", "knowledge", "perturbation.shape", "perturbation.eps", "perturbation.norm",
              "setting.fmr", "attack.steps", "attack.method", "attack.library")
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


def expand(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One document per combination of the list-valued EXPANDABLE fields; names get a suffix."""
    axes = [(p, v) for p in EXPANDABLE if isinstance(v := _get(doc, p), list)]
    for path, values in axes:
        if not values:
            raise ConfigError(f"field '{path}': empty list; give at least one value")
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


_UNION_TAGS = ("open-set", "closed-set", "pixel", "accessory", "white-box", "transfer", "query")
"""Discriminator values pydantic puts in error locations; the YAML has no such level."""


def _describe_error(source: str, err: ErrorDetails) -> str:
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
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc.__class__.__name__})") from exc
        parsed.append((key.strip(), value))
    return parsed


def read_document(path: str | Path) -> dict[str, Any]:
    """The YAML mapping in `path`; ConfigError (one line, file and place) for anything else."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{source}: file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read as UTF-8 text ({exc.__class__.__name__})") from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        where = f":{mark.line + 1}" if mark else ""
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


def load_threat_models(path: str | Path, overrides: list[str] | None = None) -> list[ThreatModel]:
    """Validated threat models of one file: its matrix expanded, `--set path=value` applied first."""
    doc = read_document(path)
    for key, value in _parse_overrides(overrides or []):
        _set(doc, key, value)
    models = []
    try:
        runs = expand(doc)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    for run in runs:
        try:
            models.append(ThreatModel.model_validate(run))
        except ValidationError as exc:
            raise ConfigError(_describe_error(str(path), exc.errors()[0])) from exc
    return models


def json_schema() -> dict[str, Any]:
    """JSON Schema of a threat-model file, for editors; lists are allowed where EXPANDABLE says."""
    schema = ThreatModel.model_json_schema()
    defs = schema.get("$defs", {})
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
