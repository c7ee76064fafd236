"""Recognizers from TF.js graph models: any such model (`tfjs`), and HSE FaceRes (`hse-faceres`), an
identification network from another lab than dlib's, fetched from its npm package."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from facesec.data.align import TEMPLATES
from facesec.errors import ConfigError, WeightsError
from facesec.recognizers import packaged
from facesec.recognizers.base import Comparison, Recognizer, RecognizerInfo
from facesec.recognizers.builtin import Normalized
from facesec.recognizers.tfjs_format import locate, read_graph_model
from facesec.recognizers.tfjs_graph import TfjsGraph

HSE_TEMPLATE = "arcface-224"
"""The crop hse-faceres verifies best on (docs/recognizers.md: each candidate measured on celeba-mini)."""
HSE_OUTPUT = "global_pooling/Mean"
"""The 1024-d identity descriptor; the age and gender heads sit beside it and are not computed."""


class Nhwc(nn.Module):
    """NCHW images in, the graph's NHWC input out."""

    def __init__(self, graph: TfjsGraph) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph(x.permute(0, 2, 3, 1).contiguous())  # one copy: the whole graph then runs channels-last


def build(weights: str | Path, output: str | None, name: str, template: str, input_size: int | None = None,
          embedding_size: int | None = None, comparison: Comparison = "cosine", threshold: float | None = None,
          mean: float = 0.0, std: float = 1 / 255, input_bgr: bool = False, sha256: str | None = None) -> Recognizer:
    """A graph model's `output` node as a recognizer on [0, 1] RGB crops; (x - mean) / std feeds the graph."""
    model = read_graph_model(weights)  # a model.json or its folder
    if sha256 and sha256.lower() != model.sha256:
        raise WeightsError(f"sha256 mismatch for {model.source}: expected {sha256}, got {model.sha256} "
                           "(the digest of model.json followed by its weight shards)")
    outputs = list(model.signature.get("outputs", {})) if isinstance(model.signature.get("outputs"), dict) else []
    if output is None:
        if len(outputs) != 1:
            raise ConfigError(f"{model.source}: say which node gives the embedding with 'output' "
                              f"(the model's outputs: {', '.join(outputs) or 'not listed'})")
        output = outputs[0]
    graph = TfjsGraph(model, output).eval()
    declared = graph.input_shape
    if input_size is None:
        if len(declared) != 4 or declared[1] != declared[2] or declared[1] <= 0:
            raise ConfigError(f"{model.source}: input shape {declared} is not a square image; give input_size")
        input_size = declared[1]
    if template not in TEMPLATES:
        raise ConfigError(f"unknown alignment template '{template}'; known: {', '.join(TEMPLATES)}")
    if TEMPLATES[template].size != input_size:
        raise ConfigError(f"template {template} makes {TEMPLATES[template].size}px crops but {model.source} takes "
                          f"{input_size}px; choose a template of that size ({', '.join(TEMPLATES)})")
    net = Normalized(Nhwc(graph), mean, std, input_bgr)
    with torch.no_grad():  # checks every shape on the way to the output before anyone relies on it
        probe = net(torch.zeros(1, 3, input_size, input_size))
    if probe.dim() != 2 or (embedding_size is not None and probe.shape[1] != embedding_size):
        raise WeightsError(f"{model.source}: node {output!r} gives shape {tuple(probe.shape)}, not N x "
                           f"{embedding_size or 'D'} embeddings; choose another 'output'")
    if not bool(torch.isfinite(probe).all()):
        raise WeightsError(f"{model.source}: node {output!r} gives NaN or infinite values for a black image; "
                           "the weights or the graph are broken")
    info = RecognizerInfo(name, input_size, TEMPLATES[template], int(probe.shape[1]), comparison, threshold,
                          model.sha256)
    return Recognizer(net, info)


def tfjs(weights: str, output: str | None = None, sha256: str | None = None, input_size: int | None = None,
         template: str = "arcface-112", embedding_size: int | None = None, comparison: Comparison = "cosine",
         threshold: float | None = None, mean: float = 0.0, std: float = 1 / 255,
         input_bgr: bool = False) -> Recognizer:
    """A TF.js graph model (`weights`: its model.json or folder); `output` names the embedding node."""
    path = locate(weights)
    return build(path, output, f"tfjs:{path.parent.name}/{path.name}", template, input_size, embedding_size,
                 comparison, threshold, mean, std, input_bgr, sha256)


def hse_faceres(template: str = HSE_TEMPLATE) -> Recognizer:
    """HSE FaceRes from @vladmandic/human 3.3.6 (run `facesec models fetch hse-faceres` once); RGB 0..255 input."""
    root = packaged.installed("hse-faceres")
    return build(root / "faceres.json", HSE_OUTPUT, "hse-faceres", template, embedding_size=1024)
