"""The faces a threat model attacks: seeded identities, aligned to the recognizer's template."""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from facesec.data.align import Template
from facesec.data.dataset import load_dataset
from facesec.data.pipeline import align_faces
from facesec.errors import DataError, TooFewIdentities
from facesec.progress import bar
from facesec.threat_model import Data


@dataclass
class Population:
    """Aligned faces of the selected identities; each identity's faces are contiguous, in file order."""

    faces: torch.Tensor
    """N x 3 x H x W float32 in [0, 1]."""
    identity: np.ndarray
    """Per face, its identity's index into `names`."""
    names: list[str]
    paths: list[Path]
    template: Template
    """The alignment `faces` and `landmarks` are in."""
    landmarks: np.ndarray = field(default_factory=lambda: np.zeros((0, 68, 2)))
    """N x 68 x 2: dlib's landmarks in crop pixels (where accessories sit)."""
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    manifest_sha256: str = ""


def select(data: Data, template: Template, progress: bool = True, exclude: Collection[str] = ()) -> Population:
    """Pick `data.identities` identities (seeded) that have `data.images_per_identity` usable faces, none of
    `exclude` (the calibration identities)."""
    ds = load_dataset(data.dataset)
    by_identity: dict[str, list[Path]] = {}
    left_out = set(exclude)
    for path, ident in ds.items:
        if ident not in left_out:
            by_identity.setdefault(ident, []).append(path)
    rng = np.random.default_rng(data.seed)
    order = [str(n) for n in rng.permutation(sorted(by_identity))]
    k = data.images_per_identity
    crops: list[np.ndarray] = []
    landmarks: list[np.ndarray] = []
    chosen: list[str] = []
    paths: list[Path] = []
    skipped: list[tuple[Path, str]] = list(ds.skipped)
    found = bar(total=data.identities, desc=f"faces -> {template.name}", unit="identity", enabled=progress)
    for ident in order:
        if len(chosen) == data.identities:
            break
        files = by_identity[ident]
        if len(files) < k:
            continue
        faces = align_faces(files[: k + 2], template, progress=False)
        if len(faces.paths) < k and len(files) > k + 2:
            faces = align_faces(files, template, progress=False)
        skipped += faces.skipped
        if len(faces.paths) < k:
            continue
        chosen.append(ident)
        found.update()
        crops.append(faces.crops[:k])
        landmarks += faces.landmarks[:k]
        paths += faces.paths[:k]
    found.close()
    if len(chosen) < data.identities:
        apart = f" besides the {len(left_out)} identities kept apart (calibration, surrogates' training)" \
            if left_out else ""
        raise TooFewIdentities(f"dataset '{data.dataset}' has only {len(chosen)} identities with {k} usable faces"
                               f"{apart}; "
                               f"lower data.identities ({data.identities}) or data.images_per_identity ({k})",
                               len(chosen))
    stacked = np.concatenate(crops)
    digest = hashlib.sha256()
    for path, ident in zip(paths, np.repeat(chosen, k), strict=True):
        digest.update(f"{path.relative_to(ds.root).as_posix()},{ident}\n".encode("utf-8", "surrogateescape"))
    return Population(
        faces=torch.from_numpy(stacked).permute(0, 3, 1, 2).float().div(255.0),
        identity=np.repeat(np.arange(len(chosen)), k),
        names=chosen, paths=paths, template=template, landmarks=np.stack(landmarks).astype(np.float32),
        skipped=_in_dataset(skipped, ds.root), manifest_sha256=digest.hexdigest())


def everyone_but(dataset: str, exclude: list[str], template: Template, progress: bool = True) -> Population:
    """Every identity of `dataset` not in `exclude`, with all its usable faces (identities left with fewer than two
    are dropped: they give no genuine pair)."""
    ds = load_dataset(dataset)
    skip = set(exclude)
    files = [(path, ident) for path, ident in ds.items if ident not in skip]
    faces = align_faces([path for path, _ in files], template, progress=progress)
    of = dict(files)
    counts = Counter(of[path] for path in faces.paths)
    names = sorted(ident for ident, n in counts.items() if n >= 2)
    index = {ident: i for i, ident in enumerate(names)}
    rows = [k for k, path in enumerate(faces.paths) if of[path] in index]
    rows.sort(key=lambda k: (index[of[faces.paths[k]]], k))
    return Population(faces=faces.tensor()[torch.tensor(rows, dtype=torch.long)],
                      identity=np.array([index[of[faces.paths[k]]] for k in rows], dtype=np.int64), names=names,
                      paths=[faces.paths[k] for k in rows], template=template,
                      landmarks=np.array([faces.landmarks[k] for k in rows], dtype=np.float32).reshape(-1, 68, 2),
                      skipped=_in_dataset(list(ds.skipped) + faces.skipped, ds.root))


def _in_dataset(skipped: list[tuple[Path, str]], root: Path) -> list[tuple[Path, str]]:
    """Skipped files named relative to the dataset's folder: a run's record (and a report handed to someone else)
    names no folder of the machine that made it."""
    return [(p.relative_to(root) if p.is_relative_to(root) else Path(p.name), r) for p, r in skipped]


def select_with_others(data: Data, others: int, field: str, template: Template, progress: bool = True,
                       exclude: Collection[str] = ()) -> Population:
    """`select` of `data.identities` identities followed by `others` more (named by `field` in the error when
    the dataset has too few): the first ones are the run's subjects, the rest calibrate or serve the attacker."""
    wanted = data.model_copy(update={"identities": data.identities + others})
    try:
        return select(wanted, template, progress, exclude)
    except DataError as exc:
        raise DataError(f"{exc} (this run needs data.identities + {field} = {wanted.identities})") from exc


def realign(pop: Population, template: Template) -> Population:
    """The same faces aligned to another template (what a surrogate with its own alignment sees)."""
    faces = align_faces(pop.paths, template, progress=False)
    if faces.paths != pop.paths:
        lost = ", ".join(f"{p}: {r}" for p, r in faces.skipped[:3])
        raise DataError(f"{len(faces.skipped)} face(s) cannot be aligned to {template.name} ({lost})")
    return dataclasses.replace(pop, faces=faces.tensor(), landmarks=np.stack(faces.landmarks).astype(np.float32),
                               template=template)
