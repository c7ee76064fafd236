"""Defences at run time. A weights defence changes the recognizer before it is deployed (adversarial
fine-tuning), trained on people apart from the run's. An input defence is a transform in front of it, seen three
ways. The deployed system
applies it to every image (enrolment, calibration, probes); a non-adaptive attacker differentiates the pipeline
as it is built, so a step that leaves the autograd graph (a library call, a rounding) gives it no gradient; an
adaptive attacker passes such a step by BPDA (Athalye et al. 2018: the step's value, the gradient of its
`approximation`, the identity unless the defence offers a differentiable stand-in) and averages a randomised one
over draws (EOT, `attacks.Expectation`)."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import JsonValue
from torch import nn

from facesec.defences.mad import MorphDetector
from facesec.errors import ConfigError
from facesec.plugins import DEFENCES
from facesec.recognizers.base import Recognizer

Mode = Literal["deployed", "non-adaptive", "adaptive", "oblivious"]


class InputDefence(nn.Module, ABC):
    """An image transform in pixel space ([0, 1], NCHW, the recognizer's input size)."""

    randomised: ClassVar[bool] = False
    """Draws new randomness for every image it sees (attacked adaptively with EOT)."""
    differentiable: ClassVar[bool] = True
    """False: `transform` leaves the autograd graph or has a zero gradient almost everywhere (attacked
    adaptively with BPDA)."""

    def __init__(self, generator: torch.Generator) -> None:
        super().__init__()
        self.generator = generator
        """The run's seeded source of this defence's randomness (on the CPU)."""
        self.stand_in = "the identity"
        """What `approximation` is, in words, for the run's record of how the adaptive attacker passed it."""

    @abstractmethod
    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """The defended image."""

    def approximation(self, x: torch.Tensor) -> torch.Tensor:
        """What the adaptive attacker differentiates in place of a non-differentiable `transform` (BPDA): the
        identity (the straight-through estimator) unless a defence offers a closer differentiable stand-in."""
        return x


@dataclass
class Hardened:
    """A weights defence's changed copy of the recognizer and what its training did (recorded with the run)."""

    model: Recognizer
    record: dict[str, JsonValue]


class WeightsDefence(ABC):
    """A change to the recognizer's weights before deployment, trained on `identities` people with
    `images_per_identity` faces each whom the run draws apart from everyone it attacks, enrols or calibrates on."""

    def __init__(self, generator: torch.Generator, identities: int, images_per_identity: int) -> None:
        self.seed = generator.initial_seed()
        """The run's seed for this defence (training order, random starts)."""
        self.identities, self.images_per_identity = identities, images_per_identity

    @abstractmethod
    def harden(self, model: Recognizer, faces: torch.Tensor, labels: np.ndarray, progress: bool) -> Hardened:
        """A copy of `model` changed by the defence, trained on `faces` (N x 3 x H x W in [0, 1]) of people
        `labels` (the family names it, `hardened`)."""


class PoisoningDefence:
    """A defence against a poisoned victim (its training set screened, its weights scanned or retrained, its inputs
    screened at run time), carried out by the family that trains the victim, which knows it by its name."""

    def __init__(self, generator: torch.Generator) -> None:
        self.seed = generator.initial_seed()


def weights_digest(net: nn.Module) -> str:
    """SHA-256 of a module's weights (every state tensor's bytes, in order): a changed model's own name for caches."""
    digest = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def hardened(model: Recognizer, tuned: Recognizer, label: str) -> Recognizer:
    """`tuned` (a changed copy of `model`) named for its defence, with the hash of its own weights, so thresholds
    are set for it and never reused from the bare model."""
    tuned.info = replace(model.info, name=f"{model.info.name} with {label}", weights_sha256=weights_digest(tuned))
    return tuned.eval()


class Step(nn.Module):
    """The defence as the recognizer's first layer, in one `mode`."""

    def __init__(self, defence: InputDefence, mode: Mode) -> None:
        super().__init__()
        self.defence, self.mode = defence, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "oblivious":  # an attacker who does not know the step is there
            return x
        if self.defence.differentiable:
            return self.defence.transform(x)
        with torch.no_grad():
            y = self.defence.transform(x.detach())
        if self.mode == "adaptive":
            stand_in = self.defence.approximation(x)
            return stand_in + (y - stand_in).detach()  # BPDA: the step's value, the stand-in's gradient
        return y + 0 * x  # what differentiating the built pipeline gives: no gradient through the step


def label(name: str, params: dict[str, Any]) -> str:
    """How reports and thresholds name a defence: its registry name and the parameters that say what it is (its
    parameter model's `label_fields`, else all), e.g. jpeg(quality=75)."""
    shown = getattr(DEFENCES.meta(name).get("params"), "label_fields", None) or tuple(params)
    inner = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in sorted(params.items()) if k in shown and v is not None)
    return f"{name}({inner})" if inner else name


SALT = 0x5EED_DEFE
"""Mixed into the run's seed, so a defence's draws are not the attack's own random numbers."""


STAGES: dict[str, type[InputDefence | WeightsDefence | MorphDetector | PoisoningDefence]] = {
    "input": InputDefence, "weights": WeightsDefence, "detector": MorphDetector, "poisoning": PoisoningDefence}
"""The class a defence of each stage builds."""


def build(name: str, params: dict[str, Any], seed: int
          ) -> InputDefence | WeightsDefence | MorphDetector | PoisoningDefence:
    """The registered defence `name` with its (validated) parameters and a generator seeded from `seed`."""
    factory = DEFENCES.load(name)
    try:
        defence = factory(generator=torch.Generator().manual_seed(seed ^ SALT), **params)
    except TypeError as exc:  # an installed defence declares no parameter model: its constructor is the check
        raise ConfigError(f"field 'defence': {name} does not take these parameters ({exc})") from exc
    kind: type[InputDefence | WeightsDefence | MorphDetector | PoisoningDefence] = STAGES.get(
        DEFENCES.meta(name).get("stage", "input"), InputDefence)
    if not isinstance(defence, kind):
        raise ConfigError(f"defence {name!r} built a {type(defence).__name__}, not a {kind.__module__}."
                          f"{kind.__name__}")
    return defence


def behind(model: Recognizer, defence: InputDefence, label: str, mode: Mode) -> Recognizer:
    """`model` with `defence` in front, seen in `mode`; its name says so, so thresholds are set (and cached) for
    the defended pipeline, never reused from the bare model."""
    info = replace(model.info, name=f"{model.info.name} behind {label}",
                   deterministic=model.info.deterministic and not defence.randomised)
    own_forward = type(model).forward is not Recognizer.forward  # a plug-in's subclass: keep its forward whole
    defended = Recognizer(nn.Sequential(Step(defence, mode), model if own_forward else model.net), info)
    return defended.eval()
