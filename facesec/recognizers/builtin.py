"""The built-in recognizers: dlib's ResNet (ported, and dlib's own as a black box), IResNets, students,
TorchScript and ONNX files (converted for white-box use, or run by onnxruntime as a black box)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facesec.data.align import ARCFACE_112, DLIB_150, TEMPLATES, Template
from facesec.data.cache import file_digest
from facesec.dlib_models import models_dir
from facesec.errors import ConfigError, WeightsError
from facesec.recognizers import students
from facesec.recognizers.base import Comparison, Recognizer, RecognizerInfo, TrainedOn
from facesec.recognizers.dlib_resnet import MODEL_FILE, DlibResNet, read_dlib_resnet
from facesec.recognizers.iresnet import IRESNET_LAYERS, IResNet
from facesec.recognizers.weights import resolve_weights

MAX_CARD_IDENTITIES = 1_000_000
"""The most training identities a student card may list (a hostile card must not make facesec hold millions)."""


def dlib_resnet(weights: str | None = None, sha256: str | None = None) -> Recognizer:
    """dlib_face_recognition_resnet_model_v1 read from face_recognition_models (or `weights`: dlib's `.dat`, or a
    PyTorch state dict of this network such as a backdoor run's `backdoored.pt`)."""
    path = resolve_weights(weights, sha256) if weights else models_dir() / MODEL_FILE
    net = DlibResNet()
    threshold = 0.6
    if _is_zip(path):  # torch.save's format; dlib's files are not zip archives
        try:
            net.load_state_dict(_load_state_dict(path), strict=True)
        except RuntimeError as exc:
            raise WeightsError(f"{path} does not fit dlib-resnet: {str(exc).splitlines()[0]}") from exc
    else:
        params = read_dlib_resnet(path)
        net.load_dlib(params)
        threshold = params.distance_threshold
    info = RecognizerInfo("dlib-resnet", 150, DLIB_150, 128, "euclidean", native_threshold=-threshold,
                          weights_sha256=file_digest(path))
    return Recognizer(net, info)


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


class DlibCpp(nn.Module):
    """dlib's own C++ network (dlib-bin) on 150x150 chips, rounded to 8 bits as a camera delivers them.

    A black box: no gradients flow through it; attacks reach it by transfer or by queries.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        import dlib

        self.model = dlib.face_recognition_model_v1(str(path))
        self.anchor = nn.Parameter(torch.zeros(0), requires_grad=False)  # tells Recognizer.embed the device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = (x.detach().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
        descriptors = self.model.compute_face_descriptor([np.ascontiguousarray(c) for c in pixels])
        return torch.tensor(np.array([list(d) for d in descriptors], dtype=np.float32), device=x.device)


def dlib_cpp(weights: str | None = None, sha256: str | None = None) -> Recognizer:
    """The same dlib model run by dlib itself, as a query-only black box (threshold: distance 0.6)."""
    path = resolve_weights(weights, sha256) if weights else models_dir() / MODEL_FILE
    info = RecognizerInfo("dlib-cpp", 150, DLIB_150, 128, "euclidean", native_threshold=-0.6,
                          weights_sha256=file_digest(path), differentiable=False)
    return Recognizer(DlibCpp(path), info)


class Normalized(nn.Module):
    """[0, 1] RGB -> (x - mean) / std, then the wrapped network (which expects normalised input)."""

    def __init__(self, net: nn.Module, mean: float, std: float, input_bgr: bool = False) -> None:
        super().__init__()
        self.net = net
        self.mean, self.std, self.input_bgr = mean, std, input_bgr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_bgr:
            x = x.flip(1)
        out = self.net((x - self.mean) / self.std)
        return out[0] if isinstance(out, (tuple, list)) else out


def _template(name: str) -> Template:
    if name not in TEMPLATES:
        raise ConfigError(f"unknown alignment template '{name}'; known: {', '.join(TEMPLATES)}")
    return TEMPLATES[name]


def unloadable(exc: Exception) -> str:
    """One line on why torch.load refused a file (its own message runs to several lines, some of them
    suggesting weights_only=False, which facesec never uses)."""
    text = str(exc)
    if "weights_only" in text or "Unpickl" in type(exc).__name__:
        return "it holds Python objects besides tensors, which facesec never unpickles (weights_only=True); refused"
    return (text.strip().splitlines() or [type(exc).__name__])[0]


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise WeightsError(f"cannot load PyTorch weights {path}: {unloadable(exc)}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path} is not a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _make_iresnet(depth: int) -> Any:
    """Factory for IResNet-`depth` in arcface_torch layout; `weights` is a backbone.pth state dict."""

    def factory(weights: str | None = None, sha256: str | None = None, embedding_size: int = 512,
                threshold: float | None = None) -> Recognizer:
        net = IResNet(IRESNET_LAYERS[depth], embedding_size)
        digest = None
        if weights:
            path = resolve_weights(weights, sha256)
            try:
                net.load_state_dict(_load_state_dict(path), strict=True)
            except RuntimeError as exc:
                raise WeightsError(f"{path} does not fit iresnet{depth}: {str(exc).splitlines()[0]}") from exc
            digest = file_digest(path)
        info = RecognizerInfo(f"iresnet{depth}", 112, ARCFACE_112, embedding_size, "cosine", threshold, digest)
        return Recognizer(Normalized(net, 0.5, 0.5), info)

    return factory


iresnet18 = _make_iresnet(18)
iresnet34 = _make_iresnet(34)
iresnet50 = _make_iresnet(50)
iresnet100 = _make_iresnet(100)


def _file_info(kind: str, path: Path, input_size: int, template: str, embedding_size: int,
               comparison: Comparison, threshold: float | None) -> RecognizerInfo:
    return RecognizerInfo(f"{kind}:{path.name}", input_size, _template(template), embedding_size,
                          comparison, threshold, file_digest(path))


def surrogate(weights: str) -> Recognizer:
    """A student trained by `facesec surrogate train`: `weights` is its folder (surrogate.json, student.pt)."""
    folder = Path(weights)
    card_path, state_path = folder / "surrogate.json", folder / "student.pt"
    if not card_path.is_file() or not state_path.is_file():
        raise WeightsError(f"{folder}: not a surrogate folder (needs surrogate.json and student.pt from "
                           "`facesec surrogate train`)")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
        teacher = card["teacher"]
        net = students.build(card["architecture"], teacher["embedding_size"])
        info = RecognizerInfo(f"surrogate:{folder.name}", int(teacher["input_size"]), _template(teacher["template"]),
                              int(teacher["embedding_size"]), teacher["comparison"], teacher["native_threshold"],
                              file_digest(state_path), trained_on=_trained_on(card["data"]))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"{card_path}: not a readable student card ({type(exc).__name__}: {exc}); train the "
                           "student again with `facesec surrogate train`") from exc
    try:
        net.load_state_dict(_load_state_dict(state_path), strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{state_path} does not fit {card['architecture']}: {str(exc).splitlines()[0]}") from exc
    net.eval()
    return Recognizer(net, info)


def _trained_on(data: dict[str, Any]) -> TrainedOn:
    """The student card's dataset and training identities (a list of names; absent on cards that predate it)."""
    if not isinstance(data, dict):
        raise ValueError("data must be a mapping")
    names = data.get("train_identities")
    if names is not None and (not isinstance(names, list) or len(names) > MAX_CARD_IDENTITIES
                              or not all(isinstance(n, str) and 0 < len(n) <= 255 for n in names)):
        raise ValueError(f"data.train_identities must be a list of at most {MAX_CARD_IDENTITIES:,} identity names")
    dataset = data["dataset"]
    if not isinstance(dataset, str):
        raise ValueError("data.dataset must be a name")
    return TrainedOn(dataset, None if names is None else frozenset(names))


def torchscript(weights: str, sha256: str | None = None, input_size: int = 112, template: str = "arcface-112",
                embedding_size: int = 512, comparison: Comparison = "cosine", threshold: float | None = None,
                mean: float = 0.5, std: float = 0.5, input_bgr: bool = False) -> Recognizer:
    """A TorchScript file taking (x - mean) / std of [0, 1] RGB (BGR with input_bgr)."""
    path = resolve_weights(weights, sha256)
    try:
        net = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise WeightsError(f"cannot load TorchScript file {path}: {exc}") from exc
    info = _file_info("torchscript", path, input_size, template, embedding_size, comparison, threshold)
    return Recognizer(Normalized(net, mean, std, input_bgr), info)


def onnx_model(weights: str, sha256: str | None = None, input_size: int = 112, template: str = "arcface-112",
               embedding_size: int = 512, comparison: Comparison = "cosine", threshold: float | None = None,
               mean: float = 0.5, std: float = 0.5, input_bgr: bool = False) -> Recognizer:
    """An ONNX file converted to PyTorch with onnx2torch, so it can be attacked white-box."""
    path = resolve_weights(weights, sha256)
    try:
        from onnx2torch import convert
    except ImportError as exc:
        raise ConfigError("ONNX recognizers need the onnx extra: pip install 'facesec[onnx]'") from exc
    try:
        net = convert(str(path))
    except Exception as exc:
        raise WeightsError(f"cannot convert ONNX file {path} (export with dynamo=False): {exc}") from exc
    net.eval()
    info = _file_info("onnx", path, input_size, template, embedding_size, comparison, threshold)
    return Recognizer(Normalized(net, mean, std, input_bgr), info)


class OnnxSession(nn.Module):
    """An onnxruntime session on (x - mean) / std of [0, 1] RGB: a black box, no gradients."""

    def __init__(self, path: Path, mean: float, std: float, input_bgr: bool) -> None:
        super().__init__()
        import onnxruntime

        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=onnxruntime.get_available_providers())
        except Exception as exc:  # onnxruntime raises its own exception types for a bad file
            raise WeightsError(f"onnxruntime cannot open {path}: {exc}") from exc
        self.input_name = self.session.get_inputs()[0].name
        self.mean, self.std, self.input_bgr = mean, std, input_bgr
        self.anchor = nn.Parameter(torch.zeros(0), requires_grad=False)  # tells Recognizer.embed the device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().float()
        if self.input_bgr:
            x = x.flip(1)
        feed = ((x - self.mean) / self.std).cpu().numpy()
        return torch.from_numpy(self.session.run(None, {self.input_name: feed})[0]).to(x.device)


def onnx_runtime(weights: str, sha256: str | None = None, input_size: int = 112, template: str = "arcface-112",
                 embedding_size: int = 512, comparison: Comparison = "cosine", threshold: float | None = None,
                 mean: float = 0.5, std: float = 0.5, input_bgr: bool = False) -> Recognizer:
    """An ONNX file run by onnxruntime as deployed: query-only (reach it by transfer or by queries)."""
    path = resolve_weights(weights, sha256)
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ConfigError("onnxruntime recognizers need the onnx extra: pip install 'facesec[onnx]'") from exc
    info = _file_info("onnxruntime", path, input_size, template, embedding_size, comparison, threshold)
    info = dataclasses.replace(info, differentiable=False)
    return Recognizer(OnnxSession(path, mean, std, input_bgr), info)
