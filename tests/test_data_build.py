"""`facesec data build celeba-mini --from DIR` on source photos the test makes (celeba-mini crops pasted into larger
photos, one small enough that the detector must upsample, with their own list of hashes): the crops follow the
README's recipe, the set has the listed identities, files and manifest, and a missing or altered source file, a
bad list or an existing set is one line (exit 2) with nothing written."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import dlib
import numpy as np
import pytest
from PIL import Image

from facesec.cli import main
from facesec.data.build import BUILDS, SIZE, build
from facesec.data.dataset import load_dataset
from facesec.dlib_models import models_dir
from facesec.errors import DataError

SPAN = SIZE / 3.6
"""The recipe crops 3.6 outer eye-corner spans: in a crop, the span is 250 / 3.6 = 69.4 px (above the 60 px floor)."""


@pytest.fixture(scope="module")
def sources(celeba: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Six 'CelebA photos' of three people and their list: each celeba-mini crop pasted into a grey photo (the
    last one at 100 x 100, too small for the detector without upsampling), written as JPEG, hashed by this test."""
    folder = tmp_path_factory.mktemp("img_celeba")
    people = sorted(p for p in celeba.resolve().iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 2)[:3]
    rows = []
    for n, person in enumerate(people):
        for k, photo in enumerate(sorted(person.glob("*.jpg"))[:2]):
            face = Image.open(photo).convert("RGB")
            half = n == 2 and k == 1
            face = face.resize((100, 100), Image.Resampling.BICUBIC) if half else face
            canvas = Image.new("RGB", (300, 360) if half else (420, 500), (96, 96, 96))
            canvas.paste(face, (40 + 10 * k, 70 + 5 * n))
            name = f"{100001 + 10 * n + k:06d}.jpg"
            canvas.save(folder / name, quality=95)
            data = (folder / name).read_bytes()
            rows.append((name, person.name, hashlib.sha256(data).hexdigest(), len(data)))
    listing = folder.parent / "sources.csv"
    with listing.open("w", newline="") as fh:
        csv.writer(fh).writerows([("source_file", "identity", "sha256", "bytes"), *rows])
    return folder, listing


def _no_data_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No $FACESEC_DATA and an empty per-user data folder: a celeba-mini elsewhere would refuse the build."""
    monkeypatch.delenv("FACESEC_DATA", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


def _landmarks(path: Path) -> np.ndarray:
    image = np.asarray(Image.open(path).convert("RGB"))
    faces = dlib.get_frontal_face_detector()(image, 1)
    assert len(faces) == 1
    shape = dlib.shape_predictor(str(models_dir() / "shape_predictor_5_face_landmarks.dat"))(image, faces[0])
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


def test_the_built_set_is_the_listed_one_cut_by_the_recipe(sources: tuple[Path, Path], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    _no_data_folders(tmp_path, monkeypatch)
    folder, listing = sources
    done = build("celeba-mini", folder, to=tmp_path / "data", sources=listing)
    with listing.open() as fh:
        listed = [(r["source_file"], r["identity"]) for r in csv.DictReader(fh)]
    ds = load_dataset(done.root)
    assert [(p.name, ident) for p, ident in ds.items] == sorted(listed, key=lambda r: (r[1], r[0]))
    assert (done.root / "manifest.csv").read_text().splitlines() == ["path,identity"] + [
        f"{ident}/{file},{ident}" for file, ident in listed]
    assert (done.root / "SOURCES.csv").read_bytes() == listing.read_bytes()
    assert (done.images, done.identities) == (6, 3) and not list((tmp_path / "data").glob(".*"))
    for path, _ in ds.items:  # centred on the eyes and nose, 3.6 eye-corner spans wide, at 250 x 250
        assert Image.open(path).size == (SIZE, SIZE)
        p = _landmarks(path)
        centre = (p[:4].mean(axis=0) + p[4]) / 2
        assert np.abs(centre - SIZE / 2).max() < 6, (path, centre)
        assert abs(np.linalg.norm(p[0] - p[2]) - SPAN) < 6, (path, np.linalg.norm(p[0] - p[2]))


def _altered(folder: Path, tmp_path: Path, how: str) -> Path:
    """A copy of the source photos with one missing, or one changed by a byte (same size)."""
    copy = tmp_path / "img_celeba"
    copy.mkdir()
    for photo in sorted(folder.iterdir()):
        (copy / photo.name).write_bytes(photo.read_bytes())
    victim = sorted(copy.iterdir())[3]
    if how == "missing":
        victim.unlink()
    else:
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0xFF
        victim.write_bytes(bytes(data))
    return copy


@pytest.mark.parametrize("how, says", [("missing", "missing"), ("changed", "its SHA-256 is not the listed one")])
def test_a_missing_or_altered_source_is_named_and_nothing_is_written(
        sources: tuple[Path, Path], tmp_path: Path, how: str, says: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    _no_data_folders(tmp_path, monkeypatch)
    folder, listing = sources
    copy = _altered(folder, tmp_path, how)
    out = tmp_path / "data"
    code = main(["data", "build", "celeba-mini", "--from", str(tmp_path), "--sources", str(listing),
                 "--to", str(out)])
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar of the check
    assert code == 2 and err.startswith("facesec: error: ")
    assert f"{sorted(folder.iterdir())[3].name}: {says}" in err and "nothing was written" in err
    assert str(copy) in err and not out.exists()


@pytest.mark.parametrize("row, says", [
    ("../100001.jpg,7201,{h},10", "line 2: source_file and identity must be plain names"),
    ("100001.jpg,7201,abc,10", "line 2: source_file and identity must be plain names"),
    ("100001.jpg,7201,{h},10\n100001.jpg,7202,{h},10", "100001.jpg is listed twice")])
def test_a_bad_source_list_is_one_line(tmp_path: Path, row: str, says: str) -> None:
    listing = tmp_path / "sources.csv"
    listing.write_text("source_file,identity,sha256,bytes\n" + row.format(h="0" * 64) + "\n")
    with pytest.raises(DataError, match=says):
        build("celeba-mini", tmp_path, to=tmp_path / "data", sources=listing)
    assert not (tmp_path / "data").exists()


def test_an_existing_set_is_refused_and_the_shipped_list_is_celeba_minis(celeba: Path, tmp_path: Path) -> None:
    (tmp_path / "data" / "celeba-mini").mkdir(parents=True)
    with pytest.raises(DataError, match="already exists at .*; remove it to build it again"):
        build("celeba-mini", tmp_path, to=tmp_path / "data")
    assert BUILDS["celeba-mini"].read_bytes() == (celeba / "SOURCES.csv").read_bytes()
