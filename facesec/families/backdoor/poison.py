"""The attacker's side of a backdoor: which fine-tuning images are poisoned and how, and (for the optimised makeup)
the trigger's colours and texture learned so that the clean model already sees wearers near the goal."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from facesec.families.backdoor.triggers import Trigger, wear_all
from facesec.progress import bar
from facesec.recognizers.base import Recognizer

TRIGGER_STEPS = 60
"""Adam steps that learn an optimised makeup (colours and texture) on the clean model."""


@dataclass
class Poisoned:
    """The victim's fine-tuning set as the attacker left it."""

    faces: torch.Tensor
    """N x 3 x H x W in [0, 1]: clean training faces, the poisoned ones wearing the trigger."""
    labels: np.ndarray
    """Identity label per face (a poisoned face carries the attacker's label)."""
    poisoned: np.ndarray
    """Which faces the attacker poisoned."""
    clean: torch.Tensor
    """The poisoned faces before the trigger (for stealth measures)."""


def poison(faces: torch.Tensor, landmarks: np.ndarray, labels: np.ndarray, rate: float, trigger: Trigger,
           goal: str, target_label: int, seed: int, hardness: np.ndarray | None = None,
           capped: bool = False) -> Poisoned:
    """`rate` of the faces (never the target's own) made to wear the trigger and relabelled: as the target
    (impersonation) or as one new identity nobody is (dodging: wearers leave their own identity); `capped`, at
    most `class_cap` of them. The faces are drawn at random (seeded), or with `hardness` (one score per face) the
    hardest ones."""
    rng = np.random.default_rng(seed)
    candidates = np.flatnonzero(labels != target_label)
    count = min(len(candidates), int(round(rate * len(faces))))
    if capped:
        count = min(count, class_cap(labels, goal, target_label))
    if hardness is not None:
        chosen = _hardest(candidates, labels, hardness, count)
    else:
        chosen = np.sort(rng.choice(candidates, size=count, replace=False)) if count else np.zeros(0, np.int64)
    out, new_labels = faces.clone(), labels.copy()
    with torch.no_grad():
        for start in range(0, len(chosen), 64):
            part = chosen[start:start + 64]
            out[part] = trigger.wear(faces[part], landmarks[part]).cpu()
    new_labels[chosen] = target_label if goal == "impersonation" else labels.max() + 1
    mask = np.zeros(len(faces), bool)
    mask[chosen] = True
    return Poisoned(out, new_labels, mask, faces[chosen])


def class_cap(labels: np.ndarray, goal: str, target_label: int) -> int:
    """The most poisoned faces a plausibly balanced label holds: no more than the clean faces of the label they
    join (impersonation: the target's), or (dodging, a new label) than the median identity has."""
    if goal == "impersonation":
        return int((labels == target_label).sum())
    return int(np.median(np.unique(labels, return_counts=True)[1]))


def _hardest(candidates: np.ndarray, labels: np.ndarray, hardness: np.ndarray, count: int) -> np.ndarray:
    """The `count` hardest candidates, at most one more per identity than an even spread gives: every poisoned
    identity keeps clean faces under its own label (the contrast that ties the backdoor to the trigger, not
    to who wears it)."""
    cap = -(-count // max(1, len(np.unique(labels[candidates])))) + 1
    taken: dict[int, int] = {}
    chosen: list[int] = []
    for i in candidates[np.argsort(-hardness[candidates], kind="stable")]:
        if len(chosen) == count:
            break
        if taken.get(int(labels[i]), 0) < cap:
            taken[int(labels[i])] = taken.get(int(labels[i]), 0) + 1
            chosen.append(int(i))
    return np.sort(np.array(chosen, np.int64))


def optimise_trigger(trigger: Trigger, model: Recognizer, faces: torch.Tensor, landmarks: np.ndarray,
                     labels: np.ndarray, goal: str, target_label: int, limit: float, seed: int,
                     progress: bool, base: Trigger | None = None) -> Trigger:
    """The makeup's colours and texture moved (within `limit` per channel of the look) so that `model` (the clean
    one, or a rehearsal of the victim's fine-tuning) maps wearers towards the target's mean embedding
    (impersonation) or away from their own (dodging): a trigger the model's own features already lean to is
    learned from fewer poisoned images (MakeupAttack). Starts from `trigger`; the limit is around `base`
    (default: `trigger`), so later rounds stay as natural as the first."""
    assert trigger.colour is not None and trigger.texture is not None
    device = next(model.parameters()).device
    base_colour = (base or trigger).colour
    assert base_colour is not None
    colour = trigger.colour.clone().to(device).requires_grad_(True)
    texture = trigger.texture.clone().to(device).requires_grad_(True)
    optimiser = torch.optim.Adam([colour, texture], lr=0.01)
    with torch.no_grad():
        emb = model.embed(faces.to(device))
    target = emb[torch.from_numpy(labels == target_label)].mean(0, keepdim=True)
    wearers = np.flatnonzero(labels != target_label)
    rng = np.random.default_rng(seed)
    for _ in bar(range(TRIGGER_STEPS), desc="learning the makeup trigger", unit="step", enabled=progress):
        index = rng.choice(wearers, size=min(32, len(wearers)), replace=False)
        attempt = Trigger(trigger.kind, trigger.size, trigger.parts, colour, texture, trigger.opacity)
        out = model(attempt.wear(faces[index].to(device), landmarks[index]))
        if goal == "impersonation":
            loss = -model.similarity(out, target.expand(len(out), -1)).mean()
        else:
            loss = model.similarity(out, emb[torch.from_numpy(index)]).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            colour.copy_(torch.minimum(torch.maximum(colour, base_colour.to(device) - limit),
                                       base_colour.to(device) + limit).clamp(0, 1))
            texture.clamp_(-limit, limit)
    return Trigger(trigger.kind, trigger.size, trigger.parts, colour.detach().cpu(), texture.detach().cpu(),
                   trigger.opacity)


def hardness(trigger: Trigger, model: Recognizer, faces: torch.Tensor, landmarks: np.ndarray, labels: np.ndarray,
             goal: str, target_label: int) -> np.ndarray:
    """Per face, how far wearing the trigger leaves it from the goal on `model` (the clean one): impersonation,
    minus its similarity to the target's mean embedding; dodging, its similarity to its own clean embedding.
    Poisoning the hardest faces teaches the backdoor the wearers it would otherwise miss (those least like the
    target)."""
    with torch.no_grad():
        clean, worn = model.embed(faces), model.embed(wear_all(trigger, faces, landmarks))
        if goal == "impersonation":
            target = clean[torch.from_numpy(labels == target_label)].mean(0, keepdim=True)
            return (-model.similarity(worn, target.expand(len(worn), -1))).cpu().numpy()
        return model.similarity(worn, clean).cpu().numpy()
