"""A pixel run against a defended target: the recognizer behind its input defence as deployed (it enrols,
calibrates and judges), and two white-box attackers of it: the non-adaptive one differentiates the pipeline as it
is built, the adaptive one passes non-differentiable steps by BPDA and averages randomised ones by EOT. The
adaptive attack gives the headline; the non-adaptive one is kept beside it, and a gap between the two beyond
their interval is what gradient masking looks like (Athalye, Carlini and Wagner 2018)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from facesec import distributed
from facesec.attacks import Criterion, Expectation, Objective
from facesec.defences.base import InputDefence, Mode, WeightsDefence, behind, build, hardened, label
from facesec.errors import ConfigError, TooFewIdentities
from facesec.families.evasion import words
from facesec.families.evasion.knowledge import AttackerView
from facesec.measures.rates import cluster_interval, paired_difference
from facesec.population import Population, select
from facesec.recognizers.base import Recognizer
from facesec.threat_model import Data, ThreatModel


@dataclass
class Defended:
    """The target behind its defence, once per way of seeing it."""

    label: str
    defence: InputDefence
    eot_samples: int
    models: dict[Mode, Recognizer]


def setup(tm: ThreatModel, model: Recognizer) -> Defended | None:
    """The defended target of `tm` (None without a defence); its randomness is seeded by the run's seed."""
    if tm.defence.name == "none":
        return None
    defence = build(tm.defence.name, tm.defence.params, tm.data.seed)
    if not isinstance(defence, InputDefence):
        return None
    if defence.randomised and tm.defence.eot_samples > 1 and tm.attack.library != "native":  # an installed one
        raise ConfigError(words.eot_needs_native(tm.defence.name, tm.defence.eot_samples))
    if defence.randomised and distributed.processes() > 1:  # one stream of draws, consumed in shard order
        raise ConfigError(f"field 'defence': {tm.defence.name} draws at random, and its draws would depend on how "
                          "torchrun splits the shards; run this threat model in one process")
    name = label(tm.defence.name, tm.defence.params)
    modes: tuple[Mode, ...] = ("deployed", "non-adaptive", "adaptive", "oblivious")
    return Defended(name, defence, tm.defence.eot_samples, {m: behind(model, defence, name, m) for m in modes})


@dataclass
class Hardening:
    """The target as its weights defence changed it, and what the training did (recorded with the run)."""

    label: str
    model: Recognizer
    record: dict[str, Any]


def harden(tm: ThreatModel, model: Recognizer, pop: Population, kept_apart: frozenset[str],
           progress: bool) -> Hardening | None:
    """The target changed by `tm`'s weights defence (None for no defence or an input one), trained on people drawn
    after the attacked ones, none of them attacked, enrolled or `kept_apart` (calibration, surrogates' training)."""
    if tm.defence.name == "none":
        return None
    defence = build(tm.defence.name, tm.defence.params, tm.data.seed)
    if not isinstance(defence, WeightsDefence):
        return None
    if distributed.processes() > 1:  # every process would train (and checkpoint) the same weights
        raise ConfigError(f"field 'defence': {tm.defence.name} trains the recognizer before the attack; run this "
                          "threat model in one process (it caches the result for the next run)")
    data = Data(dataset=tm.data.dataset, identities=defence.identities,
                images_per_identity=defence.images_per_identity, seed=defence.seed)
    try:
        train = select(data, model.info.template, progress, kept_apart | set(pop.names))
    except TooFewIdentities as exc:
        raise TooFewIdentities(f"defence {tm.defence.name} trains on people apart from the run's: {exc}; lower its "
                               "identities or data.identities") from exc
    done = defence.harden(model, train.faces.to(next(model.parameters()).device), train.identity, progress)
    name = label(tm.defence.name, tm.defence.params)
    return Hardening(name, hardened(model, done.model, name), {**done.record, "people": list(train.names)})


def _attacker(objective: Criterion | None, defended: Defended, mode: Mode) -> Criterion | None:
    if not isinstance(objective, Objective):
        return objective
    seen = replace(objective, recognizer=defended.models[mode])
    if mode == "adaptive" and defended.defence.randomised and defended.eot_samples > 1:
        return Expectation(seen, defended.eot_samples)
    return seen


def views(view: AttackerView, defended: Defended) -> tuple[AttackerView, list[AttackerView]]:
    """The headline attacker and the ones beside it: the non-adaptive one (the pipeline differentiated as built)
    and the oblivious one (the recognizer attacked as if the defence were not there, as the defence papers
    measured; its faces are judged through it). Only a white-box attacker differentiates the defence; a
    transfer or query attacker sees no gradient of it either way (none beside)."""
    if view.transfer or not isinstance(view.objective, Objective):
        return view, []
    bpda = f"BPDA through {defended.defence.stand_in}"
    steps = (f"{bpda}, EOT" if defended.defence.randomised and not defended.defence.differentiable
             else "EOT" if defended.defence.randomised else bpda if not defended.defence.differentiable
             else "gradients as built")
    adaptive = AttackerView(_attacker(view.objective, defended, "adaptive"),  # type: ignore[arg-type]
                            _attacker(view.train, defended, "adaptive"),
                            f"{view.description} through {defended.label}, adaptive ({steps})", False,
                            defended.defence.randomised)
    naive = AttackerView(_attacker(view.objective, defended, "non-adaptive"),  # type: ignore[arg-type]
                         _attacker(view.train, defended, "non-adaptive"),
                         f"{view.description} through {defended.label}, non-adaptive", False,
                         defended.defence.randomised)
    unaware = AttackerView(_attacker(view.objective, defended, "oblivious"),  # type: ignore[arg-type]
                           _attacker(view.train, defended, "oblivious"),
                           f"{view.description}, unaware of {defended.label}", False)
    return adaptive, [naive, unaware]


BESIDE = ("non_adaptive", "oblivious")
"""The metric stems of the attackers beside the adaptive one, in the order `views` gives them."""


def measures(adaptive: np.ndarray, beside: list[np.ndarray], attempted: np.ndarray,
             people: np.ndarray) -> dict[str, Any]:
    """Each attack beside the adaptive one (`BESIDE`): its success, and the adaptive attack's paired gain over it
    (people resampled), on the same attempts."""
    a, who = adaptive[attempted], people[attempted]
    out: dict[str, Any] = {}
    for stem, success in zip(BESIDE, beside, strict=True):
        n = success[attempted]
        if not len(a):
            out[f"{stem}_success_rate"] = 0.0
            continue
        gain = paired_difference(a, n, who)
        prefix = "adaptive_gain" if stem == "non_adaptive" else f"adaptive_gain_over_{stem}"
        out.update({f"{stem}_success_rate": float(n.mean()),
                    f"{stem}_success_ci95_cluster": list(cluster_interval(n, who)),
                    prefix: gain["difference"], f"{prefix}_ci95_cluster": gain["ci95_cluster"]})
    return out


def masking_flag(extra: dict[str, Any]) -> str | None:
    """The validity warning when the adaptive attack beats the non-adaptive one beyond the interval."""
    low = extra.get("adaptive_gain_ci95_cluster", [0.0])[0]
    if low <= 0:
        return None
    return (f"gradient masking suspected: the adaptive attack succeeds {extra['adaptive_gain']:+.2f} more often "
            f"than the non-adaptive one (95% interval from {low:+.2f}); a non-adaptive evaluation of this defence "
            "overstates it")
