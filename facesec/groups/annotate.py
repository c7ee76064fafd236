"""`facesec data annotate NAME`: a dataset's attribute table predicted from its photos. Perceived sex and age come
from hse-faceres's two attribute heads (in the same TF.js graph as its identity descriptor), skin tone from the
individual typology angle (ITA, Chardon et al. 1991) of the cheeks that dlib's 68 landmarks place; each is
aggregated over an identity's photos (sex by majority, age and ITA by median) with the count it rests on. They are
perceived and predicted attributes, not self-reported ones, and ITA moves with the lighting."""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

import facesec
from facesec.data.align import TEMPLATES
from facesec.data.attributes import Table, predicted_path, write_table
from facesec.data.dataset import load_dataset
from facesec.data.pipeline import align_faces
from facesec.progress import bar

FEATURES, GENDER, AGE = "feats/Relu", "gender_pred", "age_pred"
"""hse-faceres's shared 256-d features and its two heads on them (dense layers: sigmoid, softmax over 100 ages)."""
AGE_BANDS = ((30, "under 30"), (45, "30-44"), (60, "45-59"), (math.inf, "60 and over"))
"""Age bands by their upper end (an expected age of 44.6 is in 30-44)."""
ITA_TONES = ((55, "very light"), (41, "light"), (28, "intermediate"), (10, "tan"), (-30, "brown"), (-math.inf, "dark"))
"""Skin-tone categories by their lower ITA end, in degrees (Chardon et al. 1991; Merler et al. 2019)."""
CHEEKS = ((41, 31, 48, 2), (46, 35, 54, 14))
"""Each cheek's centre: the mean of the lower eyelid, the nostril, the mouth corner and the jaw beside them."""
PATCH = 0.12
"""A cheek patch's half side, as a share of the distance between the eyes' outer corners."""
COLUMNS = ["sex", "p_male", "sex_photos", "sex_agreement", "age", "age_band", "age_photos", "ita", "skin_tone",
           "ita_photos"]


class Heads:
    """hse-faceres up to its shared features once, then both attribute heads (its own dense layers)."""

    def __init__(self) -> None:
        from facesec.recognizers import packaged
        from facesec.recognizers.tfjs import build
        from facesec.recognizers.tfjs_format import read_graph_model

        root = packaged.installed("hse-faceres")
        graph = read_graph_model(root / "faceres.json")
        self.features = build(root / "faceres.json", FEATURES, "hse-faceres features", "arcface-224")
        self.weights = {f"{k}/{part}": torch.from_numpy(graph.weights[f"{k}/{part}"]) for k in (GENDER, AGE)
                        for part in ("kernel", "bias")}
        self.about = f"hse-faceres ({packaged.PACKAGED['hse-faceres'].spec}, graph sha256 {graph.sha256[:16]})"

    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """P(male) and the expected age of each 224 x 224 crop (uint8 N x H x W x 3)."""
        x = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(255.0)
        with torch.no_grad():
            f = torch.cat([self.features.net(x[i:i + 32]) for i in range(0, len(x), 32)])
            male = torch.sigmoid(f @ self.weights[f"{GENDER}/kernel"] + self.weights[f"{GENDER}/bias"])[:, 0]
            ages = torch.softmax(f @ self.weights[f"{AGE}/kernel"] + self.weights[f"{AGE}/bias"], dim=1)
        expected = ages @ torch.arange(ages.shape[1], dtype=ages.dtype)
        return male.numpy(), expected.numpy()


