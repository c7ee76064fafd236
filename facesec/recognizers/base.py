"""The recognizer interface and its registry.

A recognizer is an `nn.Module` from aligned RGB float32 in [0, 1], NCHW at its declared input
size, to embeddings. Normalisation lives inside the module, so attack budgets are in pixel units.
Its `info` says how to align faces for it, how to compare embeddings and which weights it holds.
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Literal

import torch
from torch import nn

from facesec.data.align import Template
from facesec.errors import ConfigError
from facesec.progress import bar

Comparison = Literal["cosine", "euclidean"]


@dataclass(frozen=True)
class RecognizerInfo:
    """What a recognizer declares about itself."""

    name: str
    input_size: int
    template: Template
    embedding_size: int
    comparison: Comparison
    native_threshold: float | None
    """On `similarity()`'s scale (higher = more alike); None when the model has no native rule."""
    weights_sha256: str | None
    differentiable: bool = True
    """False for black boxes (e.g. dlib's C++ model): attacked only by transfer or queries."""


class NonFinite:
    """Counts the embeddings holding a NaN or an infinity that any Recognizer gives while a run watches: such
    a model makes every attack look like a failure, so the engine fails the run's gates on it. Counts stay on
    the device (no synchronisation per forward pass) until `total` is read."""

    def __init__(self) -> None:
        self._counts: dict[torch.device, torch.Tensor] = {}

    def add(self, embeddings: torch.Tensor) -> None:
        bad = (~torch.isfinite(embeddings.detach())).reshape(len(embeddings), -1).any(dim=1).sum()
        self._counts[bad.device] = self._counts.get(bad.device, 0) + bad

    def total(self) -> int:
        return sum(int(c) for c in self._counts.values())


_WATCHING: list[NonFinite] = []


@contextmanager
def watching_embeddings() -> Iterator[NonFinite]:
    """Count non-finite embeddings while the block runs (in any thread, from any Recognizer)."""
    count = NonFinite()
    _WATCHING.append(count)
    try:
        yield count
    finally:
        _WATCHING.remove(count)


