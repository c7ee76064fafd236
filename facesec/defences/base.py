"""Input defences at run time: a transform in front of a recognizer, seen three ways. The deployed system
applies it to every image (enrolment, calibration, probes); a non-adaptive attacker differentiates the pipeline
as it is built, so a step that leaves the autograd graph (a library call, a rounding) gives it no gradient; an
adaptive attacker passes such a step with the straight-through estimator (BPDA with the identity, Athalye et
al. 2018) and averages a randomised one over draws (EOT, `attacks.Expectation`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import replace
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from facesec.errors import ConfigError
from facesec.plugins import DEFENCES
from facesec.recognizers.base import Recognizer

Mode = Literal["deployed", "non-adaptive", "adaptive"]


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

    @abstractmethod
    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """The defended image."""


class Step(nn.Module):
    """The defence as the recognizer's first layer, in one `mode`."""

    def __init__(self, defence: InputDefence, mode: Mode) -> None:
        super().__init__()
        self.defence, self.mode = defence, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.defence.differentiable:
            return self.defence.transform(x)
        with torch.no_grad():
            y = self.defence.transform(x.detach())
        if self.mode == "adaptive":
            return x + (y - x).detach()  # BPDA: the step's value, the identity's gradient
        return y + 0 * x  # what differentiating the built pipeline gives: no gradient through the step


def label(name: str, params: dict[str, Any]) -> str:
    """How runs and thresholds name a defence: its registry name and parameters, e.g. jpeg(quality=75)."""
    inner = ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
    return f"{name}({inner})" if inner else name


SALT = 0x5EED_DEFE
"""Mixed into the run's seed, so a defence's draws are not the attack's own random numbers."""


def build(name: str, params: dict[str, Any], seed: int) -> InputDefence:
    """The registered defence `name` with its (validated) parameters and a generator seeded from `seed`."""
    factory = DEFENCES.load(name)
    try:
        defence = factory(generator=torch.Generator().manual_seed(seed ^ SALT), **params)
    except TypeError as exc:  # an installed defence declares no parameter model: its constructor is the check
        raise ConfigError(f"field 'defence': {name} does not take these parameters ({exc})") from exc
    if not isinstance(defence, InputDefence):
        raise ConfigError(f"defence {name!r} built a {type(defence).__name__}, not a facesec.defences.base."
                          "InputDefence")
    return defence


def behind(model: Recognizer, defence: InputDefence, label: str, mode: Mode) -> Recognizer:
    """`model` with `defence` in front, seen in `mode`; its name says so, so thresholds are set (and cached) for
    the defended pipeline, never reused from the bare model."""
    info = replace(model.info, name=f"{model.info.name} behind {label}",
                   deterministic=model.info.deterministic and not defence.randomised)
    own_forward = type(model).forward is not Recognizer.forward  # a plug-in's subclass: keep its forward whole
    defended = Recognizer(nn.Sequential(Step(defence, mode), model if own_forward else model.net), info)
    return defended.eval()
