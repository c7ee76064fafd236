"""Model files that ship inside registry packages (npm, PyPI), fetched once into the cache and hash-checked.

`facesec models fetch NAME` runs `npm pack` or `pip download --no-deps` (or takes a file the user
downloaded: the package's .tgz or .whl, or a folder holding the files), keeps only the model files
(nothing of the package is imported or run), checks each against its sha256 and stores them in
`$FACESEC_CACHE/models/NAME/`. Loading checks the hashes again; a missing or altered file is one line
naming the command that fixes it.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from facesec import archives
from facesec.data.cache import cache_root, file_digest
from facesec.errors import NotFetched, WeightsError

NPM_TIMEOUT_S = 600
"""Also the limit for `pip download`."""
MAX_MEMBER_BYTES = 256 << 20
"""A model file larger than this in a package is refused unread."""
MAX_SCAN_MEMBERS = 20_000
MAX_UNPACKED_BYTES = 1 << 30
"""A package tarball decompressing to more is refused (@vladmandic/human 3.3.6 is a 28.6 MB .tgz of models)."""
MAX_UNPACK_SECONDS = 300.0
"""Reading a package tarball longer than this is stopped."""
"""A package with more entries than this before the model files is refused (an archive bomb)."""


@dataclass(frozen=True)
class PackagedModel:
    """Where a model's files come from (a registry package at a version) and what they must hash to."""

    name: str
    package: str
    version: str
    files: dict[str, str]
    """Path inside the package -> sha256 of that file."""
    what: str
    registry: Literal["npm", "pypi"] = "npm"

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}" if self.registry == "npm" else f"{self.package}=={self.version}"

    @property
    def archive(self) -> str:
        """What the user may download and pass with --from."""
        return "FILE.tgz" if self.registry == "npm" else "FILE.whl"


PACKAGED = {m.name: m for m in (
    PackagedModel(
        "hse-faceres", "@vladmandic/human", "3.3.6",
        {"models/faceres.json": "5b83d49c0385d2e68a05122441b94226313677cae9fcc40b9587ad50079eb4df",
         "models/faceres.bin": "2c7d2d62b76c97528b736527aa09d310ea71743c9e3e79fb6c62d4b2d73af79b"},
        "HSE FaceRes (MobileNet, VGGFace2), TF.js graph model, MIT package"),
    PackagedModel(
        "gan-face-generate", "gan-face-generate", "1.1.1",
        {"gan_face_generate/weights.tar": "0c3b90b138cfc4e8a73310b9fd5ce2a8f1f3a542a037de277412307fcd28771f"},
        "DCGAN face generator (64 x 64, trained on DigiFace-1M: non-commercial data licence), MIT package; "
        "used by morph method gan and the inversion families' generator prior", registry="pypi"),
)}


def _known(name: str) -> PackagedModel:
    if name not in PACKAGED:
        raise WeightsError(f"no packaged model named {name!r}; known: {', '.join(PACKAGED)}")
    return PACKAGED[name]


def folder(name: str) -> Path:
    """Where the model's files live once fetched."""
    return cache_root() / "models" / name


def check_fetched(name: str, field: str) -> None:
    """NotFetched naming `field` (and the fetch command) when the packaged model `name` is not fetched."""
    try:
        installed(name)
    except WeightsError as exc:
        raise NotFetched(f"field '{field}': {exc}") from exc


def installed(name: str) -> Path:
    """The fetched model's folder, every file checked; WeightsError naming the fetch command otherwise."""
    model = _known(name)
    root = folder(name)
    for member, sha in model.files.items():
        path = root / Path(member).name
        if not path.is_file():
            raise WeightsError(f"{name} is not installed ({path} missing): run `facesec models fetch {name}`")
        if file_digest(path) != sha:
            raise WeightsError(f"{name}: {path} does not match its sha256 (corrupt or edited): "
                               f"run `facesec models fetch {name}` again")
    return root


def is_installed(name: str) -> bool:
    try:
        installed(name)
    except WeightsError:
        return False
    return True


def fetch(name: str, source: str | Path | None = None, progress: bool = True) -> Path:
    """Install the model's files from `source` (a package .tgz or .whl, or a folder) or, without one, from its
    registry (`npm pack`, `pip download --no-deps`)."""
    model = _known(name)
    with tempfile.TemporaryDirectory(prefix="facesec-fetch-") as tmp:
        if source is None:
            source = (_npm_pack if model.registry == "npm" else _pip_download)(model, Path(tmp), progress)
        contents = _read_members(model, Path(source))
        root = folder(name)
        root.mkdir(parents=True, exist_ok=True)
        for member, data in contents.items():
            target = root / Path(member).name
            fd, part = tempfile.mkstemp(dir=root, suffix=".part")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(part, target)
            finally:
                Path(part).unlink(missing_ok=True)
    return installed(name)


def _npm_pack(model: PackagedModel, into: Path, progress: bool) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise WeightsError(f"npm is not installed: on a machine with npm run `npm pack {model.spec}`, copy the .tgz "
                           f"here and run `facesec models fetch {model.name} --from FILE.tgz`")
    return _fetch_archive(model, [npm, "pack", model.spec, "--pack-destination", str(into), "--silent"],
                          f"npm pack {model.spec}", into, progress)


