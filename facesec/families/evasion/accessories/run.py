"""An accessory threat model's attack and its evidence: plain and random-colour baselines, success
under fresh physical transforms, and the unconstrained whole-image sanity run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from facesec import distributed
from facesec.attacks.objectives import Criterion
from facesec.data import regions
from facesec.families.evasion.accessories import eot
from facesec.families.evasion.accessories.printability import load_palette
from facesec.families.evasion.accessory_attack import AccessoryAttack, Region
from facesec.families.evasion.spec import AccessoryPerturbation
from facesec.threat_model import ThreatModel

DEFAULT_STEP = 1 / 32
Success = Callable[[torch.Tensor], np.ndarray]
"""Per-sample success of worn faces against the target (the engine's judge)."""


def masks(p: AccessoryPerturbation, landmarks: np.ndarray, size: int) -> np.ndarray:
    """The accessory's mask on each face (N x size x size) from its 68 landmarks in crop pixels."""
    def one(lm: np.ndarray) -> np.ndarray:
        if p.shape == "eyeglasses":
            return regions.eyeglasses(lm, size, p.frame_width)
        if p.shape == "sticker":
            return regions.sticker(lm, size, p.anchor, p.width, p.height)
        return regions.facemask(lm, size)

    return np.stack([one(lm) for lm in landmarks])


def region(p: AccessoryPerturbation, landmarks: np.ndarray, size: int, device: torch.device) -> Region:
    """Per-face regions (and grid cells when the accessory is a colour grid)."""
    m = masks(p, landmarks, size)
    cells = None
    if p.grid is not None:
        columns, rows = p.grid
        cells = torch.from_numpy(np.stack([regions.grid_cells(one, rows, columns) for one in m])).to(device)
    return Region(torch.from_numpy(m).to(device), cells)


def shared_region(p: AccessoryPerturbation, landmarks: np.ndarray, size: int, device: torch.device) -> Region:
    """One physical accessory for many wearers: the region of the wearers' mean landmarks."""
    return region(p, landmarks.mean(0, keepdims=True), size, device)


def build_attack(tm: ThreatModel, **override: Any) -> AccessoryAttack:
    """The accessory optimiser the threat model asks for."""
    p = tm.perturbation
    assert isinstance(p, AccessoryPerturbation)
    a = tm.attack
    kwargs: dict[str, Any] = {
        "steps": a.steps, "step_size": a.step_size if a.step_size is not None else DEFAULT_STEP,
        "momentum": 1.0 if a.method == "mi-fgsm" else 0.0,
        "variation": None if p.eot is None else eot.Variation(
            p.eot.shift, p.eot.rotation, p.eot.scale, p.eot.brightness, p.eot.contrast, p.eot.blur),
        "eot_samples": 1 if p.eot is None else p.eot.samples,
        "tv_weight": p.tv_weight, "nps_weight": p.nps_weight,
        "palette": load_palette(p.palette) if p.nps_weight else None,
    }
    kwargs.update(a.params)  # typed by AccessoryParams when the threat model was validated
    kwargs.update(override)
    return AccessoryAttack(**kwargs)


@dataclass
class AccessoryOutcome:
    """What an accessory run produced: worn faces, baselines, fresh-transform success, the accessories."""

    x_adv: torch.Tensor
    queries: np.ndarray
    plain: torch.Tensor
    random_colour: torch.Tensor
    pattern: torch.Tensor
    """Rendered accessories, N x 3 x H x W (batch 1 when universal)."""
    mask: torch.Tensor
    """Their masks, N x H x W (batch 1 when universal)."""
    eot_rate: np.ndarray | None
    """Per sample, the share of fresh random transforms under which the accessory still succeeds."""


def attack(tm: ThreatModel, x: torch.Tensor, landmarks: np.ndarray, objective: Criterion,
           train: tuple[torch.Tensor, np.ndarray, Criterion] | None, generator: torch.Generator,
           judge: Success, transfer: bool = False, progress: bool = False) -> AccessoryOutcome:
    """Optimise the accessory (per wearer in shards spread over torchrun's processes, or one on `train` when
    universal) and gather its evidence.

    On surrogates (`transfer`) the margin is not clipped unless `attack.params.kappa` says so: success
    on the surrogate is not the goal, so the optimiser keeps pushing past its threshold.
    """
    p = tm.perturbation
    assert isinstance(p, AccessoryPerturbation)
    size = x.shape[-1]
    optimiser = build_attack(tm, **({"kappa": math.inf} if transfer and "kappa" not in tm.attack.params else {}))
    per_step = optimiser.steps * optimiser.forwards_per_step
    if train is not None:  # universal: optimised on the training wearers, worn by the evaluation wearers
        x_train, lm_train, train_obj = train
        reg = shared_region(p, lm_train, size, x.device)
        params = optimiser.run_universal(x_train, reg, train_obj, reg.parameters(1, p.colour), generator)
        queries = np.full(len(x), per_step * len(x_train) / max(len(x), 1), dtype=float)
    else:
        reg = region(p, landmarks, size, x.device)
        start = reg.parameters(len(x), p.colour)

        def shard(part: slice, g: torch.Generator) -> torch.Tensor:
            index = torch.arange(part.start, part.stop, device=x.device)
            return optimiser.run(x[part], reg[index], objective.subset(index), start[part], g)

        params = torch.cat(distributed.map_shards(len(x), tm.attack.shard_size, tm.data.seed, shard,
                                                  "accessory shards", progress)).to(x.device)
        queries = np.full(len(x), float(per_step))
    pattern = reg.render(params)
    n_acc = len(pattern)
    plain = reg.render(reg.parameters(n_acc, p.colour))
    random_colour = torch.rand(pattern.shape, generator=generator).to(pattern)
    eot_rate = None
    if p.eot is not None and optimiser.variation is not None:
        fresh = torch.Generator().manual_seed(tm.data.seed + 1)  # draws never seen by the optimiser
        hits = np.zeros(len(x))
        for _ in range(p.eot.eval_draws):
            moved, moved_mask = eot.apply(pattern, reg.mask, eot.sample(len(x), optimiser.variation, fresh))
            hits += judge(regions.wear(x, moved_mask, moved))
        eot_rate = hits / p.eot.eval_draws
    return AccessoryOutcome(
        x_adv=regions.wear(x, reg.mask, pattern), queries=queries,
        plain=regions.wear(x, reg.mask, plain), random_colour=regions.wear(x, reg.mask, random_colour),
        pattern=pattern, mask=reg.mask, eot_rate=eot_rate)


def unbounded(tm: ThreatModel, x: torch.Tensor, objective: Criterion, steps: int,
              generator: torch.Generator) -> torch.Tensor:
    """Sanity run: the whole image is the region, starting from the face itself, with no transforms
    and no penalties. The same optimiser must then reach ~100%, or its gradients lead nowhere."""
    whole = Region(torch.ones((len(x), *x.shape[-2:]), dtype=torch.bool, device=x.device))
    optimiser = build_attack(tm, steps=steps, step_size=DEFAULT_STEP, variation=None, eot_samples=1,
                             tv_weight=0.0, nps_weight=0.0, palette=None)
    return whole.render(optimiser.run(x, whole, objective, x.flatten(2).clone(), generator))
