"""Datasets from someone else: entries that are not image files are recorded, never read or silently
dropped; any file name survives into the outputs; 16-bit images are converted, not misread."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facesec.data.dataset import load_dataset
from facesec.data.images import UnusableImage, read_rgb


def test_odd_entries_are_recorded(tmp_path: Path, face_files: list[Path]) -> None:
    root = tmp_path / "odd"
    (root / "alice").mkdir(parents=True)
    shutil.copy(face_files[0], root / "alice" / "a.jpg")
    (root / "alice" / "folder.jpg").mkdir()
    os.mkfifo(root / "alice" / "pipe.jpg")
    (root / "alice" / "gone.jpg").symlink_to(root / "alice" / "nowhere.jpg")
    (root / "alice" / "loop.jpg").symlink_to(root / "alice" / "loop.jpg")
    ds = load_dataset(root)
    assert [p.name for p, _ in ds.items] == ["a.jpg"]
    reasons = {p.name: r for p, r in ds.skipped}
    assert reasons["folder.jpg"] == "a folder, not an image file"
    assert reasons["pipe.jpg"] == "not a regular file (FIFO, socket or device)"
    assert "broken link" in reasons["gone.jpg"] and "loop.jpg" in reasons
    with pytest.raises(UnusableImage, match="not a regular file"):
        read_rgb("/dev/zero")  # refused without reading: would never end


def test_manifest_paths_stay_inside_the_dataset(tmp_path: Path, face_files: list[Path]) -> None:
    root = tmp_path / "m"
    root.mkdir()
    shutil.copy(face_files[0], root / "a.jpg")
    (root / "manifest.csv").write_text("path,identity\na.jpg,x\n../../etc/passwd,y\n/dev/zero,z\n")
    ds = load_dataset(root)
    assert [p.name for p, _ in ds.items] == ["a.jpg"]
    assert len(ds.skipped) == 2 and all("outside the dataset folder" in r for _, r in ds.skipped)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    ramp = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    path = tmp_path / "wide.png"
    Image.fromarray(ramp).save(path)
    rgb, note = read_rgb(path)
    assert rgb.shape == (64, 64, 3) and note is not None and "16-bit" in note
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255 and 120 <= rgb[32, 0, 0] <= 135  # mid-grey, not white


def test_non_utf8_identity_name_survives_a_run(tmp_path: Path, celeba: Path) -> None:
    from facesec.api import run

    root = tmp_path / "names"
    sources = sorted(p for p in celeba.iterdir() if p.is_dir())[:2]
    for name, src in zip([b"plain", b"caf\xe9-\xff"], sources, strict=True):
        folder = Path(os.fsdecode(bytes(root) + b"/" + name))
        folder.mkdir(parents=True)
        for f in sorted(src.iterdir())[:3]:
            shutil.copy(f, folder / f.name)
    spec = tmp_path / "t.yaml"
    spec.write_text(f"name: t\ndata: {{dataset: '{root}', identities: 2, images_per_identity: 3}}\n"
                    "attack: {steps: 1}\nsetting: {kind: open-set, calibration: in-sample}\n")
    results, out = run([spec], out_root=tmp_path / "reports", progress=False)
    results = results.to_json()
    csv_text = (out / results["runs"][0]["samples_csv"]).read_text(encoding="utf-8")
    assert "caf\\xe9-\\xff" in csv_text and (out / "index.html").is_file()


def test_a_corrupt_photo_is_counted_on_the_command_line_and_listed_in_the_report(
        tmp_path: Path, celeba: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from facesec.cli import main

    root = tmp_path / "people"
    for src in sorted(p for p in celeba.iterdir() if p.is_dir())[:2]:
        (root / src.name).mkdir(parents=True)
        for f in sorted(src.iterdir())[:3]:
            shutil.copy(f, root / src.name / f.name)
    broken = root / sorted(p.name for p in root.iterdir())[0] / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    spec = tmp_path / "t.yaml"
    spec.write_text(f"name: t\ndata: {{dataset: '{root}', identities: 2, images_per_identity: 3}}\n"
                    "attack: {steps: 1}\nsetting: {kind: open-set, calibration: in-sample}\n")
    assert main(["run", str(spec), "--out", str(tmp_path / "reports")]) in (0, 1)
    captured = capsys.readouterr()
    out = captured.out
    assert "1 image(s) skipped" in out and "broken.jpg" in out
    lines = captured.err.splitlines()  # stage lines, whole, for a log
    assert "run 1/1 t: started" in lines
    assert any(re.fullmatch(r"run 1/1 t: ASR \d\.\d{3}, \d+ attempts, 1 image\(s\) skipped in \d+ s", line)
               for line in lines)
    html = (tmp_path / "reports" / "t" / "index.html").read_text(encoding="utf-8")
    skipped = html[html.index('<h2 id="skipped"'):html.index('<h2 id="glossary"')]
    assert "broken.jpg" in skipped
