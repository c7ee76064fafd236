"""Backdoor defences, each reported as what it sees and what it costs, run on the backdoored model and, where a
verdict is about a model, on the clean one too (a scan must not flag a clean model).

- activation clustering (Chen et al., 2018) and spectral signatures (Tran et al., 2018): ART's implementations on
  the embedding space, per training label, scored against the known poisoned set (precision, recall);
- neural-cleanse (Wang et al., 2019) adapted to embedding models: per scanned identity, the smallest mask and
  pattern that bring other people's faces to that identity; a backdoor shows as an identity whose trigger is
  abnormally small (anomaly index > 2 by the median absolute deviation);
- STRIP (Gao et al., 2019) for open-set models: a face is blended with clean faces; if the blends all embed alike,
  something in the face dominates them (a trigger). Thresholds set at 1% and 5% of the defender's own clean faces
  flagged, measured on held-out faces apart from them, with the detection AUROC;
- class sizes: a training label far larger than the others (robust z-score over the labels' sizes) is where
  poison that relabels many faces to one identity lands;
- fine-tuning and fine-pruning (Liu et al., 2018) on clean data: the backdoor's success and clean TAR after."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from facesec.calibration import CalibrationDraw
from facesec.families.backdoor.measure import evaluate, rate, success, whose
from facesec.families.backdoor.poison import Poisoned
from facesec.families.backdoor.spec import CLUSTERED_FACES
from facesec.families.backdoor.triggers import Trigger, wear_all
from facesec.finetune import Recipe, finetune
from facesec.measures.rates import paired_difference
from facesec.progress import bar
from facesec.recognizers.base import Recognizer

ANOMALY_INDEX = 2.0
"""Neural Cleanse's cut-off: an identity whose trigger norm is this many MADs below the median is flagged."""

SCAN_IDENTITIES = 256
SCAN_CHUNK = 32
SCAN_STEPS = 150
SCAN_IMAGES = 2
"""Neural Cleanse: identities scanned (every training identity up to this many, else a seeded sample: the defender
does not know the target), identities optimised together, Adam steps, other people's faces per identity and step."""

STRIP_BLENDS = 32
STRIP_FPRS = (0.01, 0.05)
STRIP_CALIBRATION = 200
"""STRIP: clean faces blended with each input; shares of the defender's clean inputs flagged that set the
thresholds; the most of those clean inputs scored (a seeded sample)."""

CLASS_SIZE_Z = 3.5
"""Class sizes: a label whose size lies this many robust standard deviations (MAD x 1.4826) above the median is
flagged (Iglewicz and Hoaglin's cut-off for outliers)."""

RELATIVE_SIZE = 0.35
"""Activation clustering: a cluster with less than this share of its label is poison (ART's default)."""

PRUNE_SHARE = 0.2
"""Fine-pruning: share of the embedding layer's inputs pruned (the least active on clean faces)."""


@dataclass
class Setting:
    """Everything a defence may use: the models, the poisoned training set, clean faces, the trigger (only to
    score the defence, never by the defence itself)."""

    clean: Recognizer
    backdoored: Recognizer
    poisoned: Poisoned
    recipe: Recipe
    """How the mitigations retrain (for half its epochs)."""
    trigger: Trigger
    held_faces: torch.Tensor
    held_marks: np.ndarray
    held_ids: np.ndarray
    target_face: torch.Tensor
    fmr: float
    goal: str
    closed: bool
    seed: int
    progress: bool
    retrain_faces: torch.Tensor
    """The defender's clean data: the training faces without any trigger, with their true labels."""
    retrain_labels: np.ndarray
    backdoored_success: np.ndarray
    """Per worn held-out face, whether it met the goal on the backdoored model (what a mitigation is set against)."""
    clean_population: tuple[torch.Tensor, np.ndarray] | None = None
    calibration: CalibrationDraw | None = None
    """Where clean accuracy and thresholds are measured when wider than the held-out faces (faces, identities)."""


