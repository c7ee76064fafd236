"""How much memory a TF.js graph may take, checked before each op allocates: a crafted graph of a few hundred
bytes (an outer product, a huge padding, a convolution to a million channels) must fail in one line, not
exhaust the machine.

Limits are per face of the batch, so a legitimate model scales with the batch size. hse-faceres (224 px)
measured: 84 nodes, at most 0.80 million values in one node's output, 5.0 million over a forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from facesec.recognizers.tfjs_attrs import Node, attr, const_ints, pads, spatial

MAX_NODE_VALUES = 1 << 24
"""Values one node may produce per face: 16.8 million (64 MB of float32), 21 times hse-faceres's largest."""
MAX_FORWARD_VALUES = 1 << 26
"""Values a forward pass may hold per face, all nodes together: 67 million (256 MB), 13 times hse-faceres."""

_CONVS = {"Conv2D": False, "_FusedConv2D": False, "DepthwiseConv2dNative": True, "FusedDepthwiseConv2dNative": True}


def planned_values(op: str, node: Node, inputs: Sequence[Any]) -> int:
    """An upper bound on the values the op's output (and a padded copy of its input) will hold; 0 when the
    inputs are malformed (the op then raises its own error)."""
    tensors = [t for t in inputs if isinstance(t, torch.Tensor)]
    try:
        if op in _CONVS:
            return _conv(node, tensors[0], tensors[1], _CONVS[op])
        if op in ("MatMul", "_FusedMatMul"):
            return _matmul(node, tensors[0], tensors[1])
        if op in ("Pad", "PadV2", "MirrorPad"):
            amounts = const_ints(tensors[1])
            return math.prod(d + sum(amounts[2 * i:2 * i + 2]) for i, d in enumerate(tensors[0].shape))
        if op in ("MaxPool", "AvgPool"):
            return _padded(node, tensors[0], spatial(node, "ksize"), (1, 1))
        if op == "ConcatV2":
            return sum(t.numel() for t in tensors)
        return math.prod(torch.broadcast_shapes(*(t.shape for t in tensors))) if tensors else 0
    except (IndexError, RuntimeError, ValueError, TypeError, KeyError, AttributeError):
        return 0


def _padded(node: Node, x: torch.Tensor, kernel: tuple[int, int], dilation: tuple[int, int]) -> int:
    """Values of x (NHWC) once padded as the node says."""
    top, bottom, left, right = pads(x.permute(0, 3, 1, 2), node, kernel, spatial(node, "strides"), dilation)
    n, h, w, c = x.shape
    return int(n * (h + top + bottom) * (w + left + right) * c)


def _conv(node: Node, x: torch.Tensor, w: torch.Tensor, depthwise: bool) -> int:
    kh, kw, cin, cout = w.shape
    padded = _padded(node, x, (kh, kw), spatial(node, "dilations"))
    channels = cin * cout if depthwise else cout
    return padded + padded // max(x.shape[3], 1) * channels  # the padded copy, and an output no larger per pixel


def _matmul(node: Node, x: torch.Tensor, w: torch.Tensor) -> int:
    rows = x.shape[-1] if attr(node, "transpose_a", False) else x.shape[-2]
    cols = w.shape[-2] if attr(node, "transpose_b", False) else w.shape[-1]
    return math.prod(torch.broadcast_shapes(x.shape[:-2], w.shape[:-2])) * rows * cols
