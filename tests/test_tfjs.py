"""The TF.js graph-model loader: the format read strictly, TensorFlow's op semantics, and the real
HSE FaceRes files (every byte consumed, parity with a reference execution, gradients to the pixels)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from facesec.cli import main
from facesec.errors import WeightsError
from facesec.recognizers import packaged
from facesec.recognizers.base import load
from facesec.recognizers.tfjs_format import read_graph_model
from facesec.recognizers.tfjs_graph import TfjsGraph

FIXTURES = Path(__file__).parent / "fixtures"


def _s(text: str) -> dict[str, str]:
    return {"s": base64.b64encode(text.encode()).decode()}


def _ints(*values: int) -> dict[str, Any]:
    return {"list": {"i": [str(v) for v in values]}}


def _node(name: str, op: str, *inputs: str, **attr: Any) -> dict[str, Any]:
    return {"name": name, "op": op, "input": list(inputs), "attr": attr}


def _const(name: str, shape: tuple[int, ...]) -> dict[str, Any]:
    return {"name": name, "op": "Const", "attr": {"value": {"tensor": {"tensorShape": {
        "dim": [{"size": str(d)} for d in shape]}}}}}


def write_model(folder: Path, nodes: list[dict[str, Any]], weights: dict[str, np.ndarray],
                quant: dict[str, str] | None = None, shards: int = 1, input_shape: tuple[int, ...] = (-1, 6, 6, 2),
                fmt: str = "graph-model") -> Path:
    """A graph model on disk: input `x` (NHWC), the nodes, the weights (quantised as `quant` says), split
    into `shards` files of one group."""
    folder.mkdir(parents=True, exist_ok=True)
    quant = quant or {}
    specs, blob = [], b""
    for name, value in weights.items():
        spec: dict[str, Any] = {"name": name, "shape": list(value.shape),
                                "dtype": "int32" if value.dtype.kind == "i" else "float32"}
        q = quant.get(name)
        if q == "float16":
            spec["quantization"] = {"dtype": "float16"}
            blob += value.astype("<f2").tobytes()
        elif q in ("uint8", "uint16"):
            lo, hi = float(value.min()), float(value.max())
            levels = 255 if q == "uint8" else 65535
            scale = (hi - lo) / levels or 1.0
            spec["quantization"] = {"dtype": q, "scale": scale, "min": lo}
            blob += np.round((value - lo) / scale).astype("u1" if q == "uint8" else "<u2").tobytes()
        else:
            blob += value.astype("<i4" if value.dtype.kind == "i" else "<f4").tobytes()
        specs.append(spec)
    cut = np.linspace(0, len(blob), shards + 1).astype(int)
    paths = []
    for i in range(shards):
        (folder / f"group1-shard{i + 1}of{shards}.bin").write_bytes(blob[cut[i]:cut[i + 1]])
        paths.append(f"group1-shard{i + 1}of{shards}.bin")
    graph = [{"name": "x", "op": "Placeholder", "attr": {"shape": {"shape": {
        "dim": [{"size": str(d)} for d in input_shape]}}}}]
    graph += [_const(name, v.shape) for name, v in weights.items()] + nodes
    doc = {"format": fmt, "modelTopology": {"node": graph}, "weightsManifest": [{"paths": paths, "weights": specs}]}
    (folder / "model.json").write_text(json.dumps(doc))
    return folder / "model.json"


def run_graph(path: Path, output: str, x: np.ndarray) -> np.ndarray:
    graph = TfjsGraph(read_graph_model(path), output)
    with torch.no_grad():
        return graph(torch.from_numpy(x)).numpy()


def conv_reference(x: np.ndarray, w: np.ndarray, stride: int, same: bool, depthwise: bool = False) -> np.ndarray:
    """Direct NHWC convolution with TensorFlow's SAME rule (the extra padding row/column after)."""
    n, h, wd, c = x.shape
    kh, kw = w.shape[:2]
    if same:
        oh, ow = -(-h // stride), -(-wd // stride)
        ph, pw = max((oh - 1) * stride + kh - h, 0), max((ow - 1) * stride + kw - wd, 0)
        x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    else:
        oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    if depthwise:
        mult = w.shape[3]
        out = np.zeros((n, oh, ow, c * mult))
        for i in range(oh):
            for j in range(ow):
                patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]  # n kh kw c
                out[:, i, j, :] = np.einsum("nhwc,hwcm->ncm", patch, w).reshape(n, c * mult)
        return out
    out = np.zeros((n, oh, ow, w.shape[3]))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            out[:, i, j, :] = np.einsum("nhwc,hwco->no", patch, w)
    return out


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.mark.parametrize("size,stride,padding", [(7, 2, "SAME"), (6, 2, "SAME"), (7, 1, "VALID"), (5, 3, "SAME")])
def test_conv_matches_tensorflow_padding(tmp_path: Path, rng: np.random.Generator, size: int, stride: int,
                                         padding: str) -> None:
    w = rng.normal(size=(3, 3, 2, 4)).astype(np.float32)
    x = rng.normal(size=(2, size, size, 2)).astype(np.float32)
    path = write_model(tmp_path, [_node("y", "Conv2D", "x", "w", strides=_ints(1, stride, stride, 1),
                                        padding=_s(padding), data_format=_s("NHWC"))], {"w": w})
    want = conv_reference(x, w, stride, padding == "SAME")
    np.testing.assert_allclose(run_graph(path, "y", x), want, atol=1e-5)


