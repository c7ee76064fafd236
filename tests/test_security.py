"""Hostile inputs: a threat model must not run code unless the person running it opted in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

HOSTILE = """name: hostile
target: {{name: "os:system", command: "touch {marker}"}}
"""


def _facesec(*args: str, cwd: Path, data: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"FACESEC_DATA": str(data)} if data else {})}  # absolute: cwd is elsewhere
    return subprocess.run([sys.executable, "-m", "facesec.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, check=False, env=env)


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
    spec.write_text("name: mine\ntarget: my_factories:small\nsetting: {kind: open-set, calibration: in-sample}\n")
    refused = _facesec("validate", str(spec), cwd=tmp_path, data=celeba.parent.resolve())
    assert refused.returncode == 2 and "--trust-code" in refused.stderr
    allowed = _facesec("validate", str(spec), "--trust-code", cwd=tmp_path, data=celeba.parent.resolve())
    assert allowed.returncode == 0, allowed.stderr


class _Writes(torch.nn.Module):
    """A TorchScript model whose forward writes a file: what a hostile .pt can do once loaded and run."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.save(x, self.marker)
        return x.flatten(1)[:, :128]


def test_torchscript_needs_trust_because_it_can_write_files(tmp_path: Path, celeba: Path) -> None:
    """A TorchScript file is a program (its forward wrote a file here), so it is loaded only with --trust-code."""
    import pytest

    from facesec.errors import ConfigError
    from facesec.recognizers.base import load
    from facesec.recognizers.trust import trusting_code

    marker, model_file = tmp_path / "written", tmp_path / "model.pt"
    torch.jit.script(_Writes(str(marker))).save(str(model_file))
    with pytest.raises(ConfigError, match="a TorchScript file is a program"):
        load({"name": "torchscript", "weights": str(model_file), "embedding_size": 128})
    spec = tmp_path / "ts.yaml"
    spec.write_text(f"name: ts\ntarget: {{name: torchscript, weights: {model_file}, embedding_size: 128}}\n")
    done = _facesec("validate", str(spec), cwd=tmp_path, data=celeba.parent.resolve())
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "--trust-code" in lines[0] and "ONNX" in lines[0], done.stderr
    assert not marker.exists()
    with trusting_code():
        model = load({"name": "torchscript", "weights": str(model_file), "embedding_size": 128, "input_size": 8})
        model(torch.rand(1, 3, 8, 8))
    assert marker.is_file()  # what trusting it allowed


BAD_SPECS = {
    "eps_inf": ("perturbation: {eps: .inf}\n", "field 'perturbation.eps'"),
    "eps_huge": ("perturbation: {eps: 1e308}\n", "perturbation.eps: 1e+308 is beyond any linf change"),
    "eps_two": ("perturbation: {eps: 2}\n", "perturbation.eps: 2 is beyond any linf change"),
    "eps_bool": ("perturbation: {eps: true}\n", "field 'perturbation.eps': expected a number"),
    "seed_negative": ("data: {seed: -1}\n", "field 'data.seed'"),
    "seed_huge": (f"data: {{seed: {2**70}}}\n", "field 'data.seed'"),
    "identities_huge": ("data: {identities: 1e30}\n", "field 'data.identities'"),
    "steps_huge": ("attack: {steps: 1000000000000}\n", "field 'attack.steps'"),
    "gate_nan": ("gates: [{metric: attack_success_rate, value: .nan}]\n", "field 'gates.0.value'"),
    "dataset_empty": ("data: {dataset: ''}\n", "field 'data.dataset'"),
    "duplicate_key": ("goal: dodging\ngoal: impersonation\n", "duplicate key 'goal'; keep one"),
    "alias": ("data: &d {identities: 3}\nsetting: *d\n", "aliases (*name) are not allowed"),
    "deep": ("x: " + "[" * 20000 + "]" * 20000 + "\n", "nested more than 32 levels deep"),
    "matrix": ("goal: [dodging, impersonation]\nperturbation: {eps: [" + ", ".join(["0.01"] * 40)
               + "], norm: [linf, l2]}\nattack: {steps: [" + ", ".join(str(i) for i in range(1, 14)) + "]}\n",
               "the matrix expands to 2,080 runs, more than the limit of 1,000"),
}


def test_bad_values_fail_validation_with_one_line(tmp_path: Path) -> None:
    """Values that used to pass `validate` and crash (or hang) later now fail at load, naming file and field."""
    from facesec.errors import ConfigError
    from facesec.loading import load_threat_models

    for case, (text, expected) in BAD_SPECS.items():
        path = tmp_path / f"{case}.yaml"
        path.write_text("name: x\n" + text)
        try:
            load_threat_models(path)
        except ConfigError as exc:
            message = str(exc)
            assert message.startswith(str(path)) and expected in message and "\n" not in message, (case, message)
        else:
            raise AssertionError(f"{case}: accepted")


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    import time

    from facesec.errors import ConfigError
    from facesec.loading import load_threat_models

    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"] + [
        f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("name: x\n" + "\n".join(lines) + "\n")
    start = time.perf_counter()
    try:
        load_threat_models(path)
    except ConfigError as exc:
        assert "aliases" in str(exc)
    assert time.perf_counter() - start < 2


def test_output_names_and_csv_cells_are_safe() -> None:
    import pandas as pd

    from facesec.results import csv_safe, slug

    for hostile in ("..", ".", "...", "../../etc", "-x", ""):
        name = slug(hostile)
        assert name not in (".", "..") and not name.startswith((".", "-")) and "/" not in name, (hostile, name)
    table = csv_safe(pd.DataFrame({"identity": ["=HYPERLINK(1)", "+1", "@x", "-2", "ok"], "score": [-1.0] * 5}))
    assert table["identity"].tolist() == ["'=HYPERLINK(1)", "'+1", "'@x", "'-2", "ok"]
    assert table["score"].tolist() == [-1.0] * 5


def test_schema_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    done = subprocess.run(f"{sys.executable} -m facesec.cli schema | head -c 10", shell=True, capture_output=True,
                          text=True, timeout=120, check=False, cwd=tmp_path)
    assert done.stderr == "" and len(done.stdout) == 10


def test_blocked_pickle_is_one_line(tmp_path: Path) -> None:
    import pickle

    import pytest

    from facesec.errors import WeightsError
    from facesec.recognizers.base import load

    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"x": __import__("collections").OrderedDict}))
    with pytest.raises(WeightsError) as info:
        load({"name": "iresnet18", "weights": str(path)})
    assert "\n" not in str(info.value) and "never unpickles" in str(info.value)
    assert "weights_only=False" not in str(info.value)
