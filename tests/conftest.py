"""Shared fixtures: real faces from $FACESEC_DATA, a private cache, the dlib recognizer."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from facesec.data.dataset import load_dataset

USER_CACHE = Path(os.environ.get("FACESEC_CACHE") or Path.home() / ".cache" / "facesec")
"""Where `facesec models fetch` put model files before the tests switched to a private cache."""


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["FACESEC_CACHE"] = str(tmp_path_factory.mktemp("facesec-cache"))


def _packaged(name: str, marker: str) -> Path:
    """A packaged model's fetched files, copied into the private cache. CI fetches them first (`.ci/run`), so
    there a missing model fails; elsewhere the tests that need it are skipped with the command to run."""
    source = USER_CACHE / "models" / name
    if not (source / marker).is_file():
        message = f"{name} is not fetched: run `facesec models fetch {name}`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    target = Path(os.environ["FACESEC_CACHE"]) / "models" / name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, target)
    return target


@pytest.fixture(scope="session")
def hse_installed(_private_cache: None) -> Path:
    """hse-faceres's fetched files in the private cache (see `_packaged`)."""
    return _packaged("hse-faceres", "faceres.bin")


@pytest.fixture(scope="session")
def gan_installed(_private_cache: None) -> Path:
    """gan-face-generate's fetched generator checkpoint in the private cache (see `_packaged`)."""
    return _packaged("gan-face-generate", "weights.tar")


@pytest.fixture(scope="session")
def celeba() -> Path:
    """The celeba-mini folder; tests that need real faces are skipped only when FACESEC_DATA is unset."""
    root = os.environ.get("FACESEC_DATA")
    if not root:
        pytest.skip("FACESEC_DATA is not set (CI sets it to ../shared/data)")
    path = Path(root) / "celeba-mini"
    assert path.is_dir(), f"FACESEC_DATA={root} has no celeba-mini"
    return path


@pytest.fixture(scope="session")
def face_files(celeba: Path) -> list[Path]:
    """A few real face images from different identities."""
    ds = load_dataset(celeba)
    by_id: dict[str, Path] = {}
    for path, ident in ds.items:
        by_id.setdefault(ident, path)
    return list(by_id.values())[:6]


@pytest.fixture(scope="session")
def dlib_recognizer():  # type: ignore[no-untyped-def]
    from facesec.recognizers.base import load

    return load("dlib-resnet")
