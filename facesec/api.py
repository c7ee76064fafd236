"""The Python entry points the CLI and notebooks use."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from facesec import metrics, protocols
from facesec.data.dataset import load_dataset
from facesec.data.images import IMAGE_SUFFIXES
from facesec.data.pipeline import AlignedFaces, align_faces
from facesec.device import pick_device
from facesec.errors import DataError
from facesec.recognizers import Recognizer, load


@torch.no_grad()
def embed_crops(recognizer: Recognizer, crops: torch.Tensor, batch_size: int = 64,
                progress: bool = False) -> torch.Tensor:
    """Embeddings (float32, on CPU) of aligned [0, 1] NCHW crops, computed in batches."""
    device = next(recognizer.parameters()).device
    out = []
    for i in tqdm(range(0, len(crops), batch_size), desc="embed", unit="batch", disable=not progress or None):
        out.append(recognizer(crops[i:i + batch_size].to(device)).float().cpu())
    if not out:
        return torch.zeros(0, recognizer.info.embedding_size)
    return torch.cat(out)


def _summary_of_skips(faces: AlignedFaces) -> dict[str, Any]:
    reasons: dict[str, int] = {}
    for _, reason in faces.skipped:
        reasons[reason] = reasons.get(reason, 0) + 1
    return {"n_skipped": len(faces.skipped), "skipped_reasons": reasons, "n_converted": len(faces.notes)}


def evaluate(recognizer: str | Recognizer, data: str | Path, max_genuine_per_identity: int = 20,
             fmrs: Sequence[float] = (1e-2, 1e-3), seed: int = 0, device: str | None = None,
             progress: bool = True) -> dict[str, Any]:
    """Clean verification and closed-set identification accuracy of a recognizer on a dataset."""
    model = load(recognizer, pick_device(device)) if isinstance(recognizer, str) else recognizer
    dataset = load_dataset(data)
    label_of = {str(p): ident for p, ident in dataset.items}
    faces = align_faces([p for p, _ in dataset.items], model.info.template, progress=progress)
    if len(faces.paths) < 2:
        raise DataError(f"dataset {dataset.root}: fewer than two usable faces")
    labels = np.array([label_of[str(p)] for p in faces.paths])
    emb = embed_crops(model, faces.tensor(), progress=progress)

    gen, imp = protocols.verification_pairs(labels.tolist(), max_genuine_per_identity, seed)
    g_scores = model.similarity(emb[gen[:, 0]], emb[gen[:, 1]]).numpy()
    i_scores = model.similarity(emb[imp[:, 0]], emb[imp[:, 1]]).numpy()
    best, best_t = metrics.best_accuracy(g_scores, i_scores)
    tars, thresholds = {}, {}
    for fmr in fmrs:
        tars[f"{fmr:g}"], thresholds[f"{fmr:g}"] = metrics.tar_at_fmr(g_scores, i_scores, fmr)

    gallery, probes = protocols.first_image_gallery(labels.tolist())
    sim = model.similarity_matrix(emb[probes], emb[gallery]).numpy()
    native = model.info.native_threshold
    return {
        "recognizer": model.info.name,
        "dataset": str(dataset.root),
        "n_images": len(dataset.items),
        "n_faces": len(faces.paths),
        "n_identities": len(set(labels.tolist())),
        **_summary_of_skips(faces),
        "n_genuine_pairs": int(len(gen)),
        "n_impostor_pairs": int(len(imp)),
        "accuracy_at_native_threshold": (metrics.accuracy_at(g_scores, i_scores, native)
                                         if native is not None else None),
        "native_threshold": native,
        "best_accuracy": best,
        "best_threshold": best_t,
        "tar_at_fmr": tars,
        "thresholds_at_fmr": thresholds,
        "rank1": metrics.rank1(sim, labels[probes], labels[gallery]),
        "n_gallery": int(len(gallery)),
        "n_probes": int(len(probes)),
        "seed": seed,
    }


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given, and the image files inside folders (recursively, sorted)."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            paths += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            paths.append(p)
    return paths


def embed_files(recognizer: str | Recognizer, inputs: Sequence[str | Path], device: str | None = None,
                progress: bool = True) -> dict[str, np.ndarray]:
    """Detect, align and embed images; arrays for `facesec embed`'s .npz output."""
    model = load(recognizer, pick_device(device)) if isinstance(recognizer, str) else recognizer
    faces = align_faces(expand_inputs(inputs), model.info.template, progress=progress)
    emb = embed_crops(model, faces.tensor(), progress=progress)
    return {
        "paths": np.array([str(p) for p in faces.paths], dtype=str),
        "embeddings": emb.numpy().astype(np.float32).reshape(len(faces.paths), model.info.embedding_size),
        "skipped": np.array([str(p) for p, _ in faces.skipped], dtype=str),
        "reasons": np.array([r for _, r in faces.skipped], dtype=str),
    }
