"""`facesec data fetch`: a public face dataset's archive downloaded (resumably, with progress) or taken from a file
the user downloaded, checked against its published checksum, and unpacked safely into the data folder."""

from __future__ import annotations

import hashlib
import http.client
import lzma
import shutil
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from facesec import archives
from facesec.data.cache import cache_root
from facesec.data.dataset import data_roots, default_root
from facesec.errors import DataError
from facesec.progress import bar

CHUNK = 1 << 20
UNPACK_SECONDS = 1800
"""Unpacking stops after this long (LFW's 173 MB unpacks in well under a minute)."""
TIMEOUT_S = 60
"""Seconds a stalled connection may stay silent before the download stops (rerun to resume it)."""


@dataclass(frozen=True)
class Archive:
    """A dataset archive as its publisher describes it."""

    url: str
    filename: str
    """What the download is saved as in the cache's downloads folder."""
    digests: tuple[tuple[str, str], ...]
    """(hashlib algorithm, hex digest) pairs as published; an archive is accepted when one of them matches."""
    size: int
    """Bytes: the download is refused beyond it, and so is unpacking beyond `unpacked`."""
    unpacked: int
    members: int
    folder: str
    """The archive's top folder, which holds the identity folders."""
    about: str


ARCHIVES = {
    "lfw": Archive(
        # the publisher's server speaks plain http only: downloads come over https from scikit-learn's mirror
        # of the same lfw.tgz (the SHA-256 scikit-learn publishes); a copy from the publisher passes by its MD5
        url="https://ndownloader.figshare.com/files/5976018", filename="lfw.tgz",
        digests=(("sha256", "055f7d9c632d7370e6fb4afc7468d40f970c34a80d4c6f50ffec63f5a8d536c0"),
                 ("md5", "a17d05bd522c52d84eca14327a23d494")),
        size=200_000_000, unpacked=400_000_000, members=20_000, folder="lfw",
        about="Labeled Faces in the Wild (Huang et al., 2007): 13,233 photos of 5,749 people, 250 x 250, "
              "identity folders; for research; see http://vis-www.cs.umass.edu/lfw/"),
}


def fetch(name: str, source: Path | None = None, url: str | None = None,
          digests: tuple[tuple[str, str], ...] | None = None, progress: bool = False, to: Path | None = None) -> Path:
    """The dataset `name` unpacked into `to` (default: the per-user data folder; nothing done when a data
    folder holds it already): from `source` (an archive file) or downloaded from `url` (default: the
    catalogue's), checked against `digests` (default: the published ones) before anything is unpacked."""
    if name not in ARCHIVES:
        raise DataError(f"unknown dataset {name!r} to fetch; known: {', '.join(ARCHIVES)} (your own photos: "
                        "`facesec data import`)")
    archive = ARCHIVES[name]
    there = [root / name for root in ([to] if to else data_roots()) if (root / name).is_dir()]
    if there:
        return there[0]
    final = (to or default_root()) / name
    path = source if source is not None else _download(url or archive.url, archive, name, progress)
    if not path.is_file():
        raise DataError(f"--from {path}: no such file")
    published = digests or archive.digests
    actual = _digests(path, [algorithm for algorithm, _ in published], progress)
    if not any(actual[algorithm] == digest.lower() for algorithm, digest in published):
        if source is None:
            path.unlink()  # a damaged download is not kept: the next run downloads it again
        again = "deleted; rerun to download it again" if source is None else "other layouts: `facesec data import`"
        found = ", ".join(f"{a.upper()} {actual[a]}" for a, _ in published)
        wanted = " or ".join(f"{a.upper()} {d}" for a, d in published)
        raise DataError(f"{path}: {found} is not the published {wanted}; the file is damaged or not the "
                        f"official archive ({again})")
    _unpack(path, archive, final, progress)
    return final


def _digests(path: Path, algorithms: list[str], progress: bool) -> dict[str, str]:
    """Each algorithm's hex digest of the file, read once."""
    hashes = {a: hashlib.new(a, usedforsecurity=False) for a in algorithms}
    with path.open("rb") as fh, bar(total=path.stat().st_size, desc="checking", unit="B", unit_scale=True,
                                    enabled=progress) as shown:
        while block := fh.read(CHUNK):
            for h in hashes.values():
                h.update(block)
            shown.update(len(block))
    return {a: h.hexdigest() for a, h in hashes.items()}


