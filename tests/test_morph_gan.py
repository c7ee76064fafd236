"""GAN morphs: the generator checkpoint fetched from its wheel and loaded without the package, inversion
that moves a generated face towards a contributor, and a small end-to-end run."""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from facesec.data.faces import FaceAnalyzer
from facesec.engine import run_threat_model
from facesec.errors import WeightsError
from facesec.loading import load_threat_models
from facesec.priors import dcgan as gan
from facesec.recognizers import packaged

MEMBER = "gan_face_generate/weights.tar"


def _wheel(path: Path, data: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("gan_face_generate/__init__.py", "raise SystemExit('never imported')\\n")
        wheel.writestr(MEMBER, data)
    return path


def test_fetch_from_a_wheel_reads_only_the_checkpoint(tmp_path: Path, gan_installed: Path) -> None:
    data = (gan_installed / "weights.tar").read_bytes()
    target = packaged.folder("gan-face-generate")
    backup = tmp_path / "backup.tar"
    backup.write_bytes(data)
    (target / "weights.tar").unlink()
    try:
        with pytest.raises(WeightsError, match="gan-face-generate is not installed"):
            packaged.installed("gan-face-generate")
        with pytest.raises(WeightsError, match=r"has sha256 .* expected 0c3b90b1"):
            packaged.fetch("gan-face-generate", _wheel(tmp_path / "bad.whl", b"not a checkpoint"), progress=False)
        assert packaged.fetch("gan-face-generate", _wheel(tmp_path / "good.whl", data), progress=False) == target
        assert sorted(p.name for p in target.iterdir()) == ["weights.tar"]
    finally:
        if not (target / "weights.tar").is_file():
            (target / "weights.tar").write_bytes(backup.read_bytes())


def test_generator_loads_strictly_and_makes_detectable_faces(gan_installed: Path) -> None:
    generator = gan.load_generator(torch.device("cpu"))
    with torch.no_grad():
        faces = generator(torch.randn(4, gan.LATENT, generator=torch.Generator().manual_seed(0)))
    assert faces.shape == (4, 3, 64, 64) and 0 <= float(faces.min()) and float(faces.max()) <= 1
    from facesec.data.align import DLIB_150

    transform = gan.framing(generator, DLIB_150, FaceAnalyzer(), seed=0)
    assert transform.shape == (2, 3) and np.isfinite(transform).all()


def test_inversion_pulls_a_generated_face_towards_its_template(gan_installed: Path, dlib_recognizer) -> None:  # type: ignore[no-untyped-def]
    generator = gan.load_generator(torch.device("cpu"))
    with torch.no_grad():
        wanted = generator(torch.randn(2, gan.LATENT, generator=torch.Generator().manual_seed(7)))
    # the templates: two generated faces as the recognizer sees them through the generator's framing
    framed = gan.target(generator, dlib_recognizer, gan.matching(dlib_recognizer, torch.zeros(2, 128)),
                        FaceAnalyzer(), seed=0)
    crops = torch.nn.functional.grid_sample(
        torch.nn.functional.interpolate(wanted, size=(gan.PHOTO, gan.PHOTO), mode="bilinear", align_corners=False),
        framed.grid.expand(2, -1, -1, -1), align_corners=False)
    with torch.no_grad():
        templates = dlib_recognizer(crops)
    view = dataclasses.replace(framed, score=gan.matching(dlib_recognizer, templates))

    def similarity(z: torch.Tensor) -> float:
        face = torch.nn.functional.interpolate(generator(z), size=(gan.PHOTO, gan.PHOTO), mode="bilinear",
                                               align_corners=False)
        crop = torch.nn.functional.grid_sample(face, view.grid.expand(2, -1, -1, -1), align_corners=False)
        with torch.no_grad():
            return float(dlib_recognizer.similarity(dlib_recognizer(crop), templates).mean())

    before = similarity(gan.invert(generator, [view], 2, steps=0, seed=1))
    after = similarity(gan.invert(generator, [view], 2, steps=15, seed=1))
    assert after > before + 0.05, (before, after)


def test_gan_morph_run(tmp_path: Path, celeba: Path, gan_installed: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("name: g\ndata: {identities: 6, images_per_identity: 3}\n"
                    "perturbation: {kind: morph, method: gan, pairs: 2, calibration_identities: 4, fmrs: [1e-2]}\n"
                    "setting: {kind: open-set, fmr: 1e-2}\nattack: {method: pgd, steps: 3}\n")
    record = run_threat_model(load_threat_models(path)[0], torch.device("cpu"), progress=False).record.to_json()
    m = record["metrics"]
    assert record["dimensions"]["attack"] == "gan morph, 3 inversion steps"
    assert m["n_morphs"] == 2 and 0 <= m["mmpmr"] <= 1 and 0 <= m["morphs_not_enrolled"] <= 2
