"""Hostile inputs: a threat model must not run code unless the person running it opted in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HOSTILE = """name: hostile
target: {{name: "os:system", command: "touch {marker}"}}
"""


def _facesec(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "facesec.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, check=False)


def test_module_factory_in_a_threat_model_is_refused_without_opt_in(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    spec = tmp_path / "hostile.yaml"
    spec.write_text(HOSTILE.format(marker=marker))
    for command in (["validate", str(spec)], ["run", str(spec), "--out", str(tmp_path / "reports")]):
        done = _facesec(*command, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "'os:system' is a package.module:factory" in lines[0] and "--trust-code" in lines[0]
        assert not marker.exists()
    assert not (tmp_path / "reports").exists()


def test_trusted_factory_is_allowed(tmp_path: Path, celeba: Path) -> None:
    (tmp_path / "my_factories.py").write_text("from facesec.recognizers import load\n\n"
                                              "def small():\n    return load('iresnet18')\n")
    spec = tmp_path / "mine.yaml"
    spec.write_text("name: mine\ntarget: my_factories:small\n")
    refused = _facesec("validate", str(spec), cwd=tmp_path)
    assert refused.returncode == 2 and "--trust-code" in refused.stderr
    allowed = _facesec("validate", str(spec), "--trust-code", cwd=tmp_path)
    assert allowed.returncode == 0, allowed.stderr