def _download(url: str, archive: Archive, name: str, progress: bool) -> Path:
    """The archive in the cache's downloads folder; a `.part` file left by an interrupted download is resumed
    (HTTP Range) when the server allows it."""
    folder = cache_root() / "downloads"
    folder.mkdir(parents=True, exist_ok=True)
    done = folder / archive.filename
    if done.is_file():
        return done
    part = done.with_name(done.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)  # noqa: S310 (http(s) or a file the user named)
    except (urllib.error.URLError, OSError) as exc:
        raise DataError(f"cannot download {url} ({getattr(exc, 'reason', exc)}); download the archive yourself "
                        f"and run `facesec data fetch {name} --from FILE`") from exc
    with response:
        resumed = bool(have) and getattr(response, "status", 200) == 206
        if resumed and not str(response.headers.get("Content-Range", "")).startswith(f"bytes {have}-"):
            raise DataError(f"{url}: the server resumed from another offset than {have:,}; delete {part} and "
                            "rerun to download it whole")
        length = response.headers.get("Content-Length")
        expected = (have if resumed else 0) + int(length) if length and length.isdigit() else None
        if expected is not None and expected > archive.size:
            raise DataError(f"{url}: {expected:,} bytes, more than the {archive.size:,} this archive has")
        written = have if resumed else 0
        try:
            with part.open("ab" if resumed else "wb") as fh, bar(total=expected, initial=written, unit="B",
                                                                  unit_scale=True, desc=f"downloading {name}",
                                                                  enabled=progress) as shown:
                while block := response.read(CHUNK):
                    written += len(block)
                    if written > archive.size:
                        fh.close()
                        part.unlink()  # not this archive: nothing to resume, and its bytes are not kept
                        raise DataError(f"{url}: more than the {archive.size:,} bytes this archive has; stopped "
                                        "and deleted")
                    fh.write(block)
                    shown.update(len(block))
        except (OSError, http.client.HTTPException) as exc:
            raise DataError(f"{url}: the download stopped at {written:,} bytes ({exc}); rerun the same command "
                            "to resume it") from exc
    if expected is not None and written != expected:
        raise DataError(f"{url}: the download stopped at {written:,} of {expected:,} bytes; rerun the same command "
                        "to resume it")
    part.replace(done)
    return done


def _check_member(path: Path, m: tarfile.TarInfo, archive: Archive) -> None:
    parts = Path(m.name).parts
    if not (m.isfile() or m.isdir()) or not parts or parts[0] != archive.folder or ".." in parts \
            or Path(m.name).is_absolute():
        raise DataError(f"{path}: unexpected entry {m.name!r} (links, devices and paths outside "
                        f"'{archive.folder}/' are refused)")


def _unpack(path: Path, archive: Archive, final: Path, progress: bool) -> None:
    """Only regular files and folders under the archive's top folder, within its size and count limits, read
    as one bounded stream (archives.open_stream: header size, decompressed bytes, time) into a hidden folder
    and moved into place when complete."""
    partial = final.with_name(f".{final.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        # the archive's own bytes, plus 512-byte headers and padding per member
        with archives.open_stream(path, archive.unpacked + 1024 * archive.members, UNPACK_SECONDS) as tar:
            size = 0
            for count, m in enumerate(bar(tar, desc="unpacking", unit="file", enabled=progress), start=1):
                if count > archive.members:
                    raise DataError(f"{path}: more than {archive.members:,} entries, more than this dataset has")
                _check_member(path, m, archive)
                size += m.size
                if size > archive.unpacked:
                    raise DataError(f"{path}: unpacks to more than {archive.unpacked:,} bytes, more than this "
                                    "dataset has")
                tar.extract(m, partial, filter="data")
    except archives.TooLarge as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise DataError(f"{path}: refused: {exc}") from exc
    except (tarfile.TarError, EOFError, OSError, lzma.LZMAError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise DataError(f"{path}: not a readable archive ({(str(exc).splitlines() or [type(exc).__name__])[0]})") \
            from exc
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    (partial / archive.folder).rename(final)
    shutil.rmtree(partial, ignore_errors=True)