def test_depthwise_fused_ops_and_quantised_weights(tmp_path: Path, rng: np.random.Generator) -> None:
    w = rng.normal(size=(3, 3, 2, 2)).astype(np.float32)  # channel multiplier 2
    b = rng.normal(size=(4,)).astype(np.float32)
    x = rng.normal(size=(1, 7, 7, 2)).astype(np.float32) * 3
    path = write_model(tmp_path, [
        _node("y", "FusedDepthwiseConv2dNative", "x", "w", "b", strides=_ints(1, 2, 2, 1), padding=_s("SAME"),
              fused_ops={"list": {"s": [base64.b64encode(b"BiasAdd").decode(), base64.b64encode(b"Relu6").decode()]}})],
        {"w": w, "b": b}, quant={"w": "float16", "b": "uint8"}, shards=3)
    model = read_graph_model(path)
    b_q = model.weights["b"]
    assert np.abs(b_q - b).max() <= (b.max() - b.min()) / 255 / 2 + 1e-6  # uint8: q * scale + min
    np.testing.assert_array_equal(model.weights["w"], w.astype(np.float16).astype(np.float32))
    want = np.clip(conv_reference(x, model.weights["w"], 2, True, depthwise=True) + b_q, 0, 6)
    np.testing.assert_allclose(run_graph(path, "y", x), want, atol=1e-5)


def test_matmul_reductions_pools_and_shapes(tmp_path: Path, rng: np.random.Generator) -> None:
    k = rng.normal(size=(5, 2)).astype(np.float32)
    kb = rng.normal(size=(5,)).astype(np.float32)
    x = rng.normal(size=(2, 6, 6, 2)).astype(np.float32)
    nodes = [
        _node("avg", "AvgPool", "x", ksize=_ints(1, 3, 3, 1), strides=_ints(1, 2, 2, 1), padding=_s("SAME")),
        _node("max", "MaxPool", "x", ksize=_ints(1, 2, 2, 1), strides=_ints(1, 2, 2, 1), padding=_s("VALID")),
        _node("mean", "Mean", "x", "axes", keep_dims={"b": False}),
        _node("fc", "_FusedMatMul", "mean", "k", "kb", transpose_b={"b": True},
              fused_ops={"list": {"s": [base64.b64encode(b"BiasAdd").decode()]}}),
        _node("flat", "Reshape", "max", "shape"),
        _node("cat", "ConcatV2", "flat", "fc", "axis"),
        _node("soft", "Softmax", "cat"),
    ]
    path = write_model(tmp_path, nodes, {"k": k, "kb": kb, "axes": np.array([1, 2], np.int32),
                                         "shape": np.array([2, -1], np.int32), "axis": np.array(1, np.int32)},
                       quant={"k": "uint16"})
    kq = read_graph_model(path).weights["k"]
    assert np.abs(kq - k).max() < 1e-4
    padded = np.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))  # 6 -> 3 outputs: 1 pad after, not counted
    counts = np.pad(np.ones((6, 6)), ((0, 1), (0, 1)))
    avg = np.zeros((2, 3, 3, 2))
    for i in range(3):
        for j in range(3):
            cells = (slice(2 * i, 2 * i + 3), slice(2 * j, 2 * j + 3))
            avg[:, i, j] = padded[:, cells[0], cells[1]].sum((1, 2)) / counts[cells].sum()
    np.testing.assert_allclose(run_graph(path, "avg", x), avg, atol=1e-5)
    mx = x.reshape(2, 3, 2, 3, 2, 2).max((2, 4))
    np.testing.assert_allclose(run_graph(path, "max", x), mx, atol=1e-6)
    fc = x.mean((1, 2)) @ kq.T + kb
    np.testing.assert_allclose(run_graph(path, "fc", x), fc, atol=1e-5)
    cat = np.concatenate([mx.reshape(2, -1), fc], 1)
    soft = np.exp(cat - cat.max(1, keepdims=True))
    np.testing.assert_allclose(run_graph(path, "soft", x), soft / soft.sum(1, keepdims=True), atol=1e-6)


