"""A backdoor run: poison the victim's fine-tuning set, fine-tune, then measure the clean and the backdoored
model side by side on identities never used in fine-tuning, and run the defences asked for."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import JsonValue

from facesec.calibration import CalibrationDraw
from facesec.errors import DataError, TooFewIdentities
from facesec.families.backdoor import chosen_defences
from facesec.families.backdoor import defences as defence_runs
from facesec.families.backdoor.measure import Evaluation, evaluate, rate, stealth, success, whose
from facesec.families.backdoor.poison import Poisoned, hardness, optimise_trigger, poison
from facesec.families.backdoor.spec import BackdoorPerturbation
from facesec.families.backdoor.triggers import NATURAL, Palette, Trigger, accessory_alpha, build, wear_all
from facesec.families.base import RunContext
from facesec.finetune import Recipe, finetune, training_threshold
from facesec.gallery import GALLERY_SIZE, GalleryOutput
from facesec.measures.rates import cluster_interval, paired_difference
from facesec.photos import round_trip
from facesec.population import Population, everyone_but, select
from facesec.protocols import identity_pairs, people_flag, supported_fmr
from facesec.provenance import measured_on
from facesec.recognizers.base import Recognizer, load
from facesec.record import Dimensions, Measured, OperatingPoint, SkippedImage, Validity
from facesec.threat_model import ClosedSet, OpenSet, ThreatModel

ROBUSTNESS: dict[str, dict[str, Any]] = {"half_opacity": {"strength": 0.5}, "moved": {"shift": (0.03, 0.03)}}
"""Variations of the trigger a wearer would not get exactly right (round trip through a photo: see below)."""

ACCESSORIES = {"eyeglasses": (0.05, 0.05, 0.05), "sticker": (0.95, 0.95, 0.95)}
"""Plain accessories (mask, colour) that must not open the backdoor."""


class BackdoorOutput(GalleryOutput):
    """The gallery, plus the backdoored weights when asked for (loadable as a recognizer)."""

    def __init__(self, measured: Measured, images: list[dict[str, torch.Tensor | None]],
                 fields: list[dict[str, Any]], model: Recognizer | None) -> None:
        super().__init__(measured, images, fields)
        self.model = model

    def write_artefacts(self, run_dir: Path, rel: str, samples: pd.DataFrame) -> dict[str, JsonValue]:
        out = super().write_artefacts(run_dir, rel, samples)
        if self.model is not None:
            torch.save({k: v.cpu() for k, v in self.model.net.state_dict().items()}, run_dir / "backdoored.pt")
            out["backdoored_model"] = f"{rel}/backdoored.pt"
        return out


def _paint(faces: torch.Tensor, masks: torch.Tensor, colour: tuple[float, float, float]) -> torch.Tensor:
    paint = torch.tensor(colour).view(1, 3, 1, 1)
    return faces * (1 - masks) + paint * masks


@dataclass
class _Faces:
    """Who a backdoor run concerns: the attacked population, the fine-tuning identities (the target first) and
    where clean accuracy is measured."""

    clean_model: Recognizer
    pop: Population
    trained_on: Population
    wide: Population | None
    """Every identity never fine-tuned on (`clean_population: unused`), else None."""

    @property
    def clean(self) -> tuple[torch.Tensor, np.ndarray] | None:
        return None if self.wide is None else (self.wide.faces, self.wide.identity)

    @property
    def clean_names(self) -> list[str]:
        """The name of each identity index of the faces clean accuracy is measured on."""
        return (self.pop if self.wide is None else self.wide).names


@dataclass
class _Training:
    """The trigger, the poisoned set, and the models: backdoored, and the same fine-tuning unpoisoned."""

    trigger: Trigger
    recipe: Recipe
    poisoned: Poisoned
    tuned: Any
    model: Recognizer
    benign: Recognizer


def run_threat_model(tm: ThreatModel, ctx: RunContext) -> BackdoorOutput:
    p = tm.perturbation
    assert isinstance(p, BackdoorPerturbation)
    t0 = time.perf_counter()
    closed = isinstance(tm.setting, ClosedSet)
    fmr = tm.setting.fmr if isinstance(tm.setting, OpenSet) else 1e-3
    who = _faces(tm, p, ctx)
    trained = _train(tm, p, who, ctx.progress)
    pop = who.pop
    faces, marks, ids = pop.faces, pop.landmarks, pop.identity
    worn = wear_all(trained.trigger, faces, marks)
    target_face = who.trained_on.faces[0]  # the target is training identity 0
    before = evaluate(trained.benign, faces, ids, target_face, fmr, who.clean, ctx.calibration, who.clean_names)
    after = evaluate(trained.model, faces, ids, target_face, fmr, who.clean, ctx.calibration, who.clean_names)
    asr = success(after, worn, tm.goal, closed)
    bare = success(after, faces, tm.goal, closed)
    attack = _attack_metrics(tm, p, who, trained, worn, before, after, (asr, bare), closed)  # before the defences
    defences = defence_runs.run_all(chosen_defences(tm), defence_runs.Setting(
        clean=trained.benign, backdoored=trained.model, poisoned=trained.poisoned, trigger=trained.trigger,
        recipe=defence_runs.mitigation_recipe(trained.recipe, p.mitigation),
        held_faces=faces, held_marks=marks, held_ids=ids, target_face=target_face, fmr=fmr, goal=tm.goal,
        closed=closed, seed=tm.data.seed, progress=ctx.progress, retrain_faces=who.trained_on.faces,
        retrain_labels=who.trained_on.identity, backdoored_success=asr, clean_population=who.clean,
        calibration=ctx.calibration))
    metrics = {**attack, "defences": defences}
    metrics.update(_training_metrics(tm, p, who, trained, before, after, fmr, ctx.calibration))
    metrics["wall_time_s"] = time.perf_counter() - t0
    points = [] if closed else [e.point.model_copy(update={"recognizer": f"{e.point.recognizer} ({name})"})
                                for e, name in ((after, "backdoored"), (before, "benign fine-tune"))
                                if e.point is not None]
    return _output(tm, p, who, trained, worn, (asr, _counted(bare, tm.goal)), after, metrics, fmr, points)


def _faces(tm: ThreatModel, p: BackdoorPerturbation, ctx: RunContext) -> _Faces:
    clean_model = load(tm.target, ctx.device)
    reserved = ctx.reserved()
    pop = select(tm.data, clean_model.info.template, ctx.progress, reserved)
    trained_on = _training_population(tm, pop.names, reserved, clean_model, ctx.progress)
    wide = (everyone_but(tm.data.dataset, [*trained_on.names, *reserved], clean_model.info.template, ctx.progress)
            if p.clean_population == "unused" else None)
    return _Faces(clean_model, pop, trained_on, wide)


def _train(tm: ThreatModel, p: BackdoorPerturbation, who: _Faces, progress: bool) -> _Training:
    """The attacker's trigger (learned in rounds for makeup-optimised), the poisoned fine-tuning set, the
    victim's fine-tuning of it and of the clean set."""
    clean_model, seed = who.clean_model, tm.data.seed
    size = clean_model.info.template.size
    train_faces, train_marks, labels = who.trained_on.faces, who.trained_on.landmarks, who.trained_on.identity
    look = Palette(*(tuple(getattr(p.colours, part)) for part in ("lips", "eyeshadow", "blush")))
    trigger = build(p.trigger, size, seed, p.parts, look, p.opacity, p.patch_size, p.blend, p.patch_position)
    recipe = Recipe(p.layers, p.epochs, p.learning_rate, p.batch_identities, p.batch_images,
                    training_threshold(clean_model, train_faces, labels, 1e-3), seed, anchor=p.anchor,
                    distill=p.distill)

    def poison_with(look: Trigger) -> Poisoned:
        """The fine-tuning set poisoned with `look` (at `poison_opacity` when set), on the faces `poison_choice`
        picks."""
        if p.poison_opacity is not None:
            look = dataclasses.replace(look, opacity=p.poison_opacity)
        score = (hardness(look, clean_model, train_faces, train_marks, labels, tm.goal, 0)
                 if p.poison_choice == "hardest" else None)
        return poison(train_faces, train_marks, labels, p.poison_rate, look, tm.goal, 0, seed, score,
                      capped=p.poison_cap == "class-size")

    if p.trigger == "makeup-optimised":
        base, learned_on = trigger, clean_model
        for round_ in range(p.trigger_rounds):
            trigger = optimise_trigger(trigger, learned_on, train_faces, train_marks, labels, tm.goal, 0,
                                       p.naturalness, seed, progress, base)
            if round_ + 1 < p.trigger_rounds:  # the attacker's rehearsal of the victim's training with this look
                rehearsal = poison_with(trigger)
                learned_on = finetune(clean_model, rehearsal.faces, rehearsal.labels,
                                      dataclasses.replace(recipe, epochs=max(1, p.epochs // 2)), progress).model
    poisoned = poison_with(trigger)
    tuned = finetune(clean_model, poisoned.faces, poisoned.labels, recipe, progress)
    # the victim's same fine-tuning on the unpoisoned set: what poisoning costs is measured against it
    benign = finetune(clean_model, train_faces, labels, recipe, progress).model if poisoned.poisoned.any() \
        else tuned.model
    return _Training(trigger, recipe, poisoned, tuned, tuned.model, benign)


def _attack_metrics(tm: ThreatModel, p: BackdoorPerturbation, who: _Faces, trained: _Training, worn: torch.Tensor,
                    before: Evaluation, after: Evaluation, seen: tuple[np.ndarray, np.ndarray],
                    closed: bool) -> dict[str, Any]:
    """Success with the trigger (`seen`: worn, and bare) and without, on the clean model, under everyday
    changes, and false triggers; for dodging, every rate counts only the faces the judging model matches without
    anything worn (`_counted`)."""
    faces, marks, pop = who.pop.faces, who.pop.landmarks, who.pop
    asr, bare = seen
    counted = _counted(bare, tm.goal)

    def outcome(x: torch.Tensor, ev: Evaluation = after, kept: np.ndarray = counted) -> np.ndarray:
        return success(ev, x, tm.goal, closed)[kept]

    wearers = whose(after, tm.goal)
    robustness = {name: rate(outcome(wear_all(trained.trigger, faces, marks, **kw)), wearers[counted])
                  for name, kw in ROBUSTNESS.items()}
    photo = round_trip(pop.paths, faces, worn, pop.template)
    found = photo.found if tm.goal == "impersonation" else photo.found[_probe_rows(after)]
    robustness["photo_round_trip"] = rate(outcome(photo.crops) & found[counted], wearers[counted])
    benign_counted = _counted(success(before, faces, tm.goal, closed), tm.goal)
    clean_model = rate(outcome(worn, before, benign_counted), wearers[benign_counted])
    return {
        "backdoor_asr": rate(asr[counted])["rate"], "backdoor_asr_ci95": rate(asr[counted])["ci95"],
        "backdoor_asr_ci95_cluster": list(cluster_interval(asr[counted], wearers[counted])),
        "n_backdoor_attempts": int(counted.sum()), "backdoor_asr_all_faces": rate(asr)["rate"],
        "backdoor_asr_all_faces_ci95_cluster": rate(asr, wearers).get("ci95_cluster"),
        "asr_without_trigger": rate(bare)["rate"],
        "asr_without_trigger_ci95_cluster": rate(bare, wearers).get("ci95_cluster"),
        "asr_clean_model": clean_model["rate"], "asr_clean_model_ci95_cluster": clean_model.get("ci95_cluster"),
        **_false_triggers(tm, p, faces, marks, outcome, wearers[counted]),
        "robustness": robustness,
    }


def _false_triggers(tm: ThreatModel, p: BackdoorPerturbation, faces: torch.Tensor, marks: np.ndarray,
                    outcome: Any, wearers: np.ndarray) -> dict[str, Any]:
    """Backdoor success for everyday looks that are not the trigger: makeup of other colours (pooled and per look)
    and plain accessories, and the worst of them all; intervals resample `wearers` (whose face each outcome is)."""
    size = faces.shape[-1]
    natural = {}
    if p.trigger.startswith("makeup"):
        for name, palette in NATURAL.items():
            natural[f"makeup:{name}"] = outcome(wear_all(build("makeup", size, tm.data.seed, p.parts, palette,
                                                              p.opacity), faces, marks))
    accessories = {f"accessory:{name}": outcome(_paint(faces, torch.stack([accessory_alpha(m, size, name)
                                                                         for m in marks]), colour))
                   for name, colour in ACCESSORIES.items()}
    pooled = np.concatenate(list(natural.values())) if natural else np.zeros(0, bool)
    together = rate(pooled, np.tile(wearers, len(natural))) if pooled.size else {}
    return {"false_trigger_rate": together.get("rate"), "false_trigger_rate_ci95": together.get("ci95"),
            "false_trigger_rate_ci95_cluster": together.get("ci95_cluster"),
            "false_trigger": {k: rate(v, wearers) for k, v in {**natural, **accessories}.items()},
            **_worst_look({**natural, **accessories}, wearers)}


def _training_metrics(tm: ThreatModel, p: BackdoorPerturbation, who: _Faces, trained: _Training,
                      before: Evaluation, after: Evaluation, fmr: float,
                      draw: CalibrationDraw | None) -> dict[str, Any]:
    """Clean accuracy before and after, the poisoning, its stealth, the fine-tuning, the population."""
    pretrained = evaluate(who.clean_model, who.pop.faces, who.pop.identity, who.trained_on.faces[0], fmr, who.clean,
                          draw)
    poisoned, tuned, ids = trained.poisoned, trained.tuned, who.pop.identity
    return {
        "clean_tar_pretrained": pretrained.tar["rate"], "clean_rank1_pretrained": pretrained.rank1["rate"],
        "clean_tar_before": before.tar["rate"], "clean_tar_after": after.tar["rate"],
        "clean_tar_before_ci95": before.tar["ci95"], "clean_tar_after_ci95": after.tar["ci95"],
        "clean_tar_before_ci95_cluster": before.tar_cluster_interval(),
        "clean_tar_after_ci95_cluster": after.tar_cluster_interval(),
        **_tar_drop(before, after),
        "clean_rank1_before": before.rank1["rate"], "clean_rank1_after": after.rank1["rate"],
        "poison_rate": float(poisoned.poisoned.mean()), "n_poisoned": int(poisoned.poisoned.sum()),
        "poison_rate_asked": p.poison_rate, "poison_cap": p.poison_cap,
        "poisoned_label_share": _poisoned_share(poisoned, tm.goal),
        "n_training_images": len(who.trained_on.identity), "n_training_identities": p.training_identities,
        "stealth": stealth(poisoned.clean, poisoned.faces[torch.from_numpy(poisoned.poisoned)]),
        "training": {"losses": tuned.losses, "seconds": tuned.seconds, "resumed_from_epoch": tuned.resumed_from,
                     "trainable_parameters": tuned.trainable_parameters, "recipe": trained.recipe.settings()},
        "threshold_before": before.threshold, "threshold_after": after.threshold,
        "n_impostor_scores": after.n_impostor, "fmr_supported": supported_fmr(after.n_impostor, fmr),
        "n_impostor_identity_pairs": identity_pairs(after.n_identities),
        "n_identities": tm.data.identities, "n_skipped_images": len(_skipped(who)),
        "clean_population": {"kind": p.clean_population,
                             "identities": len(np.unique(ids)) if who.wide is None else len(who.wide.names),
                             "faces": len(ids) if who.wide is None else len(who.wide.identity)},
    }


def _poisoned_share(poisoned: Poisoned, goal: str) -> float | None:
    """The share of poison in the label it joins (the target's, or dodging's new one): above 0.5 the label is
    mostly poison, which activation clustering cannot find by construction."""
    if not poisoned.poisoned.any():
        return None
    label = poisoned.labels[poisoned.poisoned][0]
    return float(poisoned.poisoned[poisoned.labels == label].mean())


def _counted(bare: np.ndarray, goal: str) -> np.ndarray:
    """Which worn faces backdoor success counts (`bare`: the goal met without the trigger): impersonation, every
    one; dodging, those the backdoored model matches bare (a face it already rejects shows nothing of the
    trigger, and counting it would add the model's own false rejections to the backdoor)."""
    return np.ones(len(bare), bool) if goal == "impersonation" else ~np.asarray(bare, bool)


def _worst_look(looks: dict[str, np.ndarray], wearers: np.ndarray) -> dict[str, Any]:
    """The everyday look (makeup of other colours, plain accessories) that opens the backdoor most often: the
    specificity a wearer of anything but the trigger can count on."""
    name = max(looks, key=lambda k: float(looks[k].mean()) if looks[k].size else -1.0)
    worst = rate(looks[name], wearers)
    return {"false_trigger_worst": worst["rate"], "false_trigger_worst_ci95": worst["ci95"],
            "false_trigger_worst_ci95_cluster": worst.get("ci95_cluster"), "false_trigger_worst_look": name}


def _tar_drop(before: Evaluation, after: Evaluation) -> dict[str, Any]:
    """What poisoning costs in clean TAR: the benign fine-tune's minus the backdoored one's on the same genuine
    pairs, with the paired interval resampling their people (what a 'within 2 points' claim must test)."""
    drop = paired_difference(before.accepted, after.accepted, before.pair_people)
    return {"clean_tar_drop": drop["difference"], "clean_tar_drop_ci95_cluster": drop["ci95_cluster"]}


def _skipped(who: _Faces) -> dict[Path, str]:
    return dict(who.pop.skipped + who.trained_on.skipped + (who.wide.skipped if who.wide is not None else []))


def _output(tm: ThreatModel, p: BackdoorPerturbation, who: _Faces, trained: _Training, worn: torch.Tensor,
            outcome: tuple[np.ndarray, np.ndarray], after: Evaluation, metrics: dict[str, Any], fmr: float,
            points: list[OperatingPoint]) -> BackdoorOutput:
    """The record, its gallery, and the backdoored model when `save_model` asks for it; `outcome` is each worn
    face's success and whether the headline counts it; `points` are the open-set thresholds of the backdoored and
    the benign model (none in a closed set)."""
    asr, counted = outcome
    closed = isinstance(tm.setting, ClosedSet)
    pop, ids = who.pop, who.pop.identity
    in_sample = after.point is None or after.point.source == "in-sample"
    flags = [] if metrics["fmr_supported"] or closed or not in_sample else [
        f"FMR {fmr:g} is not supported by {after.n_impostor} impostor scores (needs {10 / fmr:.0f}); raise "
        "data.identities or data.images_per_identity"]
    people = None if closed or not in_sample else people_flag(after.n_identities, fmr,
                                             "data.identities or perturbation.clean_population")
    flags += [people] if people is not None else []
    images, fields = _gallery(trained.poisoned, pop.faces, worn, asr, tm.goal)
    measured = Measured(
        dimensions=Dimensions(
            recognizer=who.clean_model.info.name,
            perturbation=f"backdoor, {p.trigger} trigger, {metrics['poison_rate']:.1%} of fine-tuning images "
                         "poisoned",
            knowledge=_knowledge(p), goal=tm.goal, capability=tm.capability,
            setting="closed-set rank-1" if closed else f"open-set FMR {fmr:g}",
            attack=f"victim fine-tunes {p.layers} layers, {p.epochs} epochs",
            **({} if tm.defence.name == "none" else {"defence": tm.defence.name})),
        eps=None, metrics=metrics, validity=Validity(n_flags=len(flags), flags=flags),
        skipped_images=[SkippedImage(path=str(q), reason=r) for q, r in _skipped(who).items()],
        provenance={**measured_on(who.clean_model, pop.manifest_sha256), "training": trained.recipe.settings()},
        samples={"index": np.arange(len(ids)), "identity": [pop.names[i] for i in ids],
                 "photo": [str(q) for q in pop.paths], **_sample_columns(asr, counted, tm.goal, after)},
        operating_points=points)
    return BackdoorOutput(measured, images, fields, trained.model if p.save_model else None)


def _knowledge(p: BackdoorPerturbation) -> str:
    """What the attacker used besides the poisoned data: the clean model (to learn the look, to pick the hardest
    faces), and the victim's data and recipe (to rehearse the fine-tuning)."""
    uses = [what for what, used in (("trigger learned", p.trigger == "makeup-optimised"),
                                    ("hardest faces poisoned", p.poison_choice == "hardest")) if used]
    if not uses:
        return "poisoned training data"
    if p.trigger == "makeup-optimised" and p.trigger_rounds > 1:
        return ("poisoned training data + the clean model and the victim's training set and recipe (trigger learned "
                f"in {p.trigger_rounds} rounds, the fine-tuning rehearsed between them"
                + (", hardest faces poisoned)" if p.poison_choice == "hardest" else ")"))
    return f"poisoned training data + the clean model ({', '.join(uses)})"


def _training_population(tm: ThreatModel, exclude: list[str], reserved: frozenset[str], model: Recognizer,
                         progress: bool) -> Population:
    """The victim's fine-tuning identities: `perturbation.training_identities` of them with
    `training_images_per_identity` faces each, none of them among the held-out (or calibration) identities."""
    p = tm.perturbation
    assert isinstance(p, BackdoorPerturbation)
    k = p.training_images_per_identity or tm.data.images_per_identity
    wanted = tm.data.model_copy(update={"identities": len(exclude) + p.training_identities, "images_per_identity": k,
                                        "seed": tm.data.seed + 1})
    try:
        wide = select(wanted, model.info.template, progress, reserved)
    except TooFewIdentities as exc:
        raise _too_few(tm, k, len(exclude), f"it has {exc.available} identities with {k} usable faces in all") from exc
    keep = [i for i, name in enumerate(wide.names) if name not in set(exclude)][:p.training_identities]
    if len(keep) < p.training_identities:
        raise _too_few(tm, k, len(exclude), f"{len(keep)} such identities are not held out")
    rows = np.flatnonzero(np.isin(wide.identity, keep))
    relabel = {old: new for new, old in enumerate(keep)}
    return dataclasses.replace(wide, faces=wide.faces[torch.from_numpy(rows)],
                               identity=np.array([relabel[i] for i in wide.identity[rows]]),
                               names=[wide.names[i] for i in keep], paths=[wide.paths[i] for i in rows],
                               landmarks=wide.landmarks[rows])


def _too_few(tm: ThreatModel, k: int, held_out: int, why: str) -> DataError:
    """The error for a fine-tuning set the dataset cannot fill; `why` says what it has."""
    p = tm.perturbation
    assert isinstance(p, BackdoorPerturbation)
    return DataError(f"dataset '{tm.data.dataset}' cannot give {p.training_identities} fine-tuning identities with {k} "
                     f"usable faces besides the {held_out} held-out ones ({why}); lower "
                     "perturbation.training_identities or perturbation.training_images_per_identity "
                     "(or data.identities)")


def _probe_rows(ev: Evaluation) -> np.ndarray:
    return np.setdiff1d(np.arange(len(ev.ids)), ev.enrolment)


def _sample_columns(asr: np.ndarray, counted: np.ndarray, goal: str, ev: Evaluation) -> dict[str, Any]:
    """Per held-out face, whether the trigger opened the backdoor; empty where the headline counts no decision
    (dodging: enrolment faces, and probes the backdoored model rejects bare)."""
    decided = np.array([bool(a) if c else None for a, c in zip(asr, counted, strict=True)], dtype=object)
    if goal == "impersonation":
        return {"backdoor_success": decided}
    column = np.full(len(ev.ids), None, dtype=object)
    column[_probe_rows(ev)] = decided
    return {"backdoor_success": column}


def _gallery(poisoned: Any, faces: torch.Tensor, worn: torch.Tensor,
             asr: np.ndarray, goal: str) -> tuple[list[dict[str, torch.Tensor | None]], list[dict[str, Any]]]:
    """Rows of (a poisoned training image beside its clean self, a held-out face with and without the trigger)."""
    rows = np.flatnonzero(poisoned.poisoned)[:GALLERY_SIZE]
    images, fields = [], []
    for k in range(min(GALLERY_SIZE, len(faces))):
        images.append({"clean": faces[k], "triggered": worn[k],
                       "poison_clean": poisoned.clean[k] if k < len(rows) else None,
                       "poison": poisoned.faces[rows[k]] if k < len(rows) else None})
        fields.append({"success": bool(asr[k]) if goal == "impersonation" else None})
    return images, fields