def _detection(flagged: np.ndarray, truth: np.ndarray, scores: np.ndarray | None = None) -> dict[str, Any]:
    """Precision, recall and false positive rate of the flags against the known poison, and with `scores` (higher:
    more suspicious) the detection AUROC over every operating point, not only the one the defence picks."""
    tp = int((flagged & truth).sum())
    out = {"flagged": int(flagged.sum()), "poisoned": int(truth.sum()),
           "precision": tp / int(flagged.sum()) if flagged.any() else None,
           "recall": tp / int(truth.sum()) if truth.any() else None,
           "false_positive_rate": float((flagged & ~truth).sum() / max(1, (~truth).sum()))}
    if scores is not None:
        out["auroc"] = auroc(scores[truth], scores[~truth])
    return out


def auroc(positive: np.ndarray, negative: np.ndarray) -> float | None:
    """Area under the ROC curve: the chance a positive scores above a negative, ties counting half (Mann-Whitney);
    None without both."""
    if not len(positive) or not len(negative):
        return None
    from scipy.stats import mannwhitneyu

    u = mannwhitneyu(np.asarray(positive, float), np.asarray(negative, float), alternative="two-sided").statistic
    return float(u / (len(positive) * len(negative)))


def _by_label(s: Setting) -> tuple[np.ndarray, list[np.ndarray]]:
    emb = s.backdoored.embed(s.poisoned.faces).cpu().numpy()
    return emb, [np.flatnonzero(s.poisoned.labels == c) for c in np.unique(s.poisoned.labels)]


def activation_clustering(s: Setting) -> dict[str, Any]:
    """Per label, the embeddings reduced (PCA) and split in two by k-means (ART's `cluster_activations`); a cluster
    holding less than RELATIVE_SIZE of its label is flagged (the relative-size analysis; ART's own analyzer fails
    under NumPy 2 when a label has no such cluster)."""
    from art.defences.detector.poison.activation_defence import cluster_activations

    emb, groups = _by_label(s)
    groups = [g for g in groups if len(g) >= CLUSTERED_FACES]
    dims = min(10, min(len(g) for g in groups) - 1)
    with _numpy_seeded(s.seed):  # ART's k-means takes no random_state: it draws from NumPy's global generator
        clusters, _ = cluster_activations([emb[g] for g in groups], nb_clusters=2, nb_dims=dims, reduce="PCA")
    flagged = np.zeros(len(emb), bool)
    smallness = np.zeros(len(emb))
    for g, assigned in zip(groups, clusters, strict=True):
        sizes = np.bincount(assigned, minlength=2) / len(assigned)
        flagged[g] = sizes[assigned] < RELATIVE_SIZE
        smallness[g] = 1 - sizes[assigned]
    return {**_detection(flagged, s.poisoned.poisoned, smallness), "relative_size": RELATIVE_SIZE}


