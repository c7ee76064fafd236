"""`facesec data`: list (with a hint when empty), info, import of someone's photos, and fetch of an LFW-style archive
(from a file, and downloaded with resume from a local server): what is skipped is listed with its reason, hostile
input is refused, and nothing is written outside the data folder."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import os
import shutil
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facesec.cli import main
from facesec.data import fetch as F
from facesec.data.catalog import describe
from facesec.data.dataset import load_dataset
from facesec.data.importer import import_dataset
from facesec.errors import DataError
from facesec.protocols import pair_counts


@pytest.fixture
def data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No $FACESEC_DATA: the default data folder, under a temporary XDG data home."""
    monkeypatch.delenv("FACESEC_DATA", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("FACESEC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "xdg" / "facesec" / "datasets"


@pytest.fixture(scope="module")
def photos(celeba: Path) -> list[tuple[str, list[Path]]]:
    """3 celeba-mini identities with 3 photos each (read from the shared data, never copied into the project)."""
    people = sorted(p for p in celeba.resolve().iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 3)[:3]
    return [(p.name, sorted(p.glob("*.jpg"))[:3]) for p in people]  # absolute: CI's FACESEC_DATA is relative


def _source(tmp_path: Path, photos: list[tuple[str, list[Path]]]) -> Path:
    """Identity folders, plus a corrupt photo, a photo without a face, a stray text file and a loose file."""
    src = tmp_path / "mine"
    for name, files in photos:
        (src / name).mkdir(parents=True)
        for f in files:
            shutil.copy(f, src / name / f.name)
    first = src / photos[0][0]
    (first / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(first / "wall.png")
    (first / "notes.txt").write_text("hello")
    (src / "loose.jpg").write_bytes(photos[0][1][0].read_bytes())
    return src


def test_list_is_empty_with_a_hint(data_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert str(data_home) in out and "facesec data import" in out and "facesec data fetch lfw" in out
    assert main(["list"]) == 0  # the overview says the same, and lists the attack families
    out = capsys.readouterr().out
    assert "no datasets" in out and "  backdoor: backdoor_asr" in out and "  pixel: attack_success_rate" in out
    assert "  jpeg (input; pixel): quality" in out and "  d-mad (detector; morph): c, bpcer" in out


def test_import_copies_usable_photos_and_lists_the_rest(data_home: Path, tmp_path: Path, photos,  # type: ignore[no-untyped-def]
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    done = import_dataset(_source(tmp_path, photos), "mine")
    assert done.root == data_home / "mine" and done.images == 9 and done.identities == 3
    reasons = dict((Path(p).name, r) for p, r in done.skipped)
    assert reasons.keys() == {"broken.jpg", "wall.png", "notes.txt", "loose.jpg"}
    assert "no face detected" in reasons["wall.png"] and "suffix" in reasons["notes.txt"]
    assert "identity folder" in reasons["loose.jpg"]
    ds = load_dataset("mine")  # found by name in the default data folder
    assert len(ds.items) == 9 and set(ds.identities) == {name for name, _ in photos}
    info = describe("mine", check=True)
    assert (info.identities, info.images, info.genuine_pairs, info.impostor_pairs) == (3, 9, 9, 27)
    assert info.smallest_fmr == pytest.approx(10 / 27) and len(info.skipped) == 4
    assert main(["data", "info", "mine"]) == 0 and "at import: no face detected" in capsys.readouterr().out
    with pytest.raises(DataError, match="already exists"):
        import_dataset(tmp_path / "mine", "mine")


def test_import_from_a_csv_keeps_labels_and_stays_inside(data_home: Path, tmp_path: Path, photos) -> None:  # type: ignore[no-untyped-def]
    rows = ["path,identity"] + [f"{f},../../{name}/evil" for name, files in photos for f in files[:2]]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    done = import_dataset(tmp_path / "list.csv", "listed", detect=False, follow_links=True)  # absolute paths
    assert done.images == 6 and not done.skipped
    written = [p for p in (data_home.parent.parent).rglob("*") if p.is_file()]
    assert all(p.resolve().is_relative_to(done.root.resolve()) for p in written)
    assert set(load_dataset("listed").identities) == {f"../../{name}/evil" for name, _ in photos}


def test_import_takes_nothing_from_outside_source(data_home: Path, tmp_path: Path, photos,  # type: ignore[no-untyped-def]
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Photos reached through a link out of SOURCE, and CSV rows naming files outside the CSV's folder (absolute or
    ../), are skipped with the reason; skipped.csv defuses cells a spreadsheet would run as formulas."""
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(photos[1][1][0], outside / "private.jpg")
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    for f in photos[0][1]:
        shutil.copy(f, src / "a" / f.name)
    (src / "a" / "linked.jpg").symlink_to(outside / "private.jpg")
    (src / "b").symlink_to(outside)
    (src / "a" / "x.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "=HYPERLINK(1)").symlink_to(src)  # a SOURCE named like a formula: every skipped path starts so
    done = import_dataset(Path("=HYPERLINK(1)"), "linked", detect=False)
    assert done.images == 3 and set(load_dataset("linked").identities) == {"a"}
    reasons = {Path(p).name: r for p, r in done.skipped}
    assert "outside" in reasons["linked.jpg"] and "outside" in reasons["private.jpg"] and "--follow-links" in \
        reasons["linked.jpg"]
    assert "\n'=HYPERLINK(1)/a/x.txt,not an image file name" in (done.root / "skipped.csv").read_text()
    rows = ["path,identity", f"{photos[0][1][0]},x", "../outside/private.jpg,x", "ok.jpg,x"]
    listing = tmp_path / "list" / "list.csv"
    listing.parent.mkdir()
    shutil.copy(photos[0][1][1], listing.parent / "ok.jpg")
    listing.write_text("\n".join(rows) + "\n")
    done = import_dataset(listing, "listed", detect=False)
    assert done.images == 1 and len([r for _, r in done.skipped if "outside" in r]) == 2


@pytest.mark.parametrize(("name", "message"), [("../up", "--name"), (".hidden", "--name"), ("a/b", "--name")])
def test_import_refuses_unsafe_names(data_home: Path, tmp_path: Path, name: str, message: str) -> None:
    (tmp_path / "src" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match=message):
        import_dataset(tmp_path / "src", name)


def test_pair_counts() -> None:
    assert pair_counts([2, 3]) == (1 + 3, 6)
    assert pair_counts([1]) == (0, 0)


Digests = tuple[tuple[str, str], ...]


def _lfw_archive(path: Path, photos: list[tuple[str, list[Path]]], extra: tarfile.TarInfo | None = None) -> Digests:
    """An LFW-style lfw.tgz (lfw/<Name>/<Name>_0001.jpg) of these photos; returns its published digests."""
    with tarfile.open(path, "w:gz") as tar:
        for name, files in photos:
            for i, f in enumerate(files, 1):
                tar.add(f, arcname=f"lfw/Person_{name}/Person_{name}_{i:04d}.jpg")
        if extra is not None:
            tar.addfile(extra, io.BytesIO(b"x" * extra.size) if extra.isfile() else None)
    return (("sha256", hashlib.sha256(path.read_bytes()).hexdigest()),)


def test_fetch_from_a_file_checks_and_unpacks(data_home: Path, tmp_path: Path, photos) -> None:  # type: ignore[no-untyped-def]
    digests = _lfw_archive(tmp_path / "lfw.tgz", photos)
    with pytest.raises(DataError, match="is not the published"):
        F.fetch("lfw", source=tmp_path / "lfw.tgz")  # not the official archive: neither digest matches
    assert not (data_home / "lfw").exists()
    where = F.fetch("lfw", source=tmp_path / "lfw.tgz", digests=digests)
    assert where == data_home / "lfw" and len(load_dataset("lfw").items) == 9
    assert not list(data_home.glob(".*"))  # no partial folder left


@pytest.mark.parametrize("kind", ["symlink", "escape", "outside"])
def test_fetch_refuses_hostile_archives(data_home: Path, tmp_path: Path, photos, kind: str) -> None:  # type: ignore[no-untyped-def]
    entry = tarfile.TarInfo({"symlink": "lfw/x/link.jpg", "escape": "lfw/../../evil.jpg",
                             "outside": "other/evil.jpg"}[kind])
    if kind == "symlink":
        entry.type, entry.linkname = tarfile.SYMTYPE, "/etc/passwd"
    else:
        entry.size = 4
    digests = _lfw_archive(tmp_path / "bad.tgz", photos, entry)
    with pytest.raises(DataError, match="unexpected entry"):
        F.fetch("lfw", source=tmp_path / "bad.tgz", digests=digests)
    assert not (data_home / "lfw").exists() and not list(data_home.glob(".*"))
    assert not (tmp_path / "evil.jpg").exists()


def test_fetch_reads_dataset_archives_as_a_bounded_stream(data_home: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A dataset archive is one bounded stream, as package tarballs are: a long-name header of 256 MiB in a
    small .tgz is refused before it is read, and so is unpacking past the time allowed; no partial folder stays."""
    import gzip
    import tracemalloc

    bomb = tmp_path / "long.tgz"
    header = tarfile.TarInfo("././@LongLink")
    header.type, header.size = tarfile.GNUTYPE_LONGNAME, 256 << 20
    with gzip.open(bomb, "wb") as gz:
        gz.write(header.tobuf(format=tarfile.USTAR_FORMAT) + bytes(64 << 20))
    digests = (("md5", hashlib.md5(bomb.read_bytes(), usedforsecurity=False).hexdigest()),)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"refused: an extended header of 268,435,456 bytes"):
            F.fetch("lfw", source=bomb, digests=digests)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20
    monkeypatch.setattr(F, "UNPACK_SECONDS", 0.0)
    with pytest.raises(DataError, match=r"refused: reading it took longer than the time allowed"):
        F.fetch("lfw", source=bomb, digests=digests)
    assert not (data_home / "lfw").exists() and not list(data_home.glob(".*"))


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves one file, honouring `Range: bytes=N-` (unless `ignore_range`); with `cut`, the first response stops
    after that many bytes although its Content-Length promised all; remembers the ranges asked."""

    body = b""
    ranges: list[str] = []
    ignore_range = False
    cut: int | None = None

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        asked = None if self.ignore_range else self.headers.get("Range")
        self.ranges.append(self.headers.get("Range") or "")
        start = int(asked.split("=")[1].rstrip("-")) if asked else 0
        self.send_response(206 if asked else 200)
        self.send_header("Content-Length", str(len(self.body) - start))
        if asked:
            self.send_header("Content-Range", f"bytes {start}-{len(self.body) - 1}/{len(self.body)}")
        self.end_headers()
        end = len(self.body) if type(self).cut is None else start + type(self).cut
        type(self).cut = None
        self.wfile.write(self.body[start:end])

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path, photos) -> Iterator[tuple[str, Digests, type[_RangeHandler]]]:  # type: ignore[no-untyped-def]
    digests = _lfw_archive(tmp_path / "served.tgz", photos)
    handler = type("Handler", (_RangeHandler,), {"body": (tmp_path / "served.tgz").read_bytes(), "ranges": []})
    httpd = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/lfw.tgz", digests, handler
    httpd.shutdown()


def test_download_resumes_a_partial_file(data_home: Path, tmp_path: Path, server) -> None:  # type: ignore[no-untyped-def]
    url, digests, handler = server
    part = tmp_path / "cache" / "downloads" / "lfw.tgz.part"
    part.parent.mkdir(parents=True)
    half = len(handler.body) // 2
    part.write_bytes(handler.body[:half])  # an interrupted download
    F.fetch("lfw", url=url, digests=digests)
    assert handler.ranges == [f"bytes={half}-"]
    assert (tmp_path / "cache" / "downloads" / "lfw.tgz").read_bytes() == handler.body
    assert len(load_dataset("lfw").items) == 9


def test_fetch_names_the_way_out_when_the_server_is_unreachable(data_home: Path) -> None:
    with pytest.raises(DataError, match="--from FILE"):
        F.fetch("lfw", url="http://127.0.0.1:9/lfw.tgz")


def test_without_facesec_data_the_readme_path_leads_to_a_run(data_home: Path, tmp_path: Path, photos,  # type: ignore[no-untyped-def]
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """README's Data section from nothing: `data list` is empty, `data fetch lfw --from` a local archive, and the
    quick start runs on it (shrunk to this archive's size)."""
    digests = _lfw_archive(tmp_path / "lfw.tgz", photos)
    monkeypatch.setitem(F.ARCHIVES, "lfw", dataclasses.replace(F.ARCHIVES["lfw"], digests=digests))
    assert main(["data", "list"]) == 0 and "no datasets" in capsys.readouterr().out
    assert main(["data", "fetch", "lfw", "--from", str(tmp_path / "lfw.tgz")]) == 0
    assert "dataset: lfw" in capsys.readouterr().out
    quickstart = Path(__file__).parent.parent / "threat_models" / "quickstart.yaml"
    # shrunk to the archive's 9 photos: no room for the quickstart's 100 calibration identities, so in sample
    code = main(["run", str(quickstart), "--out", str(tmp_path / "reports"), "--set", "data.dataset=lfw",
                 "--set", "data.identities=3", "--set", "data.images_per_identity=3", "--set", "attack.steps=2",
                 "--set", "setting.calibration=in-sample"])
    assert code in (0, 1)  # ran; the gate's verdict is the model's business
    out = capsys.readouterr().out
    assert "ASR" in out and (tmp_path / "reports" / "quickstart" / "index.html").is_file()


def test_a_dropped_download_is_kept_and_resumed(data_home: Path, tmp_path: Path, server) -> None:  # type: ignore[no-untyped-def]
    """The connection closes after 1,000 bytes: the command says so and keeps them; the rerun asks for the rest."""
    url, digests, handler = server
    handler.cut = 1000
    with pytest.raises(DataError, match="stopped at 1,000 of"):
        F.fetch("lfw", url=url, digests=digests)
    assert not (data_home / "lfw").exists()
    F.fetch("lfw", url=url, digests=digests)
    assert handler.ranges == ["", "bytes=1000-"] and len(load_dataset("lfw").items) == 9


def test_a_server_that_ignores_range_restarts_the_download(data_home: Path, tmp_path: Path, server) -> None:  # type: ignore[no-untyped-def]
    url, digests, handler = server
    handler.ignore_range = True
    part = tmp_path / "cache" / "downloads" / "lfw.tgz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"garbage from an older attempt")
    F.fetch("lfw", url=url, digests=digests)
    assert (tmp_path / "cache" / "downloads" / "lfw.tgz").read_bytes() == handler.body


def test_import_takes_odd_names_bom_csvs_and_skips_repeats(data_home: Path, tmp_path: Path, photos) -> None:  # type: ignore[no-untyped-def]
    """A folder name that is not UTF-8, a CSV saved with a byte-order mark, a row listed twice and a listed file
    that is not an image: imported or skipped with a reason, never a crash."""
    src = tmp_path / "odd"
    folder = Path(os.fsdecode(bytes(src) + b"/Ren\xe9"))
    folder.mkdir(parents=True)
    for f in photos[0][1]:
        shutil.copy(f, folder / f.name)
    done = import_dataset(src, "odd", detect=False)
    assert done.images == 3 and done.identities == 1
    files = [f for _, fs in photos for f in fs]
    rows = [f"{files[0]},a", f"{files[0]},a", f"{files[1]},b", f"{tmp_path / 'notes.txt'},b"]
    (tmp_path / "bom.csv").write_text("\ufeffpath,identity\n" + "\n".join(rows) + "\n", encoding="utf-8")
    done = import_dataset(tmp_path / "bom.csv", "bom", detect=False, follow_links=True)  # absolute paths
    assert done.images == 2
    assert sorted(r.split(" ")[0] for _, r in done.skipped) == ["listed", "not"]


def test_import_refuses_an_unreadable_csv_in_one_line(data_home: Path, tmp_path: Path) -> None:
    (tmp_path / "big.csv").write_text("path,identity\n" + "x" * 200_000 + ".jpg,a\n")
    with pytest.raises(DataError, match="line .*not a readable CSV"):
        import_dataset(tmp_path / "big.csv", "big")


def test_info_says_none_below_ten_impostor_pairs(data_home: Path, tmp_path: Path, photos) -> None:  # type: ignore[no-untyped-def]
    """2 people x 2 photos: 4 impostor pairs support no FMR (a threshold needs about 10 impostor scores above it);
    a third person's 2 photos make 12 pairs, enough for 10 / 12."""
    for k in (2, 3):
        src = tmp_path / f"src{k}"
        for name, files in photos[:k]:
            (src / name).mkdir(parents=True)
            for f in files[:2]:
                shutil.copy(f, src / name / f.name)
        import_dataset(src, f"n{k}", detect=False)
    small, larger = describe("n2"), describe("n3")
    assert small.impostor_pairs == 4 and small.smallest_fmr is None
    assert "none (fewer than 10 impostor pairs)" in "\n".join(small.lines())
    assert larger.impostor_pairs == 12 and larger.smallest_fmr == pytest.approx(10 / 12)


def test_a_download_larger_than_the_archive_is_stopped_and_deleted(data_home: Path, tmp_path: Path, server,  # type: ignore[no-untyped-def]
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A URL that serves more than the archive can be (e.g. file:///dev/zero) fills nothing: stopped, deleted."""
    url, digests, handler = server
    monkeypatch.setitem(F.ARCHIVES, "lfw", dataclasses.replace(F.ARCHIVES["lfw"], size=len(handler.body) // 2))
    with pytest.raises(DataError, match="more than the"):
        F.fetch("lfw", url=url, digests=digests)
    assert not list((tmp_path / "cache" / "downloads").iterdir())


_IMPORT_PEAK = """
import sys
from facesec.data.importer import import_dataset
from facesec.errors import DataError
try:
    import_dataset(sys.argv[1], "big")
except DataError as exc:
    print(exc)
print(int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1]) // 1024)
"""


def test_a_36_megapixel_photo_is_checked_within_a_gigabyte(data_home: Path, tmp_path: Path) -> None:
    """A blank 6000 x 6000 PNG (120 kB) made `data import` upsample it for the detector: 16 s and 1.8 GB here.
    The detector now upsamples only within 4 megapixels: the same photo takes ~0.5 GB (VmHWM of a process
    that only imports it; not ru_maxrss, which also counts the peak of the process that started it)."""
    (tmp_path / "src" / "person_a").mkdir(parents=True)
    Image.new("RGB", (6000, 6000), (128, 128, 128)).save(tmp_path / "src" / "person_a" / "blank.png")
    done = subprocess.run([sys.executable, "-c", _IMPORT_PEAK, str(tmp_path / "src")], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "FACESEC_DATA": str(data_home)})
    message, peak_mb = done.stdout.strip().splitlines()
    assert "blank.png: no face detected" in message
    assert int(peak_mb) < 1024, peak_mb


def test_import_and_fetch_never_write_into_a_shared_data_folder(data_home: Path, tmp_path: Path, photos,  # type: ignore[no-untyped-def]
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """With $FACESEC_DATA pointing at a shared folder (the quick start's ../shared/data), a user's photos go to
    their own data folder, where runs still find them by name; `--to` writes elsewhere on purpose."""
    shared = tmp_path / "shared"
    (shared / "someone").mkdir(parents=True)
    monkeypatch.setenv("FACESEC_DATA", str(shared))
    assert main(["data", "import", str(_source(tmp_path, photos)), "--name", "mine", "--no-detect"]) == 0
    assert (data_home / "mine" / "manifest.csv").is_file() and sorted(p.name for p in shared.iterdir()) == ["someone"]
    assert len(load_dataset("mine").items) == 10  # found by name: the per-user folder is searched after $FACESEC_DATA
    assert main(["data", "import", str(tmp_path / "mine"), "--name", "theirs", "--no-detect", "--to", str(shared)]) == 0
    assert (shared / "theirs" / "manifest.csv").is_file()
    digests = _lfw_archive(tmp_path / "lfw.tgz", photos)
    monkeypatch.setitem(F.ARCHIVES, "lfw", dataclasses.replace(F.ARCHIVES["lfw"], digests=digests))
    assert F.fetch("lfw", source=tmp_path / "lfw.tgz") == data_home / "lfw" and not (shared / "lfw").exists()


def test_import_refuses_a_name_another_data_folder_holds(data_home: Path, tmp_path: Path, photos,  # type: ignore[no-untyped-def]
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """$FACESEC_DATA is searched first: an import under a name it already holds would never be the one runs use."""
    shared = tmp_path / "shared"
    (shared / "mine" / "someone").mkdir(parents=True)
    monkeypatch.setenv("FACESEC_DATA", str(shared))
    with pytest.raises(DataError, match=rf"dataset 'mine' already exists at {shared / 'mine'}"):
        import_dataset(_source(tmp_path, photos), "mine", detect=False)
    assert not (data_home / "mine").exists()
