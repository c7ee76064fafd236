"""The morph family's runner: pair subjects, morph their photos, enrol each morph through detection and
alignment, and verify both contributors' own probes against it on every judging recognizer."""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from facesec import protocols
from facesec.attacks.reframe import photo_crop_grid
from facesec.data.align import Template
from facesec.data.faces import Detection, FaceAnalyzer, NoFace
from facesec.data.images import read_rgb
from facesec.defences.base import build, label
from facesec.defences.mad import MorphDetector
from facesec.errors import ConfigError, TooFewIdentities
from facesec.families.base import RunContext, RunOutput
from facesec.families.morph import detection, measures, pairs
from facesec.families.morph.landmark import landmark_morph
from facesec.families.morph.optimise import AttackerView, optimise
from facesec.families.morph.spec import MorphPerturbation
from facesec.gallery import GALLERY_SIZE, GalleryOutput, finite
from facesec.measures.judges import Judge, calibrated_judge
from facesec.measures.rates import cluster_interval, multiway_interval, rate_with_ci
from facesec.population import Population, select, select_with_others
from facesec.priors import dcgan as gan
from facesec.progress import bar
from facesec.provenance import measured_on
from facesec.recognizers.base import Recognizer, load
from facesec.record import Dimensions, Measured, Validity, skipped
from facesec.threat_model import Data, OpenSet, ThreatModel, Transfer


@dataclass
class Morphs:
    """The morph photos (uint8 RGB, each in contributor A's photo frame) and their faces as detection found them."""

    photos: list[np.ndarray]
    faces: list[Detection | None]
    """None: no single face found, so the morph could not be enrolled (a failed attack)."""


@dataclass
class Guard:
    """The run's morphing-attack detector, fitted, on the recognizer whose embeddings it reads."""

    label: str
    detector: MorphDetector
    watches: Recognizer
    record: dict[str, Any]


def _unique(judges: list[Judge]) -> list[Judge]:
    """The judges with distinct names (a second model of the same name becomes 'name#2'): results key by name."""
    seen: dict[str, int] = {}
    for judge in judges:
        seen[judge.name] = seen.get(judge.name, 0) + 1
        if seen[judge.name] > 1:
            judge.name = f"{judge.name}#{seen[judge.name]}"
    return judges


def _independent(judges: list[Judge]) -> tuple[list[int], list[tuple[str, str]]]:
    """The judges MAP may count as independent recognizers (the first of each weights file: dlib-cpp runs the
    very file dlib-resnet ports), and each one left out with the judge it repeats."""
    first: dict[str, str] = {}
    kept: list[int] = []
    repeats: list[tuple[str, str]] = []
    for i, judge in enumerate(judges):
        model = judge.model.info.weights_sha256 or judge.name
        if model in first:
            repeats.append((judge.name, first[model]))
        else:
            first[model] = judge.name
            kept.append(i)
    return kept, repeats


def _standardised(similarity: np.ndarray) -> np.ndarray:
    """A similarity matrix on a common scale (z-scores of its off-diagonal entries), so that surrogates
    comparing by cosine and by distance can be averaged when they pick look-alikes together."""
    off = similarity[~np.eye(len(similarity), dtype=bool)]
    return (similarity - off.mean()) / (off.std() + 1e-12) if off.size else similarity


def _templates(model: Recognizer, emb: torch.Tensor, index: list[np.ndarray]) -> torch.Tensor:
    """One template per identity from the embeddings at each index list: their mean (normalised first for cosine)."""
    if model.info.comparison == "cosine":
        emb = torch.nn.functional.normalize(emb, dim=-1)
    return torch.stack([emb[torch.from_numpy(i)].mean(0) for i in index])


def _crops(morphs: Morphs, template: Template, analyzer: FaceAnalyzer) -> tuple[torch.Tensor, np.ndarray]:
    """Each enrolled morph aligned to `template` (zeros where it was not enrolled), and which were enrolled."""
    crops = torch.zeros(len(morphs.photos), 3, template.size, template.size)
    enrolled = np.array([f is not None for f in morphs.faces])
    for i, (photo, face) in enumerate(zip(morphs.photos, morphs.faces, strict=True)):
        if face is not None:
            crop = analyzer.align(photo, face.face(template), template)
            crops[i] = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float() / 255.0
    return crops, enrolled


def _detect(photos: list[np.ndarray], analyzer: FaceAnalyzer) -> list[Detection | None]:
    found: list[Detection | None] = []
    for photo in photos:
        try:
            found.append(analyzer.detect(photo))
        except NoFace:
            found.append(None)
    return found