def _pip_download(model: PackagedModel, into: Path, progress: bool) -> Path:
    """The package's wheel, downloaded without its dependencies (nothing is installed or run)."""
    command = [sys.executable, "-m", "pip", "download", model.spec, "--no-deps", "--only-binary=:all:",
               "--dest", str(into), "--quiet", "--disable-pip-version-check"]
    return _fetch_archive(model, command, f"pip download {model.spec} --no-deps", into, progress)


def _fetch_archive(model: PackagedModel, command: list[str], shown: str, into: Path, progress: bool) -> Path:
    """Run the registry client (bounded in time) and return the one archive it left in `into`."""
    if progress:
        print(f"{shown} ...", flush=True)
    try:
        done = subprocess.run(command, cwd=into, capture_output=True, text=True, timeout=NPM_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise WeightsError(f"`{shown}` did not finish in {NPM_TIMEOUT_S} s; check the network, or download the "
                           f"package elsewhere and use --from {model.archive}") from exc
    found = sorted(into.glob("*" + Path(model.archive).suffix))
    if done.returncode != 0 or len(found) != 1:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise WeightsError(f"`{shown}` failed ({last}); or download the package elsewhere and use "
                           f"--from {model.archive}")
    return found[0]


def _read_members(model: PackagedModel, source: Path) -> dict[str, bytes]:
    """The model's files from a package tarball or a folder, each checked against its sha256."""
    if source.is_dir():
        contents = {m: _from_folder(source, m) for m in model.files}
    elif source.is_file():
        contents = _from_wheel(model, source) if zipfile.is_zipfile(source) else _from_tarball(model, source)
    elif source.exists():
        raise WeightsError(f"--from {source}: not a regular file or folder")
    else:
        raise WeightsError(f"--from {source}: no such file or folder")
    for member, data in contents.items():
        got = hashlib.sha256(data).hexdigest()
        if got != model.files[member]:
            raise WeightsError(f"{source}: {member} has sha256 {got}, expected {model.files[member]} "
                               f"(not {model.spec}, or damaged)")
    return contents


def _from_folder(source: Path, member: str) -> bytes:
    """A file of the package found in an unpacked copy: at its package path, under package/, or by name."""
    for candidate in (source / member, source / "package" / member, source / Path(member).name):
        if candidate.is_file():
            if candidate.stat().st_size > MAX_MEMBER_BYTES:
                raise WeightsError(f"{candidate}: larger than {MAX_MEMBER_BYTES:,} bytes; refused")
            return candidate.read_bytes()
    raise WeightsError(f"{source}: no {member} in this folder (give the package archive or its unpacked folder)")


def _from_wheel(model: PackagedModel, source: Path) -> dict[str, bytes]:
    """The model's files read from a wheel (a zip), by their exact paths; nothing else is extracted."""
    found: dict[str, bytes] = {}
    try:
        with zipfile.ZipFile(source) as wheel:
            infos = wheel.infolist()
            if len(infos) > MAX_SCAN_MEMBERS:
                raise WeightsError(f"{source}: more than {MAX_SCAN_MEMBERS:,} entries; not a wheel")
            for info in infos:
                if info.filename not in model.files:
                    continue
                if info.is_dir() or info.file_size > MAX_MEMBER_BYTES:
                    raise WeightsError(f"{source}: {info.filename} is not a regular file of at most "
                                       f"{MAX_MEMBER_BYTES:,} bytes; refused")
                with wheel.open(info) as fh:
                    data = fh.read(MAX_MEMBER_BYTES + 1)
                if len(data) > MAX_MEMBER_BYTES:
                    raise WeightsError(f"{source}: {info.filename} is larger than its header says; refused")
                found[info.filename] = data
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise WeightsError(f"{source}: not a readable wheel ({type(exc).__name__})") from exc
    missing = sorted(set(model.files) - set(found))
    if missing:
        raise WeightsError(f"{source}: {', '.join(missing)} not in this package (expected {model.spec})")
    return found


def _from_tarball(model: PackagedModel, source: Path) -> dict[str, bytes]:
    wanted = {f"package/{m}": m for m in model.files}
    found: dict[str, bytes] = {}
    try:
        with archives.open_stream(source, MAX_UNPACKED_BYTES, MAX_UNPACK_SECONDS) as tar:
            for count, info in enumerate(tar):
                if count > MAX_SCAN_MEMBERS:
                    raise WeightsError(f"{source}: more than {MAX_SCAN_MEMBERS:,} entries; not an npm package")
                if info.name not in wanted:
                    continue
                if not info.isfile() or info.size > MAX_MEMBER_BYTES:
                    raise WeightsError(f"{source}: {info.name} is not a regular file of at most "
                                       f"{MAX_MEMBER_BYTES:,} bytes; refused")
                fh = tar.extractfile(info)
                assert fh is not None
                found[wanted[info.name]] = fh.read()
                if len(found) == len(wanted):
                    break
    except archives.TooLarge as exc:
        raise WeightsError(f"{source}: refused: {exc}; not an npm package of a face model") from exc
    except (tarfile.TarError, OSError, EOFError, lzma.LZMAError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0].rstrip(":")
        raise WeightsError(f"{source}: not a readable package tarball ({first})") from exc
    missing = sorted(set(model.files) - set(found))
    if missing:
        raise WeightsError(f"{source}: {', '.join(missing)} not in this package (expected {model.spec})")
    return found