def _bad(tmp_path: Path, rng: np.random.Generator) -> Path:
    w = rng.normal(size=(3, 3, 2, 4)).astype(np.float32)
    return write_model(tmp_path, [_node("y", "Conv2D", "x", "w", strides=_ints(1, 1, 1, 1), padding=_s("SAME")),
                                  _node("z", "Relu", "y")], {"w": w})


def test_strict_format_errors_are_one_line(tmp_path: Path, rng: np.random.Generator) -> None:
    path = _bad(tmp_path, rng)
    shard = tmp_path / "group1-shard1of1.bin"
    data = shard.read_bytes()
    doc = json.loads(path.read_text())

    def refused(match: str) -> None:
        with pytest.raises(WeightsError, match=match) as info:
            TfjsGraph(read_graph_model(path), "z")
        assert "\n" not in str(info.value)

    shard.write_bytes(data + b"\0")
    refused(": 1 unread bytes")
    shard.write_bytes(data[:-8])
    refused("8 bytes missing")
    shard.write_bytes(data)
    for edit, match in [
        (lambda d: d["weightsManifest"][0].__setitem__("paths", ["../group1-shard1of1.bin"]), "outside"),
        (lambda d: d["weightsManifest"][0]["weights"][0].__setitem__("shape", [3, 3, 4, 2]), "in the graph"),
        (lambda d: d["weightsManifest"][0]["weights"][0].__setitem__("dtype", "string"), "dtype 'string'"),
        (lambda d: d["modelTopology"]["node"][2].__setitem__("op", "Conv3D"), "op 'Conv3D'"),
        (lambda d: d["modelTopology"]["node"][2].__setitem__("input", ["z", "w"]), "cycle"),
        (lambda d: d.__setitem__("format", "layers-model"), "not 'graph-model'"),
    ]:
        bad = json.loads(json.dumps(doc))
        edit(bad)
        path.write_text(json.dumps(bad))
        refused(match)
    path.write_text("{" * 100_000)
    refused("not valid JSON")


def test_shape_mismatch_names_the_node(tmp_path: Path, rng: np.random.Generator) -> None:
    path = _bad(tmp_path, rng)
    graph = TfjsGraph(read_graph_model(path), "z")
    with pytest.raises(WeightsError, match="node 'y' \\(Conv2D\\).*input has 3"):
        graph(torch.zeros(1, 6, 6, 3))


def test_unknown_op_off_the_output_path_is_not_needed(tmp_path: Path, rng: np.random.Generator) -> None:
    w = rng.normal(size=(1, 1, 2, 2)).astype(np.float32)
    path = write_model(tmp_path, [_node("y", "Conv2D", "x", "w", padding=_s("VALID")),
                                  _node("other", "NonMaxSuppressionV5", "y")], {"w": w})
    TfjsGraph(read_graph_model(path), "y")
    with pytest.raises(WeightsError, match="NonMaxSuppressionV5"):
        TfjsGraph(read_graph_model(path), "other")