def _landmark_morphs(pop: Population, pair_list: list[tuple[int, int]], first: np.ndarray, alpha: float,
                     analyzer: FaceAnalyzer, progress: bool) -> Morphs:
    """Landmark morphs of each pair's first reference photos, in A's photo."""
    photos = []
    for a, b in bar(pair_list, desc="landmark morphs", unit="morph", enabled=progress):
        image_a, _ = read_rgb(pop.paths[first[a]])
        image_b, _ = read_rgb(pop.paths[first[b]])
        photos.append(landmark_morph(image_a, analyzer.detect(image_a).landmarks68,
                                     image_b, analyzer.detect(image_b).landmarks68, alpha))
    return Morphs(photos, _detect(photos, analyzer))


def _gan_morphs(pop: Population, pair_list: list[tuple[int, int]], first: np.ndarray, refs: list[np.ndarray],
               attackers: list[Judge], tm: ThreatModel, alpha: float, analyzer: FaceAnalyzer,
               device: torch.device) -> Morphs:
    """Both contributors inverted into the generator through the attackers' recognizers, their latents
    interpolated, and the generated face spliced into A's photo (a generated face without a detectable
    face is kept as it is and will not be enrolled)."""
    generator = gan.load_generator(device)
    used = sorted({i for pair in pair_list for i in pair})
    row = {subject: k for k, subject in enumerate(used)}
    targets = [gan.target(generator, a.model,
                          gan.matching(a.model, _templates(a.model, a.emb, [refs[i] for i in used]).to(device)),
                          analyzer, tm.data.seed) for a in attackers]
    z = gan.invert(generator, targets, len(used), tm.attack.steps, tm.data.seed)
    mixed = torch.stack([(1 - alpha) * z[row[a]] + alpha * z[row[b]] for a, b in pair_list])
    with torch.no_grad():
        faces = gan.photos(generator(mixed))
    out = []
    for (a, _), face in zip(pair_list, faces, strict=True):
        try:
            landmarks = analyzer.detect(face).landmarks68
        except NoFace:
            out.append(face)
            continue
        image_a, _ = read_rgb(pop.paths[first[a]])
        out.append(landmark_morph(image_a, analyzer.detect(image_a).landmarks68, face, landmarks, 1.0))
    return Morphs(out, _detect(out, analyzer))


def _attackers(tm: ThreatModel, target: Judge, pop: Population, device: torch.device, progress: bool) -> list[Judge]:
    """The recognizers the attacker has: the target (white-box) or the surrogates (transfer)."""
    if not isinstance(tm.knowledge, Transfer):
        if not target.model.info.differentiable and isinstance(tm.perturbation, MorphPerturbation) \
                and tm.perturbation.method != "landmark":
            raise ConfigError(f"field 'knowledge': {target.name} gives no gradients; {tm.perturbation.method} "
                              "morphs against it need knowledge: {kind: transfer, surrogates: [...]}")
        return [target]
    return [calibrated_judge(load(s, device), pop, [], progress) for s in tm.knowledge.surrogates]


