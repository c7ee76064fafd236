"""Reading a TF.js graph node's attributes and integer constants, and the padding it asks for (TensorFlow's
rules), shared by the graph's ops and its memory limits."""

from __future__ import annotations

import base64
from typing import Any

import torch

from facesec.errors import WeightsError

Node = dict[str, Any]

MAX_PAD = 1024
"""Pad amounts above this per side are refused: a hostile model must not allocate without bound."""


def attr(node: Node, key: str, default: Any = None) -> Any:
    """A GraphDef attribute as a Python value: ints, floats, bools, strings and their lists."""
    value = node.get("attr", {}).get(key)
    if value is None:
        return default
    if "list" in value:
        lst = value["list"]
        if "i" in lst:
            return [int(v) for v in lst["i"]]
        if "s" in lst:
            return [base64.b64decode(v).decode() for v in lst["s"]]
        if "f" in lst:
            return [float(v) for v in lst["f"]]
        return []
    if "s" in value:
        return base64.b64decode(value["s"]).decode()
    if "i" in value:
        return int(value["i"])
    if "f" in value:
        return float(value["f"])
    if "b" in value:
        return bool(value["b"])
    return default


def const_ints(t: torch.Tensor) -> list[int]:
    return [int(v) for v in t.flatten().tolist()]


def same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's SAME padding along one axis: the extra pixel goes after (bottom/right)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def spatial(node: Node, key: str, default: int = 1) -> tuple[int, int]:
    values = attr(node, key, [default] * 4)
    return (values[1], values[2]) if len(values) == 4 else (values[0], values[1])


def check_nhwc(node: Node) -> None:
    fmt = attr(node, "data_format", "NHWC")
    if fmt != "NHWC":
        raise WeightsError(f"node {node['name']!r} ({node['op']}): data_format {fmt} is not supported (NHWC only)")


def pads(x: torch.Tensor, node: Node, kernel: tuple[int, int], stride: tuple[int, int],
         dilation: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) padding of x (NCHW view) as the node's `padding` says (SAME, VALID, EXPLICIT)."""
    padding = attr(node, "padding", "VALID")
    if padding == "VALID":
        return 0, 0, 0, 0
    if padding == "SAME":
        top, bottom = same_pads(x.shape[2], kernel[0], stride[0], dilation[0])
        left, right = same_pads(x.shape[3], kernel[1], stride[1], dilation[1])
    elif padding == "EXPLICIT":
        p = attr(node, "explicit_paddings", [])
        if len(p) != 8:
            raise WeightsError(f"node {node['name']!r}: EXPLICIT padding needs 8 explicit_paddings")
        top, bottom, left, right = p[2], p[3], p[4], p[5]
        if not all(0 <= v <= MAX_PAD for v in (top, bottom, left, right)):
            raise WeightsError(f"node {node['name']!r}: explicit_paddings {p[2:6]} must each be between 0 and "
                               f"{MAX_PAD}")
    else:
        raise WeightsError(f"node {node['name']!r}: unknown padding {padding!r}")
    return top, bottom, left, right
