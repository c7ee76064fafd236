"""--redact's pseudonyms: where names are found in what a suite writes, and the key behind them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from facesec.errors import ConfigError
from facesec.redaction import KEY_FILE, Pseudonyms, _key


def test_names_are_replaced_in_name_fields_and_image_paths_only() -> None:
    names = Pseudonyms(["7201", "Alice", "pixel", "a"], key=b"k" * 32)
    alice, number = names.of("Alice"), names.of("7201")
    record = {"family": "pixel", "identity": "Alice", "contributor_a": "7201", "by_identity": {"Alice": 1},
              "gallery": [{"a": "runs/x/0_a.png", "probe_path": "Alice/Alice_0003.JPG"}],
              "error": "/data/set/7201/000123.jpg: cannot read", "dimensions": {"perturbation": "pixel linf 8/255"}}
    assert names.deep(record) == {
        "family": "pixel", "identity": alice, "contributor_a": number, "by_identity": {alice: 1},
        "gallery": [{"a": "runs/x/0_a.png", "probe_path": f"{alice}/{alice}_0003.JPG"}],
        "error": f"/data/set/{number}/000123.jpg: cannot read", "dimensions": {"perturbation": "pixel linf 8/255"}}
    assert names.text("ALICE/x.jpg") == "ALICE/x.jpg" and alice.startswith("person-") and len(alice) == 15


def test_the_key_is_made_once_and_a_broken_one_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACESEC_CACHE", str(tmp_path))
    key = _key()
    assert len(key) == 32 and _key() == key and (tmp_path / KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert Pseudonyms(["x"]).of("x") == Pseudonyms(["x"], key=key).of("x")  # stable across suites
    (tmp_path / KEY_FILE).write_bytes(b"")  # a key cut short would make pseudonyms anyone can check
    with pytest.raises(ConfigError, match="not a pseudonym key"):
        _key()
    assert not [p for p in os.listdir(tmp_path) if p != KEY_FILE]  # no temporary file left