def _optimised(morphs: Morphs, attackers: list[Judge], refs_a: list[np.ndarray], refs_b: list[np.ndarray],
               tm: ThreatModel, p: MorphPerturbation, analyzer: FaceAnalyzer, device: torch.device,
               progress: bool, guard: Guard | None = None) -> Morphs:
    """Each enrolled landmark morph optimised on the attackers' recognizers (detection-aware on the one `guard`'s
    detector watches); photos of one size share a batch."""
    photos = list(morphs.photos)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, face in enumerate(morphs.faces):
        if face is not None:
            groups.setdefault(morphs.photos[i].shape, []).append(i)
    for (h, w, _), members in bar(groups.items(), desc="optimised morphs", unit="batch", enabled=progress):
        for start in range(0, len(members), 16):
            chunk = members[start:start + 16]
            views = []
            for judge in attackers:
                t = judge.model.info.template
                found = [morphs.faces[i] for i in chunk]
                grids = [photo_crop_grid(analyzer.crop_transform(f.face(t), t), h, w, t.size)
                         for f in found if f is not None]
                ta = _templates(judge.model, judge.emb, [refs_a[i] for i in chunk]).to(device)
                tb = _templates(judge.model, judge.emb, [refs_b[i] for i in chunk]).to(device)
                caught = None if guard is None or judge.model is not guard.watches else \
                    functools.partial(_caught, guard.detector, ta, tb)
                views.append(AttackerView(judge.model, torch.stack(grids).to(device), ta, tb, caught))
            x = torch.from_numpy(np.stack([morphs.photos[i] for i in chunk])).permute(0, 3, 1, 2).float() / 255.0
            out = optimise(x.to(device), views, p.eps, tm.attack.steps, tm.attack.step_size)
            quantised = (out.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
            for i, photo in zip(chunk, quantised, strict=True):
                photos[i] = photo
    return Morphs(photos, _detect(photos, analyzer))


def _caught(detector: MorphDetector, template_a: torch.Tensor, template_b: torch.Tensor,
            emb: torch.Tensor) -> torch.Tensor:
    """How far above the detector's threshold each morph scores; a D-MAD beside each contributor's template
    (the attacker's stand-in for the live capture), the worse of the two."""
    if not detector.differential:
        return detector.score(detector.features(emb)) - detector.threshold
    return torch.maximum(detector.score(detector.features(emb, template_a)),
                         detector.score(detector.features(emb, template_b))) - detector.threshold


def _verify(judge: Judge, morphs: Morphs, probes_a: list[np.ndarray], probes_b: list[np.ndarray],
            analyzer: FaceAnalyzer) -> tuple[list[np.ndarray], list[np.ndarray], torch.Tensor]:
    """Each morph's scores against its contributors' probes (-inf when not enrolled), and its embeddings."""
    crops, enrolled = _crops(morphs, judge.model.info.template, analyzer)
    emb = judge.model.embed(crops.to(judge.emb.device))
    sa: list[np.ndarray] = []
    sb: list[np.ndarray] = []
    for i in range(len(crops)):
        for index, out in ((probes_a[i], sa), (probes_b[i], sb)):
            s = judge.model.similarity(emb[i:i + 1], judge.emb[torch.from_numpy(index)]).cpu().numpy().astype(float)
            out.append(s if enrolled[i] else np.full(len(index), -np.inf))
    return sa, sb, emb


CLUSTERED = ("mmpmr", "mmpmr_first_probe", "no_morph_mmpmr", "genuine_accept_rate_best_of_n", "fnmr",
             "genuine_accept_rate", "impostor_accept_rate")
"""The target's rates whose cluster interval the run's headline metrics repeat."""


def _at_fmr(judge: Judge, fmr: float, sa: list[np.ndarray], sb: list[np.ndarray], host_a: list[np.ndarray],
            host_b: list[np.ndarray], pairs: list[tuple[int, int]]) -> dict[str, Any]:
    """The morph metrics of one recognizer at one FMR's threshold, each rate with its cluster interval (`pairs`:
    the contributors of each morph)."""
    t = judge.thresholds[fmr]
    return {**_rates(judge, fmr, sa, sb, host_a, host_b), **_cluster_intervals(judge, t, sa, sb, host_a, host_b,
                                                                                pairs)}


def _cluster_intervals(judge: Judge, t: float, sa: list[np.ndarray], sb: list[np.ndarray],
                       host_a: list[np.ndarray], host_b: list[np.ndarray],
                       pairs: list[tuple[int, int]]) -> dict[str, Any]:
    """95% intervals resampling people: morph rates by contributor pair, contributor A and contributor B (the
    widest); the genuine rates by person; the impostor rate by either person of a pair. fmmpmr, a mean of
    products of shares, has none."""
    ways = measures.contributor_clusterings(pairs)
    out: dict[str, Any] = {}
    if pairs:
        out["mmpmr_ci95_cluster"] = list(multiway_interval(np.minimum(_best(sa), _best(sb)) > t, ways))
        out["mmpmr_first_probe_ci95_cluster"] = list(multiway_interval(np.minimum(_first(sa), _first(sb)) > t, ways))
    if pairs and host_a:
        out["no_morph_mmpmr_ci95_cluster"] = list(multiway_interval(np.minimum(_best(host_a), _best(host_b)) > t,
                                                                    ways))
        out["genuine_accept_rate_best_of_n_ci95_cluster"] = list(cluster_interval(_best(host_a) > t, ways[1]))
    if judge.genuine_people is not None and judge.genuine.size:
        lo, hi = cluster_interval(judge.genuine <= t, judge.genuine_people)
        out["fnmr_ci95_cluster"], out["genuine_accept_rate_ci95_cluster"] = [lo, hi], [1 - hi, 1 - lo]
    if judge.impostor_people is not None and judge.impostor.size:
        out["impostor_accept_rate_ci95_cluster"] = list(multiway_interval(
            judge.impostor > t, [judge.impostor_people[:, 0], judge.impostor_people[:, 1]]))
    return out


def _rates(judge: Judge, fmr: float, sa: list[np.ndarray], sb: list[np.ndarray], host_a: list[np.ndarray],
           host_b: list[np.ndarray]) -> dict[str, Any]:
    """The morph rates of one recognizer at one FMR's threshold."""
    t = judge.thresholds[fmr]
    mm = measures.mmpmr(_best(sa), _best(sb), t)
    fnmr = measures.fnmr(judge.genuine, t)
    best_genuine = float(np.mean(_best(host_a) > t)) if host_a else float("nan")
    return {
        "threshold": t, "mmpmr": mm, "mmpmr_first_probe": measures.mmpmr(_first(sa), _first(sb), t),
        "fmmpmr": measures.fmmpmr(sa, sb, t), "rmmr": measures.rmmr(mm, fnmr),
        "genuine_accept_rate_best_of_n": best_genuine, "rmmr_best_of_n": measures.rmmr(mm, 1 - best_genuine),
        "fnmr": fnmr, "genuine_accept_rate": 1 - fnmr, "impostor_accept_rate": measures.fmr(judge.impostor, t),
        "no_morph_mmpmr": measures.mmpmr(_best(host_a), _best(host_b), t),
        "n_impostor_scores": judge.point(fmr).impostor_pairs,
        "n_impostor_identity_pairs": judge.point(fmr).identity_pairs,
        "fmr_supported": protocols.supported_fmr(judge.point(fmr).impostor_pairs, fmr),
    }


@dataclass
class _Plan:
    """What a morph run attacks: the population, the judging recognizers, the subjects' pairs."""

    model: Recognizer
    pop: Population
    fmrs: list[float]
    target: Judge
    judges: list[Judge]
    attackers: list[Judge]
    refs: list[np.ndarray]
    probes: list[np.ndarray]
    pair_list: list[tuple[int, int]]
    first: np.ndarray
    analyzer: FaceAnalyzer
    guard: Guard | None = None
    """The detector in the loop (None: none)."""

    def side(self, which: int, of: list[np.ndarray]) -> list[np.ndarray]:
        """`of` for contributor a (0) or b (1) of each pair."""
        return [of[pair[which]] for pair in self.pair_list]


@dataclass
class _Verdicts:
    """How the judges scored the morphs: per judge and FMR, the target's scores and its 1:N search."""

    by_judge: dict[str, Any]
    accepted: dict[float, tuple[list[np.ndarray], list[np.ndarray]]]
    scores: tuple[list[np.ndarray], list[np.ndarray]]
    host: tuple[list[np.ndarray], list[np.ndarray]]
    both_top2: np.ndarray
    one_top1: np.ndarray


def run_threat_model(tm: ThreatModel, ctx: RunContext) -> RunOutput:
    """Morph the subjects' pairs and measure MMPMR, FMMPMR, RMMR, MAP, 1:N search and the baselines."""
    p, setting = tm.perturbation, tm.setting
    assert isinstance(p, MorphPerturbation) and isinstance(setting, OpenSet)
    t_start = time.perf_counter()
    plan = _plan(tm, p, ctx)
    guard = _guard(plan, tm, p, ctx)
    t_attack = time.perf_counter()
    made = _morphs(plan, tm, p, ctx, guard)
    morphs = made.morphs
    attack_time = time.perf_counter() - t_attack
    enrolled = np.array([f is not None for f in morphs.faces])
    verdicts = _verdicts(plan, morphs, enrolled, tm.data.images_per_identity - p.references)
    metrics, flags = _metrics(plan, verdicts, made.landmark_scores, enrolled, tm, p, setting)
    past = None
    if guard is not None:
        detected, more, past = _detected(plan, guard, made, tm, setting)
        metrics.update(detected)
        metrics.update(_deployed(metrics, past, plan.pair_list))
        flags += more
        plan.guard = guard
    metrics["attack_time_s"] = attack_time
    metrics["wall_time_s"] = time.perf_counter() - t_start
    return _output(plan, verdicts, morphs, enrolled, metrics, flags, tm, p, setting, past)


def _plan(tm: ThreatModel, p: MorphPerturbation, ctx: RunContext) -> _Plan:
    """The population (subjects and calibration identities), the judges with their thresholds, the pairs."""
    model = load(tm.target, ctx.device)
    pop = select_with_others(tm.data, p.calibration_identities, "perturbation.calibration_identities",
                             model.info.template, ctx.progress, ctx.reserved())
    assert isinstance(tm.setting, OpenSet)
    fmrs = sorted({*p.fmrs, tm.setting.fmr}, reverse=True)
    target = calibrated_judge(model, pop, fmrs, ctx.progress, ctx.calibration)
    judges = _unique([target] + [calibrated_judge(load(s, ctx.device), pop, fmrs, ctx.progress, ctx.calibration)
                                 for s in p.recognizers])
    members = [np.flatnonzero(pop.identity == i) for i in range(len(pop.names))]
    refs = [m[: p.references] for m in members]
    attackers = _attackers(tm, target, pop, ctx.device, ctx.progress)
    subject_refs = [refs[i] for i in range(tm.data.identities)]
    n_pairs = tm.data.identities if p.pairs is None else p.pairs
    pair_list = _pairing(attackers, subject_refs, n_pairs, p.pairing, tm.data.seed)
    return _Plan(model, pop, fmrs, target, judges, attackers, refs, [m[p.references:] for m in members],
                 pair_list, np.array([r[0] for r in refs]), FaceAnalyzer())


@dataclass
class _Made:
    """The morphs a run makes: those it is judged on; for optimised ones the landmark morphs they started from
    and the target's scores of them; with a detector, the optimised morphs made without it (beside the
    detection-aware ones)."""

    morphs: Morphs
    landmark: Morphs | None = None
    landmark_scores: tuple[list[np.ndarray], list[np.ndarray], Any] | None = None
    plain: Morphs | None = None

    def variants(self) -> list[tuple[str, Morphs]]:
        """Each set of morphs with the suffix its detector metrics carry (the judged ones: none)."""
        found = [("", self.morphs), ("_non_adaptive", self.plain), ("_landmark", self.landmark)]
        return [(suffix, made) for suffix, made in found if made is not None]


def _morphs(plan: _Plan, tm: ThreatModel, p: MorphPerturbation, ctx: RunContext, guard: Guard | None = None
            ) -> _Made:
    """The morphs the method makes (optimised ones detection-aware when a detector watches)."""
    if p.method == "gan":
        morphs = _gan_morphs(plan.pop, plan.pair_list, plan.first, plan.refs, plan.attackers, tm, p.alpha,
                             plan.analyzer, ctx.device)
    else:
        morphs = _landmark_morphs(plan.pop, plan.pair_list, plan.first, p.alpha, plan.analyzer, ctx.progress)
    if p.method != "optimised":
        return _Made(morphs)
    landmark = _verify(plan.target, morphs, plan.side(0, plan.probes), plan.side(1, plan.probes), plan.analyzer)
    optimise = functools.partial(_optimised, morphs, plan.attackers, plan.side(0, plan.refs),
                                 plan.side(1, plan.refs), tm, p, plan.analyzer, ctx.device, ctx.progress)
    if guard is None or not any(a.model is guard.watches for a in plan.attackers):  # nothing to adapt to
        return _Made(optimise(), morphs, landmark)
    return _Made(optimise(guard=guard), morphs, landmark, optimise())


def _pairing(attackers: list[Judge], refs: list[np.ndarray], n_pairs: int, pairing: str,
             seed: int) -> list[tuple[int, int]]:
    """Whom each of the first `n_pairs` subjects (`refs`: their reference photos) is morphed with: its closest
    look-alike as the attackers see them together, or a seeded random other."""
    if pairing == "lookalike":
        sims = [a.model.similarity_matrix(*(2 * [_templates(a.model, a.emb, refs)])).cpu().numpy()
                for a in attackers]
        return pairs.lookalike(np.mean([_standardised(x) for x in sims], axis=0), n_pairs)
    return pairs.random_pairs(len(refs), n_pairs, np.random.default_rng(seed))


def _guard(plan: _Plan, tm: ThreatModel, p: MorphPerturbation, ctx: RunContext) -> Guard | None:
    """The run's detector (None without one), fitted on morphs made the run's way among people drawn after all of
    the run's others (the first half of them; the second half sets the threshold)."""
    detector = None if tm.defence.name == "none" else build(tm.defence.name, tm.defence.params, tm.data.seed)
    if not isinstance(detector, MorphDetector):
        return None
    data = Data(dataset=tm.data.dataset, identities=detector.identities,
                images_per_identity=detector.images_per_identity, seed=detector.seed)
    try:
        train = select(data, plan.model.info.template, ctx.progress, ctx.reserved() | set(plan.pop.names))
    except TooFewIdentities as exc:
        raise TooFewIdentities(f"defence {tm.defence.name} is fitted on people apart from the run's: {exc}; lower "
                               "its identities") from exc
    judge = calibrated_judge(plan.model, train, [], ctx.progress)
    attackers = [judge if a.model is plan.model else calibrated_judge(a.model, train, [], ctx.progress)
                 for a in plan.attackers]  # the run's attackers, seeing these people
    members = [np.flatnonzero(train.identity == i) for i in range(len(train.names))]
    held = max(1, min(p.references, detector.images_per_identity - 1))  # the attacker's photos, one left to probe
    refs, half = [m[:held] for m in members], len(members) // 2
    pair_list = _pairing(attackers, refs[:half], half, p.pairing, detector.seed)
    own = dataclasses.replace(plan, pop=train, target=judge, judges=[judge], attackers=attackers, refs=refs,
                              probes=[m[held:] for m in members], pair_list=pair_list,
                              first=np.array([m[0] for m in members]))
    embs, kept = [], []
    for _, morphs in _morphs(own, tm, p, ctx).variants():  # the run's own kinds: optimised and their starts
        emb = _verify(judge, morphs, own.side(0, own.probes), own.side(1, own.probes), plan.analyzer)[2]
        enrolled = [i for i, f in enumerate(morphs.faces) if f is not None]
        embs.append(emb[enrolled])
        kept += [pair_list[i] for i in enrolled]
    record = detection.fit(detector, judge.emb, members, torch.cat(embs), kept)
    record.update({"people": list(train.names), "morphs": len(kept)})
    return Guard(label(tm.defence.name, tm.defence.params), detector, plan.model, record)


def _detected(plan: _Plan, guard: Guard, morphs: _Made, tm: ThreatModel, setting: OpenSet
              ) -> tuple[dict[str, Any], list[str], np.ndarray]:
    """The detector on the attacked people: APCER, BPCER and D-EER; the MMPMR of morphs that both contributors'
    probes match and the detector lets through; for optimised morphs the same beside for those made without it
    and for the landmark morphs they started from, and each pair's worst case over them (with its flags). Last,
    per pair, whether any of its morphs got past both (the run's headline decision)."""
    out: dict[str, Any] = {}
    passed: dict[str, np.ndarray] = {}
    for suffix, made in morphs.variants():
        sa, sb, emb = _verify(plan.target, made, plan.side(0, plan.probes), plan.side(1, plan.probes),
                              plan.analyzer)
        enrolled = np.array([f is not None for f in made.faces])
        subjects = range(tm.data.identities)
        members = [np.concatenate([plan.refs[i][:1], plan.probes[i]]) for i in subjects]
        kept = [pair for pair, ok in zip(plan.pair_list, enrolled, strict=True) if ok]
        shown = detection.presentations(guard.detector, plan.target.emb, members, list(subjects),
                                        emb[torch.from_numpy(enrolled)], kept)
        judged = detection.judged(guard.detector, shown)
        t = plan.target.thresholds[setting.fmr]
        live = [[plan.target.emb[torch.from_numpy(i)] for i in plan.side(k, plan.probes)] for k in (0, 1)]
        ok = [detection.passes(guard.detector, emb, side) for side in live]
        past = np.array([bool(np.any((x > t) & pa)) and bool(np.any((y > t) & pb)) for x, y, pa, pb
                         in zip(sa, sb, ok[0], ok[1], strict=True)]) & enrolled
        ways = measures.contributor_clusterings(plan.pair_list)
        judged["mmpmr_past_detector"] = float(past.mean()) if len(past) else 0.0
        judged["mmpmr_past_detector_ci95_cluster"] = list(multiway_interval(past, ways)) if len(past) else [0.0, 1.0]
        out.update({_suffixed(k, suffix): v for k, v in judged.items()
                    if not suffix or k.startswith(("mad_apcer", "mad_deer", "mmpmr_past"))})
        passed[suffix] = past
    either = np.logical_or.reduce(list(passed.values()))
    if len(passed) < 2:
        return out, [], either
    worst, flags = detection.worst_case(passed, plan.pair_list)
    return out | worst, flags, either


def _deployed(metrics: dict[str, Any], past: np.ndarray, pairs: list[tuple[int, int]]) -> dict[str, Any]:
    """With a detector in the loop, MMPMR counts a pair only if one of its morphs gets past the detector and both
    contributors (the attacker submits whichever works): what a gate on it and the suite's comparisons read. The
    recognizer's MMPMR alone is kept as `mmpmr_ignoring_detector`."""
    return {"mmpmr_ignoring_detector": metrics["mmpmr"],
            "mmpmr_ignoring_detector_ci95_cluster": metrics.get("mmpmr_ci95_cluster"),
            "mmpmr": float(past.mean()) if len(past) else 0.0,
            "mmpmr_ci95": rate_with_ci(int(past.sum()), len(past))["ci95"],
            "mmpmr_ci95_cluster": list(multiway_interval(past, measures.contributor_clusterings(pairs)))
            if len(past) else [0.0, 1.0]}


def _suffixed(key: str, suffix: str) -> str:
    """`key` for another variant of its rate: the suffix before an interval's `_ci95...` ending."""
    stem, mark, tail = key.partition("_ci95")
    return f"{stem}{suffix}{mark}{tail}"


def _verdicts(plan: _Plan, morphs: Morphs, enrolled: np.ndarray, attempts: int) -> _Verdicts:
    """Every judge's scores of the morphs against both contributors' probes, at every FMR; the target's 1:N
    search over one enrolled photo per identity."""
    pa, pb = plan.side(0, plan.probes), plan.side(1, plan.probes)
    gallery_index = np.array([pr[0] for pr in plan.probes])
    by_judge: dict[str, Any] = {}
    accepted: dict[float, tuple[list[np.ndarray], list[np.ndarray]]] = {f: ([], []) for f in plan.fmrs}
    found: dict[str, Any] = {}
    for judge in plan.judges:
        sa, sb, emb = _verify(judge, morphs, pa, pb, plan.analyzer)
        host_a, host_b = (_host_scores(judge, plan.first, plan.pair_list, q) for q in (pa, pb))
        by_judge[judge.name] = {f"{f:g}": _at_fmr(judge, f, sa, sb, host_a, host_b, plan.pair_list)
                                for f in plan.fmrs}
        for f in plan.fmrs:
            accepted[f][0].append(measures.accepted_counts(sa, judge.thresholds[f], attempts))
            accepted[f][1].append(measures.accepted_counts(sb, judge.thresholds[f], attempts))
        if judge is plan.target:
            search = judge.model.similarity_matrix(emb, judge.emb[torch.from_numpy(gallery_index)]).cpu().numpy()
            search[~enrolled] = -np.inf
            found = {"scores": (sa, sb), "host": (host_a, host_b), "search": measures.dedup_search(
                search, np.array([a for a, _ in plan.pair_list]), np.array([b for _, b in plan.pair_list]))}
    return _Verdicts(by_judge, accepted, found["scores"], found["host"], *found["search"])


def _metrics(plan: _Plan, v: _Verdicts, landmark: Any, enrolled: np.ndarray, tm: ThreatModel,
             p: MorphPerturbation, setting: OpenSet) -> tuple[dict[str, Any], list[str]]:
    """The run's metrics at its FMR (and each judge's at every FMR), and its validity flags."""
    sa, sb = v.scores
    n, attempts = len(plan.pair_list), tm.data.images_per_identity - p.references
    head = v.by_judge[plan.target.name][f"{setting.fmr:g}"]
    mated = np.minimum(_best(sa), _best(sb)) > head["threshold"]
    kept, repeats = _independent(plan.judges)
    map_doc = {f"{f:g}": {"recognizers": [plan.judges[k].name for k in kept], "attempts": attempts,
                          "matrix": measures.map_matrix(np.stack([v.accepted[f][0][k] for k in kept], 1),
                                                        np.stack([v.accepted[f][1][k] for k in kept], 1),
                                                        attempts).tolist()} for f in plan.fmrs}
    flags = [f"FMR {f:g} is not supported by {v.by_judge[j.name][f'{f:g}']['n_impostor_scores']} impostor scores "
             f"of {j.name} (needs {10 / f:.0f}); raise calibration_identities"
             for j in plan.judges for f in plan.fmrs
             if j.in_sample() and not v.by_judge[j.name][f"{f:g}"]["fmr_supported"]]
    flags += [f"MAP counts {name} once with {twin}: the same weights (the same model in another runtime)"
              for name, twin in repeats]
    flags += [flag for f in plan.fmrs if plan.target.in_sample() and (flag := protocols.people_flag(
        len(plan.target.pop.names), f, "data.identities or calibration_identities")) is not None]
    metrics: dict[str, Any] = {
        "mmpmr": head["mmpmr"], "mmpmr_ci95": rate_with_ci(int(mated.sum()), n)["ci95"],
        **{f"{k}_ci95_cluster": head[f"{k}_ci95_cluster"] for k in CLUSTERED if f"{k}_ci95_cluster" in head},
        "mmpmr_first_probe": head["mmpmr_first_probe"], "fmmpmr": head["fmmpmr"], "rmmr": head["rmmr"],
        "rmmr_best_of_n": head["rmmr_best_of_n"],
        "genuine_accept_rate_best_of_n": head["genuine_accept_rate_best_of_n"],
        "map": map_doc,
        "no_morph_mmpmr": head["no_morph_mmpmr"],
        "genuine_accept_rate": head["genuine_accept_rate"], "impostor_accept_rate": head["impostor_accept_rate"],
        "fnmr": head["fnmr"], "threshold": head["threshold"],
        "dedup_both_top2": float(v.both_top2.mean()) if n else 0.0,
        "dedup_contributor_top1": float(v.one_top1.mean()) if n else 0.0,
        "n_morphs": n, "morphs_not_enrolled": int((~enrolled).sum()),
        "pair_similarity_mean": _pair_similarity(plan.attackers[0], [plan.refs[i] for i in range(tm.data.identities)],
                                                 plan.pair_list),
        "at_fmr": v.by_judge[plan.target.name], "by_recognizer": v.by_judge,
        "n_identities": len(plan.pop.names), "n_subjects": tm.data.identities,
        "n_skipped_images": len(plan.pop.skipped),
    }
    if landmark is not None:
        base = _rates(plan.target, setting.fmr, landmark[0], landmark[1], *v.host)
        metrics["landmark_mmpmr"], metrics["landmark_fmmpmr"] = base["mmpmr"], base["fmmpmr"]
        if head["fmmpmr"] <= base["fmmpmr"]:
            flags.append(f"optimisation no better than the landmark morph it started from (FMMPMR "
                         f"{head['fmmpmr']:.2f} <= {base['fmmpmr']:.2f})")
    return metrics, flags


def _output(plan: _Plan, v: _Verdicts, morphs: Morphs, enrolled: np.ndarray, metrics: dict[str, Any],
            flags: list[str], tm: ThreatModel, p: MorphPerturbation, setting: OpenSet,
            past: np.ndarray | None = None) -> RunOutput:
    """The record (dimensions, metrics, validity, the morph scores, per-morph samples) and its gallery. With a
    detector, `mated_match` is whether the pair got past it and both contributors (`past`), as MMPMR counts;
    the recognizer's verdict alone is `matched_ignoring_detector`."""
    sa, sb = v.scores
    pop, first, pair_list = plan.pop, plan.first, plan.pair_list
    mated = np.minimum(_best(sa), _best(sb)) > metrics["threshold"]
    samples = {
        "index": np.arange(len(pair_list)), "contributor_a": [pop.names[a] for a, _ in pair_list],
        "contributor_b": [pop.names[b] for _, b in pair_list],
        "photo_a": [str(pop.paths[first[a]]) for a, _ in pair_list],
        "photo_b": [str(pop.paths[first[b]]) for _, b in pair_list], "enrolled": enrolled,
        "score_a": _best(sa), "score_b": _best(sb), "score_a_first": _first(sa), "score_b_first": _first(sb),
        "mated_match": mated if past is None else past,
        **({} if past is None else {"matched_ignoring_detector": mated}),
        "probes_a_accepted": v.accepted[setting.fmr][0][0], "probes_b_accepted": v.accepted[setting.fmr][1][0],
        "dedup_both_top2": v.both_top2,
    }
    gallery_ids = [(a, b) for a, b in pair_list[:GALLERY_SIZE]]
    crops, _ = _crops(Morphs(morphs.photos[:GALLERY_SIZE], morphs.faces[:GALLERY_SIZE]),
                      plan.model.info.template, plan.analyzer)
    images = [{"a": plan.target.pop.faces[first[a]], "morph": crops[i] if enrolled[i] else None,
               "b": plan.target.pop.faces[first[b]]} for i, (a, b) in enumerate(gallery_ids)]
    fields = [{"contributor_a": pop.names[a], "contributor_b": pop.names[b], "score_a": finite(_best(sa)[i]),
               "score_b": finite(_best(sb)[i]), "accepted": bool(mated[i]), "enrolled": bool(enrolled[i])}
              for i, (a, b) in enumerate(gallery_ids)]
    measured = Measured(
        dimensions=_dimensions(plan, tm, p, setting), eps=None, metrics=metrics,
        validity=Validity(n_flags=len(flags), flags=flags, morphs_not_enrolled=int((~enrolled).sum())),
        sections={"morph": {"scores": [[finite(x), finite(y)] for x, y in zip(_best(sa), _best(sb), strict=True)],
                            "thresholds": {f"{f:g}": plan.target.thresholds[f] for f in plan.fmrs},
                            "alpha": p.alpha, "pairing": p.pairing, "method": p.method},
                  **({} if plan.guard is None else {"detector_training": plan.guard.record})},
        skipped_images=skipped(pop.skipped), provenance=measured_on(plan.model, pop.manifest_sha256),
        samples=samples, operating_points=[j.point(f) for j in plan.judges for f in plan.fmrs])
    return GalleryOutput(measured, images, fields)


def _dimensions(plan: _Plan, tm: ThreatModel, p: MorphPerturbation, setting: OpenSet) -> Dimensions:
    return Dimensions.model_validate({
        "recognizer": plan.model.info.name,
        "perturbation": f"morph {p.method} alpha {p.alpha:g}" + (f" eps {p.eps * 255:.3g}/255"
                                                                 if p.method == "optimised" else ""),
        "knowledge": "white-box" if not isinstance(tm.knowledge, Transfer)
        else "transfer from " + " + ".join(a.name for a in plan.attackers),
        "goal": f"both contributors accepted ({p.pairing} pairs)", "capability": tm.capability,
        "setting": f"open-set FMR {setting.fmr:g}",
        "attack": f"{p.method} morph" + {"optimised": f" {tm.attack.steps} steps",
                                         "gan": f", {tm.attack.steps} inversion steps"}.get(p.method, ""),
        **({} if plan.guard is None else {"defence": plan.guard.label}),
    })


def _best(scores: list[np.ndarray]) -> np.ndarray:
    """Each morph's score for its contributor's best probe: the contributor's one probe in MMPMR."""
    return np.array([s.max() for s in scores], dtype=float)


def _first(scores: list[np.ndarray]) -> np.ndarray:
    """Each morph's score for its contributor's first probe (MMPMR with a single presentation)."""
    return np.array([s[0] for s in scores], dtype=float)


def _host_scores(judge: Judge, first: np.ndarray, pair_list: list[tuple[int, int]],
                 probes: list[np.ndarray]) -> list[np.ndarray]:
    """The no-morph baseline: contributor A's own (unmorphed) photo enrolled, scored against `probes`."""
    return [judge.model.similarity(judge.emb[first[a]][None], judge.emb[torch.from_numpy(i)]).cpu().numpy()
            .astype(float) for (a, _), i in zip(pair_list, probes, strict=True)]


def _pair_similarity(attacker: Judge, refs: list[np.ndarray], pair_list: list[tuple[int, int]]) -> float:
    """Mean similarity of the paired subjects as the attacker saw them (look-alikes score high)."""
    if not pair_list:
        return 0.0
    t = _templates(attacker.model, attacker.emb, refs)
    a, b = (torch.tensor([q[i] for q in pair_list]) for i in (0, 1))
    return float(attacker.model.similarity(t[a], t[b]).mean())