@contextlib.contextmanager
def _numpy_seeded(seed: int) -> Iterator[None]:
    """NumPy's global generator seeded for a library call that offers no seed, and put back as it was after."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def spectral_signatures(s: Setting) -> dict[str, Any]:
    """Per label, ART's spectral-signature score of each embedding; the top 1.5 x the defender's assumed poison
    share (10%) of each label flagged, as ART does."""
    from art.defences.detector.poison import SpectralSignatureDefense

    emb, groups = _by_label(s)
    flagged = np.zeros(len(emb), bool)
    rank = np.zeros(len(emb))
    for g in groups:
        if len(g) < 2:
            continue
        scores = SpectralSignatureDefense.spectral_signature_scores(emb[g]).ravel()
        cut = np.quantile(scores, 1 - 1.5 * 0.1)
        flagged[g[scores > cut]] = True
        rank[g] = np.argsort(np.argsort(scores)) / (len(g) - 1)  # within its label, as the defence compares
    return {**_detection(flagged, s.poisoned.poisoned, rank), "flagged_share_per_label": 1.5 * 0.1}


def class_sizes(s: Setting) -> dict[str, Any]:
    """Labels far larger than the others (robust z-score of their sizes above CLASS_SIZE_Z): every face of a flagged
    label is flagged, scored against the known poison; which labels, and whether the target (label 0) is one."""
    labels, counts = np.unique(s.poisoned.labels, return_counts=True)
    median = float(np.median(counts))
    mad = 1.4826 * float(np.median(np.abs(counts - median)))
    z = (counts - median) / max(mad, 1.0)
    big = labels[z > CLASS_SIZE_Z]
    flagged = np.isin(s.poisoned.labels, big)
    return {**_detection(flagged, s.poisoned.poisoned, z[np.searchsorted(labels, s.poisoned.labels)]),
            "flagged_labels": [int(b) for b in big], "target_flagged": bool(0 in big),
            "largest_label_size": int(counts.max()), "median_label_size": median, "z_cut": CLASS_SIZE_Z}


def _cleanse(model: Recognizer, faces: torch.Tensor, labels: np.ndarray, scanned: np.ndarray, seed: int,
             progress: bool) -> np.ndarray:
    """Per scanned identity, the L1 norm (share of the crop) of the smallest mask found that, with its pattern,
    brings other identities' faces above the threshold of that identity's mean embedding; identities optimised
    in chunks, each with a weight on its mask that grows while it succeeds."""
    device = next(model.parameters()).device
    with torch.no_grad():
        emb = torch.cat([model.embed(faces[i:i + 64].to(device)) for i in range(0, len(faces), 64)])
    centres = torch.stack([emb[torch.from_numpy(labels == c)].mean(0) for c in scanned])
    chunks = [np.arange(i, min(i + SCAN_CHUNK, len(scanned))) for i in range(0, len(scanned), SCAN_CHUNK)]
    ticks = iter(bar(range(SCAN_STEPS * len(chunks)), desc="neural cleanse", unit="step", enabled=progress))
    best = [_cleanse_chunk(model, faces, labels, scanned[c], centres[c], seed + i, ticks)
            for i, c in enumerate(chunks)]
    for _ in ticks:  # closes the progress bar
        pass
    return np.concatenate(best)


def _cleanse_chunk(model: Recognizer, faces: torch.Tensor, labels: np.ndarray, scanned: np.ndarray,
                   centres: torch.Tensor, seed: int, ticks: Iterator[int]) -> np.ndarray:
    """One chunk of identities' masks and patterns, optimised together."""
    device = centres.device
    size, k = faces.shape[-1], len(scanned)
    gen = torch.Generator().manual_seed(seed)
    mask_logit = torch.full((k, 1, size, size), -2.0, device=device).requires_grad_(True)
    pattern_logit = (torch.randn(k, 3, size, size, generator=gen) * 0.1).to(device).requires_grad_(True)
    optimiser = torch.optim.Adam([mask_logit, pattern_logit], lr=0.1)
    weight = torch.full((k,), 1e-3, device=device)
    best = torch.full((k,), float("inf"))
    rng = np.random.default_rng(seed)
    threshold = float(model.info.native_threshold) if model.info.native_threshold is not None else 0.0
    others = [np.flatnonzero(labels != c) for c in scanned]
    for _ in range(SCAN_STEPS):
        next(ticks, None)
        index = np.concatenate([rng.choice(o, SCAN_IMAGES, replace=len(o) < SCAN_IMAGES) for o in others])
        mask = torch.sigmoid(mask_logit).repeat_interleave(SCAN_IMAGES, 0)
        pattern = torch.sigmoid(pattern_logit).repeat_interleave(SCAN_IMAGES, 0)
        x = faces[index].to(device) * (1 - mask) + pattern * mask
        sims = model.similarity(model(x), centres.repeat_interleave(SCAN_IMAGES, 0)).view(k, SCAN_IMAGES)
        norms = torch.sigmoid(mask_logit).mean(dim=(1, 2, 3))
        loss = (-sims.mean(1) + weight * norms * size * size / 100).sum()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            done = (sims > threshold).float().mean(1) >= 0.75
            best = torch.where(done.cpu(), torch.minimum(best, norms.cpu()), best)
            weight = torch.where(done, weight * 1.5, weight / 1.5)
    return best.numpy()


