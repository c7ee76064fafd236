"""The calibration draw: which identities set a run's operating point. They are drawn before anything else and,
from the run's own dataset, left out of every other draw, so the threshold never comes from the people it judges.
Torch-free: `validate` checks the draw and the FMR it supports before any run starts."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesec import protocols
from facesec.data.dataset import load_dataset
from facesec.errors import DataError
from facesec.families.base import Draw
from facesec.threat_model import OpenSet, ThreatModel

SALT = 0xCA1
"""Mixed into the calibration seed, so the calibration draw is not the attacked draw's first identities."""
MAX_FACES = 5000
"""Calibration faces at most: all their pairs are compared (5,000 faces: 12.5 million pairs, about 100 MB)."""


@dataclass(frozen=True)
class CalibrationDraw:
    """The identities and files a threshold is calibrated on."""

    dataset: str
    root: Path
    files: tuple[tuple[Path, str], ...]
    """Up to `images_per_identity` files per identity, identities in draw order."""
    names: tuple[str, ...]
    images_per_identity: int
    seed: int
    shared: bool
    """Drawn from the attacked dataset: `names` are then left out of every other draw of the run."""

    def key(self) -> str:
        """What makes two runs' calibrations the same (dataset, files relative to it, identities): one per suite,
        and the same on another machine with the same dataset."""
        digest = hashlib.sha256(self.dataset.encode("utf-8", "surrogateescape"))
        for path, ident in self.files:
            name = path.relative_to(self.root).as_posix() if path.is_relative_to(self.root) else path.name
            digest.update(f"\n{name},{ident}".encode("utf-8", "surrogateescape"))
        return digest.hexdigest()

    def reserved(self) -> frozenset[str]:
        """Identities no other draw of the run may take."""
        return frozenset(self.names) if self.shared else frozenset()


def draw(tm: ThreatModel) -> CalibrationDraw | None:
    """The run's calibration identities (None for an in-sample operating point or a closed-set run)."""
    cal = tm.setting.calibrated() if isinstance(tm.setting, OpenSet) else None
    if cal is None:
        return None
    name = cal.dataset or tm.data.dataset
    ds = load_dataset(name)
    by_identity: dict[str, list[Path]] = {}
    for path, ident in ds.items:
        by_identity.setdefault(ident, []).append(path)
    k = cal.images_per_identity
    eligible = sorted(ident for ident, paths in by_identity.items() if len(paths) >= k)
    seed = tm.data.seed if cal.seed is None else cal.seed
    order = [str(n) for n in np.random.default_rng([seed, SALT]).permutation(eligible)]
    wanted = len(order) if cal.identities is None else cal.identities
    if len(order) < wanted:
        raise DataError(f"field 'setting.calibration.identities': dataset '{name}' has {len(order)} identities "
                        f"with {k} images, not {wanted}; lower setting.calibration.identities or "
                        "images_per_identity, or calibrate on another dataset")
    names = tuple(order[:wanted])
    files = tuple((path, ident) for ident in names for path in by_identity[ident][:k])
    if len(files) > MAX_FACES:
        raise DataError(f"field 'setting.calibration': {len(names)} identities x {k} faces are {len(files)} faces, "
                        f"more than the {MAX_FACES} compared pair by pair; set setting.calibration.identities "
                        f"(at most {MAX_FACES // k})")
    shared = load_dataset(tm.data.dataset).root == ds.root
    return CalibrationDraw(name, ds.root, files, names, k, seed, shared)


def check(tm: ThreatModel, draws: Sequence[Draw] = ()) -> None:
    """Refuse, before any run, an open-set run that does not say where its threshold comes from, a calibration
    the dataset cannot give, or one too small for the FMR asked for: 10 / FMR impostor image pairs and 1 / FMR
    pairs of people (unless the threat model accepts that); and a run whose identities (the attacked ones and the
    family's other `draws`) do not fit beside its calibration."""
    if isinstance(tm.setting, OpenSet) and tm.setting.calibration is None:
        raise DataError("field 'setting.calibration': an open-set run needs to say where its threshold comes from: "
                        "add calibration: {identities: 100} to the setting (drawn first from data.dataset and left "
                        "out of the run), or calibration: in-sample to accept a threshold set on the attacked "
                        "people themselves (every number is then marked)")
    found = draw(tm)
    _room_left(tm, frozenset() if found is None else found.reserved(), draws)
    if found is None:
        return
    cal = tm.setting.calibrated() if isinstance(tm.setting, OpenSet) else None
    assert isinstance(tm.setting, OpenSet) and cal is not None
    problem = unsupported(len(found.names), found.images_per_identity, tm.setting.fmr)
    if problem and not cal.accept_unsupported:
        raise DataError(f"field 'setting.calibration': {problem}; raise setting.calibration.identities, raise "
                        "setting.fmr, or set setting.calibration.accept_unsupported: true (every number is then "
                        "marked)")


def _room_left(tm: ThreatModel, reserved: frozenset[str], draws: Sequence[Draw]) -> None:
    """Refuse a run whose disjoint groups of identities (the attacked ones, then the family's `draws`), each
    needing so many images, cannot all come from the dataset's identities outside the calibration's. Images are
    counted as files (some may hold no usable face, which the run finds), so this refuses only what cannot fit:
    the groups needing the most images first, each must fit among the identities with that many."""
    groups = sorted([Draw(tm.data.identities, tm.data.images_per_identity, "data.identities"), *draws],
                    key=lambda g: -g.images)
    counts = Counter(ident for _, ident in load_dataset(tm.data.dataset).items if ident not in reserved)
    beside = f" besides the {len(reserved)} calibration identities" if reserved else ""
    tail = " or setting.calibration.identities" if reserved else ""
    wanted = 0
    for i, group in enumerate(groups):
        wanted += group.identities
        left = sum(c >= group.images for c in counts.values())
        if left < wanted:
            asked = " + ".join(f"{g.field} ({g.identities}, {g.images} images each)" for g in groups[:i + 1])
            raise DataError(f"field '{group.field}': dataset '{tm.data.dataset}' has {left} identities with "
                            f"{group.images} images{beside}, and the run draws {asked}: {wanted} of them; lower "
                            f"{' or '.join(g.field for g in groups[:i + 1])}{tail} (or the images each needs)")
    for group in (g for g in draws if g.with_attacked):
        left = sum(c >= group.images for c in counts.values())
        if left < group.identities + tm.data.identities:
            raise DataError(f"field '{group.field}': dataset '{tm.data.dataset}' has {left} identities with "
                            f"{group.images} images{beside}; the run picks {group.field} ({group.identities}) "
                            f"together with data.identities ({tm.data.identities}) among them; lower either{tail} "
                            "(or the images each needs)")


def unsupported(identities: int, images_per_identity: int, fmr: float) -> str | None:
    """Why `identities` people with this many faces each cannot support a threshold at `fmr` (None when they
    can): too few impostor image pairs (10 / FMR) or too few pairs of people (1 / FMR)."""
    images = protocols.pair_counts([images_per_identity] * identities)[1]
    if not protocols.supported_fmr(images, fmr):
        return (f"{identities} identities x {images_per_identity} faces give {images} impostor pairs, under the "
                f"{10 / fmr:.0f} FMR {fmr:g} needs")
    flag = protocols.people_flag(identities, fmr, "")
    return None if flag is None else flag.removesuffix(": raise ")


__all__ = ["CalibrationDraw", "check", "draw", "unsupported"]