def ita(crop: np.ndarray, landmarks: np.ndarray) -> float:
    """The ITA of a face's cheeks in degrees: atan((L* - 50) / b*) of the median L* and b* of two square patches."""
    side = PATCH * float(np.linalg.norm(landmarks[36] - landmarks[45]))
    lab = cv2.cvtColor(crop.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    pixels = []
    for points in CHEEKS:
        cx, cy = landmarks[list(points)].mean(axis=0)
        x0, x1 = int(max(cx - side, 0)), int(min(cx + side, crop.shape[1]))
        y0, y1 = int(max(cy - side, 0)), int(min(cy + side, crop.shape[0]))
        pixels.append(lab[y0:y1, x0:x1].reshape(-1, 3))
    skin = np.concatenate(pixels)
    if not len(skin):
        return math.nan
    lightness, b = float(np.median(skin[:, 0])), float(np.median(skin[:, 2]))
    return math.degrees(math.atan((lightness - 50.0) / b)) if b else math.copysign(90.0, lightness - 50.0)


def band(age: float) -> str:
    return next(name for upper, name in AGE_BANDS if age < upper)


def tone(angle: float) -> str:
    return next(name for lower, name in ITA_TONES if angle > lower)


@dataclass
class Person:
    """What one identity's usable photos gave: P(male), expected age and ITA per photo."""

    male: np.ndarray
    age: np.ndarray
    ita: np.ndarray

    def row(self) -> dict[str, str]:
        """The identity's table cells (empty where no photo was usable)."""
        if not len(self.male):
            return {}
        votes = self.male > 0.5
        share = float(votes.mean())
        sex = "male" if share > 0.5 else "female" if share < 0.5 else ("male" if self.male.mean() > 0.5 else "female")
        agree = share if sex == "male" else 1 - share
        age = float(np.median(self.age))
        row = {"sex": sex, "p_male": f"{float(self.male.mean()):.3f}", "sex_photos": str(len(self.male)),
               "sex_agreement": f"{agree:.2f}", "age": f"{age:.1f}", "age_band": band(age),
               "age_photos": str(len(self.age))}
        angles = self.ita[np.isfinite(self.ita)]
        if len(angles):
            angle = float(np.median(angles))
            row |= {"ita": f"{angle:.1f}", "skin_tone": tone(angle), "ita_photos": str(len(angles))}
        return row


def annotate(dataset: str, photos: int | None = None, progress: bool = False) -> tuple[Table, int]:
    """The dataset's predicted table (at most `photos` photos per identity; None: all), written to its per-user
    place, and how many photos it rests on."""
    ds = load_dataset(dataset)
    heads, template = Heads(), TEMPLATES["arcface-224"]
    by_identity: dict[str, list] = {}
    for path, identity in ds.items:
        by_identity.setdefault(identity, []).append(path)
    values, used = {}, 0
    for identity, paths in bar(sorted(by_identity.items()), desc="annotating", unit="identity", enabled=progress):
        faces = align_faces(paths[:photos], template, progress=False)
        person = Person(np.zeros(0), np.zeros(0), np.zeros(0))
        if len(faces.paths):
            male, age = heads(faces.crops)
            person = Person(male, age, np.array([ita(c, lm) for c, lm in zip(faces.crops, faces.landmarks,
                                                                              strict=True)]))
        used += len(faces.paths)
        values[identity] = person.row()
    table = Table(values, COLUMNS, str(predicted_path(dataset)), _provenance(ds.name, heads.about, photos))
    write_table(predicted_path(dataset), table)
    return table, used


def _provenance(name: str, model: str, photos: int | None) -> list[str]:
    bands = ", ".join(n for _, n in AGE_BANDS)
    tones = _tone_words()
    return [f"predicted by facesec {facesec.__version__} data annotate on "
            f"{datetime.datetime.now(datetime.UTC).date().isoformat()}: dataset {name}, "
            f"{'every photo' if photos is None else f'at most {photos} photos'} per identity, faces aligned to "
            "arcface-224 (dlib 5-point landmarks)",
            f"sex: {model} gender head (sigmoid, > 0.5 male) per photo; the identity's majority (a tie: the mean); "
            "perceived, not self-reported",
            f"age: the same model's age head, expected age over its 100 bins per photo; the identity's median; "
            f"bands {bands}",
            f"skin_tone: ITA = atan((L* - 50) / b*) in degrees from the median CIE L*a*b* of two cheek patches placed "
            f"by dlib's 68 landmarks, per photo; the identity's median; {tones}; lighting moves it"]


def _tone_words() -> str:
    """The skin-tone categories in words: 'very light above 55, light 41 to 55, ..., dark below -30'."""
    words = []
    for i, (lower, name) in enumerate(ITA_TONES):
        upper = ITA_TONES[i - 1][0] if i else math.inf
        span = f"below {upper:g}" if math.isinf(lower) else f"above {lower:g}" if math.isinf(upper) \
            else f"{lower:g} to {upper:g}"
        words.append(f"{name} {span}")
    return ", ".join(words)