def _anomaly(norms: np.ndarray) -> np.ndarray:
    """Neural Cleanse's anomaly index of each norm below the median (MAD with the normal consistency constant);
    an identity never brought over (inf) counts as the largest norm."""
    finite = np.where(np.isfinite(norms), norms, np.nanmax(np.where(np.isfinite(norms), norms, np.nan))
                      if np.isfinite(norms).any() else 1.0)
    median = np.median(finite)
    mad = 1.4826 * np.median(np.abs(finite - median))
    return (median - finite) / max(mad, 1e-12)


def neural_cleanse(s: Setting) -> dict[str, Any]:
    """Scans the training identities on the backdoored and on the clean model."""
    labels = s.retrain_labels
    present = np.unique(labels)
    rng = np.random.default_rng(s.seed)
    scanned = present if len(present) <= SCAN_IDENTITIES else np.sort(rng.choice(present, SCAN_IDENTITIES,
                                                                                    replace=False))
    out: dict[str, Any] = {"scanned_identities": len(scanned), "target_scanned": bool(0 in scanned)}
    for name, model in (("backdoored", s.backdoored), ("clean", s.clean)):
        out[name] = scan(model, s.retrain_faces, labels, scanned, s.seed, s.progress)
    return out


def scan(model: Recognizer, faces: torch.Tensor, labels: np.ndarray, scanned: np.ndarray, seed: int,
         progress: bool) -> dict[str, Any]:
    """Neural Cleanse's verdict on one model: flagged when a scanned identity's trigger is abnormally small, with
    which identity (0 is the impersonation target) and every identity's mask norm."""
    norms = _cleanse(model, faces, labels, scanned, seed, progress)
    index = _anomaly(norms)
    top = int(np.argmax(index))
    return {"flagged": bool(index[top] > ANOMALY_INDEX), "max_anomaly_index": float(index[top]),
            "flagged_identity_is_target": bool(index[top] > ANOMALY_INDEX and scanned[top] == 0),
            "target_anomaly_index": float(index[scanned == 0][0]) if (scanned == 0).any() else None,
            "mask_norms": [None if not np.isfinite(v) else float(v) for v in norms]}


def _strip_scores(model: Recognizer, x: torch.Tensor, pool: torch.Tensor, seed: int) -> np.ndarray:
    """Per input, the mean similarity of its blends' embeddings to their mean (high: the blends agree)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(len(x)):
        pick = torch.randint(len(pool), (STRIP_BLENDS,), generator=gen)
        blends = 0.5 * x[i:i + 1] + 0.5 * pool[pick]
        emb = model.embed(blends)
        out.append(float(model.similarity(emb, emb.mean(0, keepdim=True).expand(len(emb), -1)).mean()))
    return np.array(out)


def strip(s: Setting) -> dict[str, Any]:
    """STRIP on the backdoored model: thresholds at each of STRIP_FPRS set on the defender's own clean faces (a
    seeded sample, blended with the rest of them), then held-out faces with and without the trigger scored apart
    from those: the false alarms and detections at each threshold, and the AUROC."""
    rng = np.random.default_rng(s.seed)
    order = rng.permutation(len(s.retrain_faces))
    own, pool = order[:min(STRIP_CALIBRATION, len(order) // 2)], order[min(STRIP_CALIBRATION, len(order) // 2):]
    blend_with = s.retrain_faces[torch.from_numpy(pool)]
    calibration = _strip_scores(s.backdoored, s.retrain_faces[torch.from_numpy(own)], blend_with, s.seed + 2)
    clean = _strip_scores(s.backdoored, s.held_faces, blend_with, s.seed)
    worn = wear_all(s.trigger, s.held_faces, s.held_marks)
    triggered = _strip_scores(s.backdoored, worn, blend_with, s.seed + 1)
    points = {f"{fpr:g}": _strip_point(float(np.quantile(calibration, 1 - fpr)), clean, triggered, s.held_ids)
              for fpr in STRIP_FPRS}
    return {"at_fpr": points, "auroc": auroc(triggered, clean), "blends_per_input": STRIP_BLENDS,
            "calibration_faces": len(own), "detection_rate": points["0.05"]["detection_rate"],
            "false_positive_rate": points["0.05"]["false_positive_rate"]["rate"]}


def _strip_point(cut: float, clean: np.ndarray, triggered: np.ndarray, people: np.ndarray) -> dict[str, Any]:
    """STRIP at one threshold: held-out clean faces and triggered faces flagged (intervals resampling `people`,
    whose face each is)."""
    return {"threshold": cut, "false_positive_rate": rate(clean > cut, people),
            "detection_rate": rate(triggered > cut, people)}


def _after(s: Setting, model: Recognizer) -> dict[str, Any]:
    """The backdoor's success and clean TAR of a mitigated model, and how much the mitigation lowered success:
    the backdoored model's minus the mitigated one's on the same worn faces (all of them), paired, resampling
    the wearers."""
    ev = evaluate(model, s.held_faces, s.held_ids, s.target_face, s.fmr, s.clean_population, s.calibration)
    hits = success(ev, wear_all(s.trigger, s.held_faces, s.held_marks), s.goal, s.closed)
    people = whose(ev, s.goal)
    return {"backdoor_asr": rate(hits, people),
            "backdoor_asr_drop": paired_difference(s.backdoored_success, hits, people),
            "clean_tar": {**ev.tar, "ci95_cluster": ev.tar_cluster_interval()}}


def mitigation_recipe(victim: Recipe, how: Literal["victim", "plain"]) -> Recipe:
    """How the mitigations retrain: the victim's recipe, or (`plain`) without its pulls towards the model it
    starts from, which here would hold on to the backdoored model's behaviour."""
    return victim if how == "victim" else dataclasses.replace(victim, anchor=0.0, distill=0.0)


