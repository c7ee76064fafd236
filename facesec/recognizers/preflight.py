"""Recognizer specs checked before any run: the name is known, packaged models are installed, students exist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facesec.errors import ConfigError, NotFetched, WeightsError
from facesec.plugins import RECOGNIZERS
from facesec.recognizers import packaged, weights
from facesec.recognizers.tfjs_format import read_graph_model
from facesec.recognizers.trust import check_trust


def check_recognizer(where: str, spec: str | dict[str, Any]) -> None:
    """A recognizer spec names a registered recognizer (or a factory); a student's folder must exist."""
    known = RECOGNIZERS.names()
    name = spec if isinstance(spec, str) else spec.get("name")
    if not isinstance(name, str) or (name not in known and ":" not in name):
        raise ConfigError(f"{where}: unknown recognizer {name!r}; known: {', '.join(sorted(known))}, "
                          "or package.module:factory")
    check_trust(where, name)
    if isinstance(spec, dict):
        _check_weights_fields(where, spec)
    if name == "tfjs" and isinstance(spec, dict) and isinstance(spec.get("weights"), str) \
            and not weights.is_url(spec["weights"]):
        try:  # model.json and the shards' names and sizes: a broken model fails here, not mid-suite
            read_graph_model(spec["weights"], read_weights=False)
        except WeightsError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    if name in packaged.PACKAGED:  # a missing model fails here, before any run, with the fetch command
        try:
            packaged.installed(name)
        except WeightsError as exc:
            raise NotFetched(f"{where}: {exc}") from exc
    if name == "surrogate":
        folder = Path(str(spec.get("weights", ""))) if isinstance(spec, dict) else Path()
        if not (folder / "surrogate.json").is_file():
            raise NotFetched(f"{where}: no trained student in '{folder}'; train one first with "
                              f"`facesec surrogate train --arch ... --data ... --out {folder}`")


def _check_weights_fields(where: str, spec: dict[str, Any]) -> None:
    """`sha256` is 64 hex digits and a weights URL is https with a sha256: checked before any download."""
    try:
        if spec.get("sha256") is not None:
            weights.check_sha256(str(spec["sha256"]))
        location = spec.get("weights")
        if isinstance(location, str) and weights.is_url(location):
            weights.check_url(location)
            if spec.get("sha256") is None:
                raise WeightsError(f"weights URL {location} needs a sha256 to check the download against")
    except WeightsError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
