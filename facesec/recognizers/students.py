"""Student networks for model stealing: they take the teacher's aligned crops, return its embeddings.

`dlib-resnet` is the teacher's own architecture trained from scratch (the "architecture known"
attacker); `iresnet18` is ArcFace's small backbone (the "architecture unknown" attacker), fed the
teacher's crop resized to its 112 x 112 input.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from facesec.recognizers.dlib_resnet import DlibResNet
from facesec.recognizers.iresnet import IRESNET_LAYERS, IResNet

Architecture = Literal["dlib-resnet", "iresnet18"]
ARCHITECTURES: tuple[Architecture, ...] = ("dlib-resnet", "iresnet18")


class Resized(nn.Module):
    """[0, 1] RGB at any size -> resized to `size`, normalised to [-1, 1], then the network."""

    def __init__(self, net: nn.Module, size: int) -> None:
        super().__init__()
        self.net, self.size = net, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.net((x - 0.5) / 0.5)


def build(arch: str, embedding_size: int) -> nn.Module:
    """A freshly initialised, trainable student of `arch` with the teacher's embedding size."""
    if arch == "dlib-resnet":
        if embedding_size != 128:
            raise ValueError(f"the dlib-resnet architecture embeds in 128 dimensions, not {embedding_size}")
        return DlibResNet(norm="batchnorm")
    if arch == "iresnet18":
        return Resized(IResNet(IRESNET_LAYERS[18], embedding_size), 112)
    raise ValueError(f"unknown student architecture '{arch}'; known: {', '.join(ARCHITECTURES)}")
