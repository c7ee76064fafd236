"""Each kind of unusable image is recorded with its reason (or converted), never a crash."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facesec.data.align import ARCFACE_112, DLIB_150
from facesec.data.images import UnusableImage, read_rgb
from facesec.data.pipeline import align_faces
from facesec.report.figures import load_image


@pytest.fixture(scope="module")
def zoo(face_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One file per case, made from real faces."""
    d = tmp_path_factory.mktemp("zoo")
    face = Image.open(face_files[0]).convert("RGB")
    other = Image.open(face_files[1]).convert("RGB")
    files = {name: d / f"{name}.{ext}" for name, ext in [
        ("good", "jpg"), ("not_an_image", "jpg"), ("truncated", "jpg"), ("no_face", "png"), ("two_faces", "png"),
        ("grayscale", "png"), ("cmyk", "jpg"), ("alpha", "png"), ("huge", "png"), ("empty", "jpg"),
        ("undefined_strips", "tif")]}
    face.save(files["good"])
    files["not_an_image"].write_text("this is not a JPEG")
    files["truncated"].write_bytes(files["good"].read_bytes()[:3000])
    Image.new("RGB", (250, 250), (128, 128, 128)).save(files["no_face"])
    pair = Image.new("RGB", (500, 250))
    pair.paste(face, (0, 0))
    pair.paste(other, (250, 0))
    pair.save(files["two_faces"])
    face.convert("L").save(files["grayscale"])
    face.convert("CMYK").save(files["cmyk"])
    rgba = face.convert("RGBA")
    rgba.putalpha(200)
    rgba.save(files["alpha"])
    Image.new("L", (8000, 6000)).save(files["huge"])
    files["empty"].write_bytes(b"")
    files["undefined_strips"].write_bytes(_tiff_with_undefined_strip_offsets())
    return files


def _tiff_with_undefined_strip_offsets() -> bytes:
    """A 332-byte 8x8 RGB TIFF whose StripOffsets tag (273) has type 7 (UNDEFINED): Pillow's decoder raises
    TypeError on it."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "TIFF")
    data = bytearray(buf.getvalue())
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * i
        if struct.unpack_from("<H", data, entry)[0] == 273:
            struct.pack_into("<H", data, entry + 2, 7)
    return bytes(data)


def test_reader_reasons(zoo: dict[str, Path]) -> None:
    with pytest.raises(UnusableImage, match="not an image"):
        read_rgb(zoo["not_an_image"])
    with pytest.raises(UnusableImage, match="truncated"):
        read_rgb(zoo["truncated"])
    with pytest.raises(UnusableImage, match="too large"):
        read_rgb(zoo["huge"])
    with pytest.raises(UnusableImage, match="not an image"):
        read_rgb(zoo["empty"])
    with pytest.raises(UnusableImage, match="file not found"):
        read_rgb(zoo["good"].with_name("absent.jpg"))
    with pytest.raises(UnusableImage, match=r"the decoder failed on this file \(TypeError"):
        read_rgb(zoo["undefined_strips"])
    for name, note in [("grayscale", "from L"), ("cmyk", "from CMYK"), ("alpha", "alpha channel")]:
        img, got = read_rgb(zoo[name])
        assert img.dtype == np.uint8 and img.shape == (250, 250, 3)
        assert got is not None and note in got


@pytest.mark.parametrize("template", [DLIB_150, ARCFACE_112], ids=lambda t: t.name)
def test_pipeline_records_every_unusable_image(zoo: dict[str, Path], template) -> None:  # type: ignore[no-untyped-def]
    paths = list(zoo.values())
    faces = align_faces(paths, template, progress=False)
    assert len(faces.paths) + len(faces.skipped) == len(paths)
    reasons = {p.stem: r for p, r in faces.skipped}
    assert set(reasons) == {"not_an_image", "truncated", "no_face", "two_faces", "huge", "empty", "undefined_strips"}
    assert reasons["no_face"] == "no face detected"
    assert reasons["two_faces"] == "2 faces detected"
    assert {p.stem for p in faces.paths} == {"good", "grayscale", "cmyk", "alpha"}
    assert {p.stem for p, _ in faces.notes} == {"grayscale", "cmyk", "alpha"}
    assert faces.crops.shape == (4, template.size, template.size, 3)
    again = align_faces(paths, template, progress=False)  # from the cache: same answer
    assert np.array_equal(again.crops, faces.crops) and again.skipped == faces.skipped


def test_report_gallery_skips_what_it_cannot_show(zoo: dict[str, Path]) -> None:
    """The report's gallery reads through the same guarded decoder: a crafted file or a name too long for the
    file system is an image not shown, never a failed report."""
    root = zoo["good"].parent
    assert load_image(root, zoo["good"].name) is not None
    assert load_image(root, zoo["undefined_strips"].name) is None
    assert load_image(root, "x" * 300 + ".png") is None
    assert load_image(root, "a\0b.png") is None