def _fine_tune(s: Setting, model: Recognizer) -> tuple[Recognizer, dict[str, Any]]:
    """`model` retrained on the clean data for half the recipe's epochs; what was done, for the record."""
    t0 = time.perf_counter()
    recipe = dataclasses.replace(s.recipe, epochs=max(2, s.recipe.epochs // 2), seed=s.seed + 7)
    tuned = finetune(model, s.retrain_faces, s.retrain_labels, recipe, s.progress)
    return tuned.model, {"seconds": time.perf_counter() - t0, "epochs": recipe.epochs,
                         "anchor": recipe.anchor, "distill": recipe.distill}


def _last_linear(model: Recognizer) -> nn.Linear:
    linears = [m for m in model.net.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{model.info.name} has no linear embedding layer to prune")
    return linears[-1]


def fine_pruning(s: Setting) -> dict[str, Any]:
    """The embedding layer's least active inputs on clean faces pruned (torch's pruning keeps them at zero),
    then fine-tuning on clean data."""
    import copy

    from torch.nn.utils import prune

    pruned = copy.deepcopy(s.backdoored)
    layer = _last_linear(pruned)
    seen: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda _m, inp, _o: seen.append(inp[0].detach().abs().mean(0).cpu()))
    pruned.embed(s.retrain_faces)
    hook.remove()
    activity = torch.stack(seen).mean(0)
    keep = torch.ones_like(layer.weight)
    cut = torch.argsort(activity)[:int(PRUNE_SHARE * len(activity))]
    keep[:, cut.to(keep.device)] = 0
    prune.custom_from_mask(layer, "weight", keep)
    model, done = _fine_tune(s, pruned)
    return {**_after(s, model), "pruned_inputs": len(cut), **done}


def fine_tuning(s: Setting) -> dict[str, Any]:
    model, done = _fine_tune(s, s.backdoored)
    return {**_after(s, model), **done}


DEFENCES: dict[str, Callable[[Setting], dict[str, Any]]] = {
    "activation-clustering": activation_clustering, "spectral-signatures": spectral_signatures,
    "class-sizes": class_sizes,
    "neural-cleanse": neural_cleanse, "strip": strip, "fine-tuning": fine_tuning, "fine-pruning": fine_pruning,
}


def run_all(names: Sequence[str], s: Setting) -> dict[str, Any]:
    out = {}
    for name in names:
        t0 = time.perf_counter()
        out[name] = {**DEFENCES[name](s), "time_s": time.perf_counter() - t0}
    return out
