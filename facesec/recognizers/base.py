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
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from facesec.data.align import Template
from facesec.errors import ConfigError
from facesec.plugins import RECOGNIZERS
from facesec.progress import bar
from facesec.recognizers.trust import check_trust

Comparison = Literal["cosine", "euclidean"]


@dataclass(frozen=True)
class TrainedOn:
    """The dataset a recognizer learnt from (a student) and, when its card lists them, the identities: runs on
    that dataset attack only other people, so that nothing it memorised flatters a transfer."""

    dataset: str
    identities: frozenset[str] | None
    """None: the card does not say (the run flags it)."""


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
    trained_on: TrainedOn | None = None
    deterministic: bool = True
    """False when its output depends on random draws (a randomised defence in front): its scores are never cached."""


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


Factory = Callable[..., Recognizer]


def register(name: str, runs_file_code: str | None = None, query_only: bool = False) -> Callable[[Factory], Factory]:
    """Decorator: make a factory loadable by `name` while the program runs (installed packages use the
    `facesec.recognizers` entry-point group). `runs_file_code` says why the files it loads are programs rather
    than data (refused unless code is trusted); `query_only`: it never gives gradients."""

    def deco(factory: Factory) -> Factory:
        return RECOGNIZERS.add(name, factory, runs_file_code=runs_file_code, query_only=query_only)

    return deco


def available() -> list[str]:
    """Built-in recognizers, those added while running, and those installed packages add (entry points)."""
    return RECOGNIZERS.names()


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
    if name in RECOGNIZERS:
        try:
            model = _call_factory(RECOGNIZERS.load(name), name, kwargs)
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
        known = ", ".join(available())
        raise ConfigError(f"unknown recognizer '{name}'; known: {known}, or give 'package.module:factory'")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if device is not None:
        model.to(device)
    return model
