"""Threat-model files checked before anything runs, without torch (so `facesec validate` is fast in editors and
pre-commit hooks): each file loads and validates, its recognizers are known and their files present, its
dataset exists, and its family's own checks pass. `facesec run` does the same first, so a late error cannot
lose a suite's finished runs."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from facesec import calibration, families
from facesec.data.dataset import resolve as resolve_dataset
from facesec.errors import ConfigError, FacesecError, NotFetched
from facesec.groups import run as by_group
from facesec.loading import blame, load_threat_models, touched
from facesec.matrix import MAX_RUNS
from facesec.recognizers.preflight import check_recognizer
from facesec.recognizers.trust import query_only, trusting_code
from facesec.threat_model import ThreatModel, Transfer


def check(files: Sequence[str | Path], overrides: Sequence[str] = (), trust_code: bool = False,
          max_runs: int = MAX_RUNS, missing: list[str] | None = None) -> list[tuple[str, ThreatModel]]:
    """Load and pre-flight every threat model before anything runs: recognizer, dataset and attack
    must exist and fit, so a late error cannot lose a suite's finished runs. With a `missing` list, what a
    facesec command would make (a model to fetch, a student to train) is noted there instead of refused."""
    with trusting_code(trust_code):
        return _check(files, overrides, max_runs, missing)


def _check(files: Sequence[str | Path], overrides: Sequence[str], max_runs: int,
           missing: list[str] | None = None) -> list[tuple[str, ThreatModel]]:
    models = [(str(f), tm) for f in files for tm in load_threat_models(f, list(overrides), max_runs)]
    for source, tm in models:
        for fields, step in _steps(tm):
            try:
                step()
            except NotFetched as exc:
                if missing is None:
                    raise NotFetched(f"{_blamed(source, overrides, fields, exc)}: {tm.name}: {exc}") from exc
                if f"{source}: {exc}" not in missing:
                    missing.append(f"{source}: {exc}")
            except FacesecError as exc:
                raise type(exc)(f"{_blamed(source, overrides, fields, exc)}: {tm.name}: {exc}") from exc
    return models


def _blamed(source: str, overrides: Sequence[str], fields: tuple[str, ...], error: Exception) -> str:
    """The `--set` that gave the field the error names; else the file, and beside it a `--set` of a field the
    check reads (`--set data.dataset` making the file's calibration too large)."""
    named = re.search(r"field '([^']+)'", str(error))
    if named is None:
        return blame(source, overrides, *fields)
    if (key := touched(overrides, named.group(1))) is not None:
        return f"--set {key} (on {source})"
    beside = touched(overrides, *fields)
    return source if beside is None else f"{source} with --set {beside}"


def _steps(tm: ThreatModel) -> list[tuple[tuple[str, ...], Callable[[], object]]]:
    """Each pre-flight check with the fields whose values it tests (an error is blamed on the `--set` of one)."""
    surrogates = tm.knowledge.surrogates if isinstance(tm.knowledge, Transfer) else []
    specs = [("target", tm.target)] + [(f"knowledge.surrogates.{i}", s) for i, s in enumerate(surrogates)]
    steps: list[tuple[tuple[str, ...], Callable[[], object]]] = [
        ((field,), functools.partial(check_recognizer, f"field '{field}'", spec)) for field, spec in specs]
    return steps + [(("data.dataset",), functools.partial(resolve_dataset, tm.data.dataset)),
                    (("perturbation", "target", "knowledge", "attack"), functools.partial(preflight, tm)),
                    (("data", "setting", "perturbation"), functools.partial(_calibration, tm)),
                    (("report",), functools.partial(by_group.check, tm, families.get(tm.perturbation.kind)))]


def _calibration(tm: ThreatModel) -> None:
    """The calibration and, beside it, every group of identities the run draws (the family's included)."""
    calibration.check(tm, families.get(tm.perturbation.kind).draws(tm))


def preflight(tm: ThreatModel) -> None:
    """The family's own checks of what must exist (files, models, packages), and a white-box attack on a
    registered black box (dlib-cpp, onnxruntime) refused here, not mid-suite."""
    family = families.get(tm.perturbation.kind)
    name = tm.target if isinstance(tm.target, str) else tm.target.get("name")
    if isinstance(name, str) and query_only(name) and family.needs_target_gradients(tm):
        raise ConfigError(f"field 'knowledge': {name} gives no gradients (it is run as a black box); use "
                          "knowledge: {kind: transfer, surrogates: [...]}" +
                          (" or {kind: query, ...}" if "query" in family.supports.knowledge else ""))
    family.preflight(tm)
