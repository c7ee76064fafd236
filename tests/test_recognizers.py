"""Every weight format users bring, the registry, and URL + sha256 weights."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from facesec.errors import ConfigError, WeightsError
from facesec.recognizers import weights
from facesec.recognizers.base import Recognizer, load
from facesec.recognizers.iresnet import IRESNET_LAYERS, IResNet
from facesec.recognizers.trust import trusting_code


def _random_iresnet(depth: int = 18, seed: int = 0) -> IResNet:
    torch.manual_seed(seed)
    net = IResNet(IRESNET_LAYERS[depth]).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, so a wrong load shows
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, IResNet]:
    net = _random_iresnet()
    path = tmp_path_factory.mktemp("ckpt") / "backbone.pth"
    torch.save(net.state_dict(), path)
    return path, net


def test_every_builtin_maps_unit_images_to_embeddings() -> None:
    for name, size in [("dlib-resnet", 150), ("iresnet18", 112), ("iresnet34", 112)]:
        model = load(name)
        out = model(torch.rand(2, 3, size, size))
        assert out.shape == (2, model.info.embedding_size)
        assert model.info.input_size == size and model.info.template.size == size
        assert not model.training


@pytest.mark.parametrize("depth", [50, 100])
def test_deep_iresnets_build(depth: int) -> None:
    model = load(f"iresnet{depth}")
    assert model(torch.rand(1, 3, 112, 112)).shape == (1, 512)


def test_iresnet_state_dict_loads_strictly(checkpoint: tuple[Path, IResNet]) -> None:
    path, net = checkpoint
    model = load({"name": "iresnet18", "weights": str(path)})
    x = torch.rand(2, 3, 112, 112)
    assert torch.allclose(model(x), net((x - 0.5) / 0.5), atol=1e-5)
    assert model.info.weights_sha256 == _sha(path)
    with pytest.raises(WeightsError, match="does not fit iresnet34"):
        load({"name": "iresnet34", "weights": str(path)})


def test_torchscript(tmp_path: Path, checkpoint: tuple[Path, IResNet]) -> None:
    _, net = checkpoint
    path = tmp_path / "model.pt"
    torch.jit.trace(net, torch.rand(1, 3, 112, 112)).save(str(path))
    with trusting_code():
        model = load({"name": "torchscript", "weights": str(path)})
    x = torch.rand(2, 3, 112, 112, requires_grad=True)
    out = model(x)
    assert torch.allclose(out, net((x - 0.5) / 0.5), atol=1e-5)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_onnx_white_box_matches_onnxruntime(tmp_path: Path, checkpoint: tuple[Path, IResNet]) -> None:
    ort = pytest.importorskip("onnxruntime")
    _, net = checkpoint
    path = tmp_path / "model.onnx"
    torch.onnx.export(net, (torch.rand(1, 3, 112, 112),), str(path), dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["e"], dynamic_axes={"x": {0: "n"}, "e": {0: "n"}})
    model = load({"name": "onnx", "weights": str(path)})
    x = torch.rand(3, 3, 112, 112)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    reference = session.run(None, {"x": ((x - 0.5) / 0.5).numpy()})[0]
    assert np.abs(model(x).detach().numpy() - reference).max() < 1e-4
    assert not any(m.training for m in model.modules())


def test_weights_by_url_and_sha256(tmp_path: Path, checkpoint: tuple[Path, IResNet],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = checkpoint
    monkeypatch.setenv("FACESEC_CACHE", str(tmp_path / "cache"))
    # a local plain-http server stands in for an https host (the https-only rule: test_weights_download.py)
    monkeypatch.setattr(weights, "check_url", lambda text: None)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(path.parent))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url, good = f"http://127.0.0.1:{httpd.server_address[1]}/{path.name}", _sha(path)
    model = load({"name": "iresnet18", "weights": url, "sha256": good})
    cached = tmp_path / "cache" / "weights" / good
    assert cached.is_file() and model.info.weights_sha256 == good
    path_mtime = cached.stat().st_mtime_ns
    load({"name": "iresnet18", "weights": url, "sha256": good})  # second time: from the cache
    assert cached.stat().st_mtime_ns == path_mtime
    bad = "0" * 64
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        load({"name": "iresnet18", "weights": url, "sha256": bad})
    assert not (tmp_path / "cache" / "weights" / bad).exists()
    with pytest.raises(WeightsError, match="needs a sha256"):
        load({"name": "iresnet18", "weights": url})
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        load({"name": "iresnet18", "weights": str(path), "sha256": bad})
    httpd.shutdown()


def test_module_factory_strings_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_recognizers.py").write_text(textwrap.dedent("""
        from facesec.recognizers.base import load

        def small():
            return load("iresnet18")

        def wrong():
            return 42
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("my_recognizers", None)
    with pytest.raises(ConfigError, match="runs that module's code; pass --trust-code"):
        load("my_recognizers:small")
    assert "my_recognizers" not in sys.modules  # refused before any import
    with trusting_code():
        assert isinstance(load("my_recognizers:small"), Recognizer)
        with pytest.raises(ConfigError, match="not a facesec.recognizers.Recognizer"):
            load("my_recognizers:wrong")
        with pytest.raises(ConfigError, match="cannot import"):
            load("my_recognizers:missing")
    with pytest.raises(ConfigError, match="unknown recognizer 'nope'"):
        load("nope")
    with pytest.raises(WeightsError, match="not found"):
        load({"name": "onnx", "weights": str(tmp_path / "absent.onnx")})