class Recognizer(nn.Module):
    """Wraps a network with its `RecognizerInfo`; forward returns embeddings."""

    def __init__(self, net: nn.Module, info: RecognizerInfo) -> None:
        super().__init__()
        self.net = net
        self.info = info

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        for count in _WATCHING:
            count.add(out)
        return out

    @property
    def device(self) -> torch.device:
        """Where its weights live (the CPU for a model that holds none, such as a graph of integer constants)."""
        first = next(itertools.chain(self.parameters(), self.buffers()), None)
        return first.device if first is not None else torch.device("cpu")

    @torch.no_grad()
    def embed(self, x: torch.Tensor, batch_size: int = 64, progress: bool = False) -> torch.Tensor:
        """float32 embeddings of many crops, computed in batches on the model's device, returned on x's.

        `x` is float in [0, 1], or uint8 0..255 (converted a batch at a time: a dataset's crops as floats
        would take four times the memory)."""
        device = self.device

        def batch(i: int) -> torch.Tensor:
            b = x[i:i + batch_size].to(device)
            return b.float().div_(255.0) if b.dtype == torch.uint8 else b

        out = [self(batch(i)).float().to(x.device)
               for i in bar(range(0, len(x), batch_size), desc="embed", unit="batch", enabled=progress)]
        return torch.cat(out) if out else torch.zeros(0, self.info.embedding_size, device=x.device)

    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Row-wise similarity of two embedding batches: cosine, or minus the euclidean distance."""
        if self.info.comparison == "cosine":
            return torch.nn.functional.cosine_similarity(a, b, dim=-1)
        return -torch.linalg.vector_norm(a - b, dim=-1)

    def similarity_matrix(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """All-pairs similarity, shape (len(a), len(b))."""
        if self.info.comparison == "cosine":
            an = torch.nn.functional.normalize(a, dim=-1)
            bn = torch.nn.functional.normalize(b, dim=-1)
            return an @ bn.T
        return -torch.cdist(a, b)


_TRUST_CODE: ContextVar[bool] = ContextVar("facesec_trust_code", default=False)


def code_trusted() -> bool:
    """Whether `package.module:factory` recognizers and program-like files (TorchScript) may be loaded
    (off unless the user opted in)."""
    return _TRUST_CODE.get()


@contextmanager
def trusting_code(enabled: bool = True) -> Iterator[None]:
    """Allow (or not) arbitrary `package.module:factory` code and TorchScript files while the block runs: a
    threat model from someone else must not run code unless the person running it said so."""
    token = _TRUST_CODE.set(enabled)
    try:
        yield
    finally:
        _TRUST_CODE.reset(token)


Factory = Callable[..., Recognizer]
_REGISTRY: dict[str, Factory] = {}
_RUNS_FILE_CODE: dict[str, str] = {}
_QUERY_ONLY: set[str] = set()
ENTRY_POINT_GROUP = "facesec.recognizers"


def register(name: str, runs_file_code: str | None = None, query_only: bool = False) -> Callable[[Factory], Factory]:
    """Decorator: make a factory loadable by `name`. `runs_file_code` says why the files it loads are
    programs rather than data; such a recognizer is refused unless code is trusted. `query_only`: it never
    gives gradients (known before loading, so a white-box threat model against it fails validation)."""

    def deco(factory: Factory) -> Factory:
        _REGISTRY[name] = factory
        if runs_file_code:
            _RUNS_FILE_CODE[name] = runs_file_code
        if query_only:
            _QUERY_ONLY.add(name)
        return factory

    return deco


def query_only(name: str) -> bool:
    """Whether the registered recognizer `name` is a black box (no gradients), as its registration says."""
    return name in _QUERY_ONLY


def check_trust(where: str, name: str) -> None:
    """ConfigError unless `name` is safe to load from someone else's file, or code is trusted."""
    if code_trusted():
        return
    if name in _RUNS_FILE_CODE:
        raise ConfigError(f"{where}: {_RUNS_FILE_CODE[name]}; pass --trust-code (Python: trust_code=True) if you "
                          "trust the file, or export the model to ONNX")
    if name not in available() and ":" in name:
        raise ConfigError(f"{where}: {name!r} is a package.module:factory, which runs that module's code; pass "
                          "--trust-code (Python: trust_code=True) if you trust it, or install it as a plug-in "
                          "(entry-point group facesec.recognizers)")


def available() -> dict[str, Factory]:
    """Built-in recognizers and those that installed packages add through entry points."""
    found = dict(_REGISTRY)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, _lazy_entry_point(ep))
    return found


def _lazy_entry_point(ep: Any) -> Factory:
    def factory(**kwargs: Any) -> Recognizer:
        return _call_factory(ep.load(), ep.value, kwargs)

    return factory


def _call_factory(factory: Any, where: str, kwargs: dict[str, Any]) -> Recognizer:
    model = factory(**kwargs)
    if not isinstance(model, Recognizer):
        raise ConfigError(f"recognizer factory {where} returned {type(model).__name__}, "
                          "not a facesec.recognizers.Recognizer")
    return model


def load(spec: str | dict[str, Any], device: str | torch.device | None = None) -> Recognizer:
    """Build a recognizer, in eval mode, from a name, `package.module:factory`, or a mapping.

    A mapping has `name` plus the factory's keyword arguments (`weights`, `sha256`, ...).
    """
    kwargs: dict[str, Any]
    if isinstance(spec, str):
        name, kwargs = spec, {}
    else:
        kwargs = dict(spec)
        name = kwargs.pop("name", None)
        if not isinstance(name, str):
            raise ConfigError("recognizer spec needs a 'name' (see `facesec list`)")
    check_trust(f"recognizer '{name}'", name)
    registry = available()
    if name in registry:
        try:
            model = registry[name](**kwargs)
        except TypeError as exc:
            raise ConfigError(f"recognizer '{name}': {exc}") from exc
    elif ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"recognizer '{name}': cannot import {attr} from {module_name} ({exc})") from exc
        model = _call_factory(factory, name, kwargs)
    else:
        known = ", ".join(sorted(registry))
        raise ConfigError(f"unknown recognizer '{name}'; known: {known}, or give 'package.module:factory'")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if device is not None:
        model.to(device)
    return model