def test_tfjs_recognizer_gives_pixel_gradients(tmp_path: Path, rng: np.random.Generator) -> None:
    w = rng.normal(size=(3, 3, 3, 4)).astype(np.float32)
    nodes = [_node("y", "Conv2D", "x", "w", strides=_ints(1, 2, 2, 1), padding=_s("SAME")),
             _node("r", "Relu", "y"), _node("emb", "Mean", "r", "axes")]
    path = write_model(tmp_path, nodes, {"w": w, "axes": np.array([1, 2], np.int32)}, input_shape=(-1, 112, 112, 3))
    model = load({"name": "tfjs", "weights": str(tmp_path), "output": "emb"})
    assert model.info.input_size == 112 and model.info.embedding_size == 4
    x = torch.rand(2, 3, 112, 112, requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        load({"name": "tfjs", "weights": str(path), "output": "emb", "sha256": "0" * 64})


# --- the real model: HSE FaceRes from @vladmandic/human 3.3.6 ------------------------------------------------


def test_hse_files_consumed_to_the_last_byte(hse_installed: Path) -> None:
    model = read_graph_model(hse_installed / "faceres.json")
    assert model.n_weight_bytes == (hse_installed / "faceres.bin").stat().st_size == 6_978_814
    assert len(model.weights) == 128
    graph = TfjsGraph(model, "global_pooling/Mean", fuse=False)
    heads = sum(v.size for k, v in model.weights.items() if k.split("/")[0] in ("feats", "age_pred", "gender_pred"))
    assert sum(p.numel() for p in graph.consts) + sum(t.numel() for t in graph.int_consts.values()) \
        + len(graph.scalars) == sum(v.size for v in model.weights.values()) - heads  # the heads are not run
    ops = {model.nodes[n]["op"] for n in graph.order}
    assert ops == {"Placeholder", "Const", "Conv2D", "DepthwiseConv2dNative", "Add", "Mul", "Relu", "Minimum",
                   "Maximum", "Mean"}
    fused = TfjsGraph(model, "global_pooling/Mean")
    assert {fused.nodes[n]["op"] for n in fused.order} == {"Placeholder", "Const", "_FusedConv2D",
                                                            "FusedDepthwiseConv2dNative", "Mean"}


def test_hse_truncated_or_edited_files_are_refused(hse_installed: Path, tmp_path: Path) -> None:
    copy = tmp_path / "hse"
    shutil.copytree(hse_installed, copy)
    data = (copy / "faceres.bin").read_bytes()
    (copy / "faceres.bin").write_bytes(data[:-1000])
    with pytest.raises(WeightsError, match="1,000 bytes missing"):
        read_graph_model(copy / "faceres.json")
    (copy / "faceres.bin").write_bytes(data)
    doc = json.loads((copy / "faceres.json").read_text())
    for shape, match in [([1024, 255], "2,048 unread bytes"), ([256, 1024], "'feats/kernel' has shape")]:
        doc["weightsManifest"][0]["weights"][2]["shape"] = shape
        (copy / "faceres.json").write_text(json.dumps(doc))
        with pytest.raises(WeightsError, match=match):
            read_graph_model(copy / "faceres.json")
    # the built-in name checks both files' sha256 on every load
    (hse_installed / "faceres.bin").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    try:
        with pytest.raises(WeightsError, match="does not match its sha256.*facesec models fetch hse-faceres"):
            load("hse-faceres")
    finally:
        (hse_installed / "faceres.bin").write_bytes(data)


def test_hse_matches_reference_execution_on_real_faces(hse_installed: Path, celeba: Path) -> None:
    from facesec.data.align import TEMPLATES
    from facesec.data.pipeline import align_faces

    meta = json.loads((FIXTURES / "hse_faceres_reference.json").read_text())
    want = np.load(FIXTURES / "hse_faceres_reference.npy")
    faces = align_faces([celeba / f["path"] for f in meta["faces"]], TEMPLATES[meta["template"]], progress=False)
    assert [hashlib.sha256(c.tobytes()).hexdigest() for c in faces.crops] == \
        [f["crop_sha256"] for f in meta["faces"]], "the aligned crops differ from the fixture's: alignment changed"
    model = load({"name": "hse-faceres", "template": meta["template"]})
    got = model.embed(faces.tensor()).numpy()
    assert np.abs(got - want).max() <= 1e-4
    assert np.abs(want).max() > 1  # real descriptors, not zeros


def test_hse_gradients_reach_the_pixels(hse_installed: Path) -> None:
    model = load("hse-faceres")
    assert model.info.input_size == 224 and model.info.embedding_size == 1024
    x = torch.rand(1, 3, 224, 224, requires_grad=True)
    model(x).norm().backward()
    assert x.grad is not None and (x.grad != 0).float().mean() > 0.5


def test_models_fetch_from_a_folder_and_missing_model(hse_installed: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FACESEC_CACHE", str(tmp_path / "cache"))
    with pytest.raises(WeightsError, match="not installed.*`facesec models fetch hse-faceres`"):
        load("hse-faceres")
    assert main(["models", "fetch", "hse-faceres", "--from", str(hse_installed)]) == 0
    assert packaged.is_installed("hse-faceres")
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "faceres.json").write_text("{}")
    (wrong / "faceres.bin").write_bytes(b"\0")
    capsys.readouterr()
    assert main(["models", "fetch", "hse-faceres", "--from", str(wrong)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sha256" in err


def test_models_fetch_from_a_package_tarball(hse_installed: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import tarfile

    monkeypatch.setenv("FACESEC_CACHE", str(tmp_path / "cache"))
    good, hostile = tmp_path / "human.tgz", tmp_path / "hostile.tgz"
    with tarfile.open(good, "w:gz") as tar:
        tar.add(hse_installed / "faceres.json", "package/models/faceres.json")
        tar.add(hse_installed / "faceres.bin", "package/models/faceres.bin")
    assert packaged.fetch("hse-faceres", good, progress=False) == tmp_path / "cache" / "models" / "hse-faceres"
    with tarfile.open(hostile, "w:gz") as tar:
        link = tarfile.TarInfo("package/models/faceres.json")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(WeightsError, match="not a regular file"):
        packaged.fetch("hse-faceres", hostile, progress=False)
    junk = tmp_path / "junk.tgz"
    junk.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(WeightsError, match="not a readable package tarball") as info:
        packaged.fetch("hse-faceres", junk, progress=False)
    assert "\n" not in str(info.value)


def test_tfjs_loader_refuses_links_out_and_sizes_it_cannot_hold(tmp_path: Path, rng: np.random.Generator) -> None:
    """A shard that is a link out of the model's folder, weights declaring more bytes, elements or dimensions than
    a model could hold, a 400-digit quantisation scale and an attribute nested 600 deep: each one WeightsError
    line, before any shard is read."""
    w = rng.normal(size=(2, 3)).astype(np.float32)
    path = write_model(tmp_path / "m", [_node("y", "MatMul", "x", "w")], {"w": w})
    outside = tmp_path / "outside.bin"
    (path.parent / "group1-shard1of1.bin").rename(outside)
    (path.parent / "group1-shard1of1.bin").symlink_to(outside)
    with pytest.raises(WeightsError, match=r"weight shard 'group1-shard1of1.bin' is a link out of the model's folder"):
        read_graph_model(path)
    doc = json.loads(path.read_text())
    (path.parent / "group1-shard1of1.bin").unlink()
    outside.rename(path.parent / "group1-shard1of1.bin")
    spec = doc["weightsManifest"][0]["weights"][0]
    for shape, problem in [([2] * 70, "more than 8 dimensions"), ([0, 10**30], "a dimension or a count over"),
                           ([1 << 20, 1 << 20], "a dimension or a count over"),
                           ([1 << 15, 1 << 15], "its weights take more than 2,147,483,648 bytes")]:
        spec["shape"] = shape
        path.write_text(json.dumps(doc))
        with pytest.raises(WeightsError, match=problem):
            read_graph_model(path)
    spec["shape"] = [2, 3]
    spec["quantization"], spec["dtype"] = {"dtype": "uint8", "scale": 10**400, "min": 0}, "float32"
    path.write_text(json.dumps(doc))
    with pytest.raises(WeightsError, match=r"not valid JSON \(a number of 401 digits"):
        read_graph_model(path)
    del spec["quantization"]
    nested: dict[str, Any] = {}
    for _ in range(200):  # 600 levels
        nested = {"list": {"func": [nested]}}
    doc["modelTopology"]["node"][-1]["attr"] = {"deep": nested}
    path.write_text(json.dumps(doc))
    with pytest.raises(WeightsError, match=r"not valid JSON \(nested deeper than 64 levels\)"):
        read_graph_model(path)


_CONV = _node("c", "Conv2D", "x", "w", strides=_ints(1, 1, 1, 1), padding=_s("SAME"))


@pytest.mark.parametrize(("nodes", "extra", "problem"), [
    ([_CONV, _node("r", "Relu", "c"), _node("y", "Minimum", "r")], {}, r"node 'y' \(Minimum\) cannot run"),
    ([_CONV, _node("r", "Relu", "c"), _node("y", "Minimum", "r", "^c")], {}, r"node 'y' \(Minimum\) cannot run"),
    ([_CONV, _node("y", "Mean", "c", "ax")], {"ax": np.array(1.5, np.float32)}, r"node 'y' \(Mean\) cannot run"),
    ([_CONV, _node("y", "Relu", "c:" + "9" * 5000)], {}, "an output index of 5,000 digits"),
], ids=["minimum-one-input", "minimum-control-input", "float-axes", "long-output-index"])
def test_crafted_graphs_are_one_line_errors(tmp_path: Path, rng: np.random.Generator, nodes: list[dict[str, Any]],
                                            extra: dict[str, np.ndarray], problem: str) -> None:
    """Graphs that crashed the loader (IndexError in the fusing pass, AttributeError, a 5,000-digit output index)
    are refused with one WeightsError line naming the node or input."""
    weights = {"w": rng.normal(size=(3, 3, 2, 4)).astype(np.float32), **extra}
    path = write_model(tmp_path, nodes, weights)
    with pytest.raises(WeightsError, match=problem):
        graph = TfjsGraph(read_graph_model(path), "y")
        with torch.no_grad():
            graph(torch.from_numpy(rng.normal(size=(1, 6, 6, 2)).astype(np.float32)))


def _gnu_long_name(size: int) -> bytes:
    """A tar header announcing a GNU long name of `size` bytes."""
    import tarfile

    info = tarfile.TarInfo("././@LongLink")
    info.type, info.size = tarfile.GNUTYPE_LONGNAME, size
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def test_models_fetch_refuses_tarball_bombs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A long-name header of 256 MiB in a 250 kB .tgz is refused before it is read (it took 2.6 GB for 2 GiB); a
    member decompressing past the package limit, or reading past the time limit, stops the fetch in one line."""
    import gzip
    import tarfile
    import tracemalloc

    monkeypatch.setenv("FACESEC_CACHE", str(tmp_path / "cache"))
    long_name = tmp_path / "long.tgz"
    with gzip.open(long_name, "wb") as gz:
        gz.write(_gnu_long_name(256 << 20))
        for _ in range(256):
            gz.write(bytes(1 << 20))
    assert long_name.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(WeightsError, match=r"refused: an extended header of 268,435,456 bytes"):
            packaged.fetch("hse-faceres", long_name, progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20
    bomb = tmp_path / "bomb.tar.bz2"
    with tarfile.open(bomb, "w:bz2") as tar:
        zeros = tarfile.TarInfo("package/zeros.bin")
        zeros.size = 48 << 20
        tar.addfile(zeros, io.BytesIO(bytes(zeros.size)))
        model = tarfile.TarInfo("package/models/faceres.json")
        model.size = 2
        tar.addfile(model, io.BytesIO(b"{}"))
    monkeypatch.setattr(packaged, "MAX_UNPACKED_BYTES", 32 << 20)
    with pytest.raises(WeightsError, match=r"refused: it decompresses to more than 33,554,432 bytes"):
        packaged.fetch("hse-faceres", bomb, progress=False)
    monkeypatch.setattr(packaged, "MAX_UNPACK_SECONDS", 0.0)
    with pytest.raises(WeightsError, match=r"refused: reading it took longer than the time allowed"):
        packaged.fetch("hse-faceres", bomb, progress=False)


def test_folding_batch_norm_and_relu6_into_convolutions_keeps_the_outputs(tmp_path: Path,
                                                                          rng: np.random.Generator) -> None:
    w = rng.normal(size=(3, 3, 2, 4)).astype(np.float32)
    dw = rng.normal(size=(3, 3, 4, 1)).astype(np.float32)
    gamma, beta = rng.normal(size=(4,)).astype(np.float32), rng.normal(size=(4,)).astype(np.float32)
    nodes = [_node("c", "Conv2D", "x", "w", strides=_ints(1, 2, 2, 1), padding=_s("SAME")),
             _node("m", "Mul", "c", "gamma"), _node("a", "Add", "m", "beta"), _node("r", "Relu", "a"),
             _node("lo", "Minimum", "r", "six"), _node("hi", "Maximum", "lo", "zero"),
             _node("d", "DepthwiseConv2dNative", "hi", "dw", strides=_ints(1, 1, 1, 1), padding=_s("SAME")),
             _node("m2", "Mul", "d", "gamma"), _node("out", "Add", "m2", "beta"),
             _node("side", "Relu", "c"), _node("total", "AddV2", "out", "side")]  # c has two consumers: not folded
    weights = {"w": w, "gamma": gamma, "beta": beta, "six": np.array(6, np.float32),
               "zero": np.array(0, np.float32), "dw": dw}
    path = write_model(tmp_path, nodes, weights)
    model = read_graph_model(path)
    x = torch.from_numpy(rng.normal(size=(2, 7, 7, 2)).astype(np.float32) * 4)
    plain, fused = TfjsGraph(model, "total", fuse=False), TfjsGraph(model, "total")
    assert fused.nodes["d"]["op"] == "FusedDepthwiseConv2dNative" and fused.nodes["c"]["op"] == "Conv2D"
    with torch.no_grad():
        np.testing.assert_allclose(fused(x).numpy(), plain(x).numpy(), atol=1e-5)
    path = write_model(tmp_path, nodes[:-2], weights)  # now c feeds only the batch norm: all of it folds
    plain, fused = TfjsGraph(read_graph_model(path), "out", fuse=False), TfjsGraph(read_graph_model(path), "out")
    assert [fused.nodes[n]["op"] for n in fused.order if fused.nodes[n]["op"] != "Const"] == \
        ["Placeholder", "_FusedConv2D", "FusedDepthwiseConv2dNative"]
    with torch.no_grad():
        np.testing.assert_allclose(fused(x).numpy(), plain(x).numpy(), atol=1e-5)


def test_hostile_values_are_refused(tmp_path: Path, rng: np.random.Generator) -> None:
    w = rng.normal(size=(1, 1, 2, 2)).astype(np.float32)
    w[0, 0, 0, 0] = np.nan
    path = write_model(tmp_path / "nan", [_node("y", "Conv2D", "x", "w", padding=_s("VALID"))], {"w": w})
    with pytest.raises(WeightsError, match="'w' holds NaN"):
        read_graph_model(path)
    for amounts, problem in [([[0, 0], [2000, 0], [0, 0], [0, 0]], "between 0 and 1024"),
                             ([[1024, 1024]] * 4, "would make 17,721,345,712,200 values .* 16,777,216 per node")]:
        path = write_model(tmp_path / "pad", [_node("y", "Pad", "x", "p")], {"p": np.array(amounts, np.int32)})
        graph = TfjsGraph(read_graph_model(path), "y")
        with pytest.raises(WeightsError, match=f"node 'y' \\(Pad\\).*{problem}"):
            graph(torch.zeros(1, 6, 6, 2))


def test_validate_opens_a_tfjs_target(tmp_path: Path, rng: np.random.Generator,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """`validate` reads a TF.js target's model.json and checks its shards' names and sizes (no weight is read),
    so a broken model fails in one line before any run."""
    from facesec.cli import main

    w = rng.normal(size=(2, 3)).astype(np.float32)
    path = write_model(tmp_path / "m", [_node("y", "MatMul", "x", "w")], {"w": w})
    spec = tmp_path / "t.yaml"
    spec.write_text(f"name: t\ntarget: {{name: tfjs, weights: '{path}', output: y}}\n"
                    "setting: {kind: open-set, calibration: in-sample}\n")
    assert main(["validate", str(spec)]) == 0
    (path.parent / "group1-shard1of1.bin").write_bytes(b"\0" * 5)
    capsys.readouterr()
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert "field 'target'" in err and "holds 5 bytes but its manifest describes 24" in err and "\n" not in err


def test_a_graph_that_gives_nan_is_refused_when_built(tmp_path: Path) -> None:
    """The build probe (a black image) must give finite embeddings: log(0) is -inf, so this graph is refused."""
    nodes = [_node("l", "Log", "x"), _node("emb", "Mean", "l", "axes")]
    write_model(tmp_path, nodes, {"axes": np.array([1, 2], np.int32)}, input_shape=(-1, 112, 112, 3))
    with pytest.raises(WeightsError, match="node 'emb' gives NaN or infinite values for a black image"):
        load({"name": "tfjs", "weights": str(tmp_path), "output": "emb"})


_GREEDY = """
import json, sys
sys.path.insert(0, sys.argv[1])
from facesec.errors import WeightsError
from facesec.recognizers.base import load
out = {}
for case in sys.argv[2:]:
    try:
        load({"name": "tfjs", "weights": case, "output": "y", "input_size": 112, "template": "arcface-112"})
        out[case] = "loaded"
    except WeightsError as exc:
        out[case] = str(exc)
out["peak_mb"] = int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1]) // 1024
print(json.dumps(out))
"""


def test_graphs_that_would_exhaust_memory_are_refused_before_allocating(tmp_path: Path,
                                                                        rng: np.random.Generator) -> None:
    """Models of a few hundred bytes that took gigabytes to build (an EXPLICIT padding, an outer product of the
    input with itself, a convolution to a million channels) and a topology of 20,001 nodes are refused in one
    line, and the process building all of them stays under 1 GB (VmHWM: not ru_maxrss, which
    also counts the peak of the process that started it; importing torch takes ~0.4 GB)."""
    shape = (-1, 112, 112, 3)
    one = np.ones((1, 1, 3, 1), np.float32)
    cases = {
        "explicit-padding": ([_node("y", "Conv2D", "x", "w", strides=_ints(1, 1, 1, 1), padding=_s("EXPLICIT"),
                                    explicit_paddings=_ints(0, 0, 10**5, 10**5, 10**5, 10**5, 0, 0))], {"w": one},
                             "explicit_paddings .* between 0 and 1024"),
        "padding-within-range": ([_node("y", "Conv2D", "x", "w", strides=_ints(1, 1, 1, 1), padding=_s("EXPLICIT"),
                                        explicit_paddings=_ints(0, 0, 1024, 1024, 1024, 1024, 0, 0))],
                                 {"w": np.ones((1, 1, 3, 64), np.float32)}, r"node 'y' \(Conv2D\) would make"),
        "outer-product": ([_node("a", "Reshape", "x", "col"), _node("b", "Reshape", "x", "row"),
                           _node("y", "Mul", "a", "b")],
                          {"col": np.array([-1, 1], np.int32), "row": np.array([1, -1], np.int32)},
                          r"node 'y' \(Mul\) would make 1,416,167,424 values"),
        "million-channels": ([_node("y", "Conv2D", "x", "w", strides=_ints(1, 1, 1, 1), padding=_s("VALID"))],
                             {"w": np.ones((1, 1, 3, 10**6), np.float32)}, r"node 'y' \(Conv2D\) would make"),
        "many-nodes": ([_node(f"n{i}", "Identity", "x") for i in range(19_999)] + [_node("y", "Identity", "x")], {},
                       "20,001 nodes; more than 20,000 are refused"),
    }
    for name, (nodes, weights, _) in cases.items():
        write_model(tmp_path / name, nodes, weights, input_shape=shape)
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", _GREEDY, str(Path(__file__).parents[1]),
                           *(str(tmp_path / name) for name in cases)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    for name, (_, _, problem) in cases.items():
        message = out[str(tmp_path / name)]
        assert re.search(problem, message) and "\n" not in message, (name, message)
    assert out["peak_mb"] < 1024, out["peak_mb"]