def test_similarity_rules() -> None:
    dlib_model, arc = load("dlib-resnet"), load("iresnet18")
    a, b = torch.tensor([[0.0, 0.0, 3.0]]), torch.tensor([[4.0, 0.0, 0.0]])
    assert dlib_model.similarity(a, b).item() == pytest.approx(-5.0)
    assert arc.similarity(a, b).item() == pytest.approx(0.0)
    assert dlib_model.info.native_threshold == pytest.approx(-0.6)
    assert torch.allclose(arc.similarity_matrix(a, b), arc.similarity(a, b).view(1, 1))


def test_entry_point_plugins_are_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "plugin_pkg.py").write_text("from facesec.recognizers import load\n"
                                            "def make(**kw):\n    return load('iresnet18')\n")
    dist = tmp_path / "plugin_pkg-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: plugin-pkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[facesec.recognizers]\nmy-plugin = plugin_pkg:make\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from facesec.recognizers.base import available

    assert "my-plugin" in available()
    assert load("my-plugin").info.name == "iresnet18"


def test_a_recognizer_without_weights_embeds_on_the_cpu() -> None:
    """A model holding no parameters or buffers (a graph of integer constants, say) embeds like any other (it
    raised StopIteration looking for its device)."""
    from facesec.data.align import DLIB_150
    from facesec.recognizers.base import RecognizerInfo

    model = Recognizer(torch.nn.Flatten(), RecognizerInfo("flat", 8, DLIB_150, 192, "euclidean", None, None))
    assert model.device == torch.device("cpu") and model.embed(torch.rand(3, 3, 8, 8)).shape == (3, 192)


class _NaNOnBrightFaces(torch.nn.Module):
    """Finite on dark crops, NaN on bright ones: no probe at load time would see it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        out = torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1).repeat(1, 43)[:, :128]
        return torch.where(mean.flatten(1) > 0.3, torch.full_like(out, float("nan")), out)


def test_nan_embeddings_in_a_run_fail_its_gates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 celeba: Path) -> None:
    """A model whose embeddings are NaN made attacks fail (ASR 0.0) and so passed a gate on attack success: the
    run now counts non-finite embeddings, flags them and fails every gate (exit 1, never 0)."""
    from facesec.cli import main
    from facesec.data.align import DLIB_150
    from facesec.plugins import RECOGNIZERS
    from facesec.recognizers.base import RecognizerInfo, register

    info = RecognizerInfo("nan-net", 150, DLIB_150, 128, "euclidean", -0.6, None)
    monkeypatch.setattr(RECOGNIZERS, "_entries", {**RECOGNIZERS._entries})  # the registration ends with the test
    register("nan-net")(lambda: Recognizer(_NaNOnBrightFaces(), info))
    spec = tmp_path / "nan.yaml"
    spec.write_text("name: nan\ntarget: nan-net\ndata: {identities: 3, images_per_identity: 2}\ngoal: dodging\n"
                    "attack: {steps: 1}\ngates: [{metric: attack_success_rate, op: '<=', value: 1.0}]\n"
                    "setting: {kind: open-set, calibration: in-sample}\n")
    assert main(["run", str(spec), "--out", str(tmp_path / "reports")]) == 1
    record = json.loads((tmp_path / "reports" / "nan" / "results.json").read_text())["runs"][0]
    assert record["validity"]["nonfinite_embeddings"] > 0
    assert any("NaN or infinite" in f for f in record["validity"]["flags"])
    assert [g["passed"] for g in record["gates"]] == [False, False]
    assert record["gates"][1]["metric"] == "validity.nonfinite_embeddings"
