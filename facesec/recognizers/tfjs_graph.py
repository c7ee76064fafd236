"""A TF.js graph model as a PyTorch module: the nodes an output needs, run in order with TensorFlow's
semantics, so gradients reach the input pixels.

Tensors keep TensorFlow's layout (NHWC); convolutions and pools look at them through a permuted view
(channels-last memory, no copies). Only the ops below are known; any other op on the way to the
output is refused when the model is built, and one forward pass at build time checks every shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facesec.errors import WeightsError
from facesec.recognizers.tfjs_attrs import MAX_PAD, Node, attr, check_nhwc, const_ints, pads, spatial
from facesec.recognizers.tfjs_format import GraphModel
from facesec.recognizers.tfjs_fuse import fold_convolutions
from facesec.recognizers.tfjs_limits import MAX_FORWARD_VALUES, MAX_NODE_VALUES, planned_values

Value = Any
"""A tensor, or a Python float for a scalar float constant (so clamps need no device tensor)."""
OpFn = Callable[[Node, list[Value]], torch.Tensor]


def _pad_nchw(x: torch.Tensor, node: Node, kernel: tuple[int, int], stride: tuple[int, int],
              dilation: tuple[int, int], value: float = 0.0) -> torch.Tensor:
    """x (NCHW view) padded as the node's `padding` says."""
    top, bottom, left, right = pads(x, node, kernel, stride, dilation)
    return F.pad(x, (left, right, top, bottom), value=value) if top or bottom or left or right else x


def _conv(node: Node, x: torch.Tensor, w: torch.Tensor, depthwise: bool) -> torch.Tensor:
    """Conv2D (filter HWIO) or DepthwiseConv2dNative (filter HW, in, multiplier) on NHWC input."""
    check_nhwc(node)
    if x.dim() != 4 or w.dim() != 4:
        raise ValueError(f"expects 4-d input and filter, got {tuple(x.shape)} and {tuple(w.shape)}")
    kh, kw, cin, cout = w.shape
    if depthwise:
        if cin != x.shape[3]:
            raise ValueError(f"filter for {cin} channels, input has {x.shape[3]}")
        weight, groups = w.permute(2, 3, 0, 1).reshape(cin * cout, 1, kh, kw), cin
    else:
        if x.shape[3] % cin:
            raise ValueError(f"filter for {cin} input channels, input has {x.shape[3]}")
        weight, groups = w.permute(3, 2, 0, 1), x.shape[3] // cin
    stride, dilation = spatial(node, "strides"), spatial(node, "dilations")
    xn = x.permute(0, 3, 1, 2)
    top, bottom, left, right = pads(xn, node, (kh, kw), stride, dilation)
    if top == bottom and left == right:  # the convolution pads by itself: no padded copy of the input
        padding = (top, left)
    else:
        xn, padding = F.pad(xn, (left, right, top, bottom)), (0, 0)
    return F.conv2d(xn, weight, stride=stride, dilation=dilation, groups=groups, padding=padding).permute(0, 2, 3, 1)


ACTIVATIONS: dict[str, Callable[[torch.Tensor, Node], torch.Tensor]] = {
    "Relu": lambda x, n: F.relu(x),
    "Relu6": lambda x, n: x.clamp(0, 6),
    "Elu": lambda x, n: F.elu(x),
    "Selu": lambda x, n: F.selu(x),
    "Sigmoid": lambda x, n: torch.sigmoid(x),
    "Tanh": lambda x, n: torch.tanh(x),
    "LeakyRelu": lambda x, n: F.leaky_relu(x, attr(n, "alpha", attr(n, "leakyrelu_alpha", 0.2))),
}


def _fused(node: Node, y: torch.Tensor, extra: list[torch.Tensor]) -> torch.Tensor:
    """The `fused_ops` tail of _FusedConv2D, FusedDepthwiseConv2dNative and _FusedMatMul."""
    ops = attr(node, "fused_ops", [])
    args = list(extra)
    for op in ops:
        if op == "BiasAdd":
            if not args:
                raise ValueError("BiasAdd without a bias input")
            y = y + args.pop(0)
        elif op == "Prelu":
            if not args:
                raise ValueError("Prelu without an alpha input")
            alpha = args.pop(0)
            y = torch.where(y >= 0, y, alpha * y)
        elif op in ACTIVATIONS:
            y = ACTIVATIONS[op](y, node)
        else:
            raise WeightsError(f"node {node['name']!r} ({node['op']}): fused op {op!r} is not supported")
    return y


def _unary(fn: Callable[[torch.Tensor, Node], torch.Tensor]) -> OpFn:
    return lambda node, a: fn(a[0], node)


def _reduce(fn: Callable[..., torch.Tensor]) -> OpFn:
    def op(node: Node, a: list[torch.Tensor]) -> torch.Tensor:
        x, axes = a[0], const_ints(a[1])
        dims = sorted({d % x.dim() for d in axes})
        keep = bool(attr(node, "keep_dims", False))
        return fn(x, dim=dims, keepdim=keep) if dims else x

    return op


def _matmul(node: Node, a: list[torch.Tensor]) -> torch.Tensor:
    x = a[0].transpose(-1, -2) if attr(node, "transpose_a", False) else a[0]
    w = a[1].transpose(-1, -2) if attr(node, "transpose_b", False) else a[1]
    return x @ w


def _pool(kind: str) -> OpFn:
    def op(node: Node, a: list[torch.Tensor]) -> torch.Tensor:
        check_nhwc(node)
        kernel, stride = spatial(node, "ksize"), spatial(node, "strides")
        xn = a[0].permute(0, 3, 1, 2)
        if kind == "max":
            out = F.max_pool2d(_pad_nchw(xn, node, kernel, stride, (1, 1), float("-inf")), kernel, stride)
        else:  # padded cells do not count in TensorFlow's average
            total = F.avg_pool2d(_pad_nchw(xn, node, kernel, stride, (1, 1)), kernel, stride)
            ones = torch.ones_like(xn[:1, :1])
            count = F.avg_pool2d(_pad_nchw(ones, node, kernel, stride, (1, 1)), kernel, stride)
            out = total / count
        return out.permute(0, 2, 3, 1)

    return op


def _pad(node: Node, a: list[torch.Tensor]) -> torch.Tensor:
    amounts = const_ints(a[1])
    if len(amounts) != 2 * a[0].dim() or not all(0 <= p <= MAX_PAD for p in amounts):
        raise ValueError(f"paddings {amounts[:8]} must be 2 per axis, each between 0 and {MAX_PAD}")
    flat = [v for i in reversed(range(a[0].dim())) for v in (amounts[2 * i], amounts[2 * i + 1])]
    if node["op"] == "MirrorPad":
        mode = {"REFLECT": "reflect", "SYMMETRIC": None}[attr(node, "mode", "REFLECT")]
        if mode is None:
            raise WeightsError(f"node {node['name']!r}: MirrorPad SYMMETRIC is not supported")
        return F.pad(a[0].permute(0, 3, 1, 2), flat[:4], mode=mode).permute(0, 2, 3, 1)
    value = float(a[2]) if len(a) > 2 else 0.0
    return F.pad(a[0], flat, value=value)


def _batch_norm(node: Node, a: list[torch.Tensor]) -> torch.Tensor:
    check_nhwc(node)
    x, scale, offset, mean, var = a[:5]
    return (x - mean) * torch.rsqrt(var + attr(node, "epsilon", 1e-3)) * scale + offset


def _squeeze(node: Node, a: list[torch.Tensor]) -> torch.Tensor:
    dims = attr(node, "squeeze_dims", [])
    x = a[0]
    if not dims:
        return x.squeeze()
    for d in sorted((d % x.dim() for d in dims), reverse=True):
        x = x.squeeze(d)
    return x


OPS: dict[str, OpFn] = {
    "Identity": lambda n, a: a[0],
    "Add": lambda n, a: a[0] + a[1],
    "AddV2": lambda n, a: a[0] + a[1],
    "BiasAdd": lambda n, a: a[0] + a[1],
    "Sub": lambda n, a: a[0] - a[1],
    "Mul": lambda n, a: a[0] * a[1],
    "RealDiv": lambda n, a: a[0] / a[1],
    "Maximum": lambda n, a: _bound(a, "min"),
    "Minimum": lambda n, a: _bound(a, "max"),
    "SquaredDifference": lambda n, a: (a[0] - a[1]) ** 2,
    "Pow": lambda n, a: a[0] ** a[1],
    "Neg": lambda n, a: -a[0],
    "Abs": lambda n, a: a[0].abs(),
    "Exp": lambda n, a: a[0].exp(),
    "Log": lambda n, a: a[0].log(),
    "Sqrt": lambda n, a: a[0].sqrt(),
    "Rsqrt": lambda n, a: a[0].rsqrt(),
    "Square": lambda n, a: a[0] * a[0],
    "Softmax": lambda n, a: torch.softmax(a[0], dim=-1),
    **{name: _unary(fn) for name, fn in ACTIVATIONS.items()},
    "Conv2D": lambda n, a: _conv(n, a[0], a[1], depthwise=False),
    "DepthwiseConv2dNative": lambda n, a: _conv(n, a[0], a[1], depthwise=True),
    "_FusedConv2D": lambda n, a: _fused(n, _conv(n, a[0], a[1], depthwise=False), a[2:]),
    "FusedDepthwiseConv2dNative": lambda n, a: _fused(n, _conv(n, a[0], a[1], depthwise=True), a[2:]),
    "MatMul": _matmul,
    "_FusedMatMul": lambda n, a: _fused(n, _matmul(n, a), a[2:]),
    "Mean": _reduce(torch.mean),
    "Sum": _reduce(torch.sum),
    "Max": _reduce(torch.amax),
    "Min": _reduce(torch.amin),
    "MaxPool": _pool("max"),
    "AvgPool": _pool("avg"),
    "Pad": _pad,
    "PadV2": _pad,
    "MirrorPad": _pad,
    "FusedBatchNorm": _batch_norm,
    "FusedBatchNormV3": _batch_norm,
    "Reshape": lambda n, a: a[0].reshape(const_ints(a[1])),
    "Squeeze": _squeeze,
    "ExpandDims": lambda n, a: a[0].unsqueeze(const_ints(a[1])[0]),
    "ConcatV2": lambda n, a: torch.cat(a[:-1], dim=const_ints(a[-1])[0]),
}
"""TensorFlow op name -> implementation on the node and its input tensors."""


def _bound(a: list[Value], side: str) -> torch.Tensor:
    """Maximum (side "min") or Minimum ("max") of two values; against a scalar constant, one clamp."""
    x, y = a
    if isinstance(x, float):
        x, y = y, x
    if isinstance(y, float):
        return x.clamp(**{side: y})
    return torch.maximum(x, y) if side == "min" else torch.minimum(x, y)


def _ref(text: str) -> tuple[str, int]:
    """An input reference `name` or `name:k` as (node, output index)."""
    name, _, index = text.partition(":")
    if len(index) > 6:
        raise WeightsError(f"input {text[:60]!r}: an output index of {len(index):,} digits")
    return name, int(index) if index.isdigit() else 0


class TfjsGraph(nn.Module):
    """Computes one node of a graph model from its single input (NHWC, as the graph declares it).

    With `fuse`, scale/shift/ReLU tails are folded into their convolutions first (`tfjs_fuse`)."""

    def __init__(self, model: GraphModel, output: str, fuse: bool = True) -> None:
        super().__init__()
        self.source = model.source
        name, index = _ref(output)
        if name not in model.nodes:
            raise WeightsError(f"{model.source}: no node named {name!r} (the model's outputs: "
                               f"{', '.join(model.signature.get('outputs', {})) or 'see modelTopology'})")
        if index:
            raise WeightsError(f"{model.source}: output {output!r}: only a node's first output can be used")
        self.output = name
        self.order = _schedule(model, name)
        placeholders = [n for n in self.order if model.nodes[n]["op"] == "Placeholder"]
        if len(placeholders) != 1:
            raise WeightsError(f"{model.source}: {name!r} depends on {len(placeholders)} inputs; one is supported")
        self.input_name = placeholders[0]
        try:
            dims = model.nodes[self.input_name]["attr"]["shape"]["shape"].get("dim", [])
            self.input_shape = [int(d.get("size", -1)) for d in dims]
        except (KeyError, TypeError, ValueError, AttributeError):
            self.input_shape = []  # unknown: the recognizer asks for input_size
        self.nodes = {n: model.nodes[n] for n in self.order}
        weights = model.weights
        self.alias: dict[str, str] = {}
        """A node folded into a convolution -> that convolution."""
        if fuse:
            self.order, self.nodes, weights, self.alias = fold_convolutions(self.order, self.nodes, weights, name)
        self.slots: dict[str, int] = {}
        self.consts = nn.ParameterList()
        self.int_consts: dict[str, torch.Tensor] = {}
        """Integer constants (axes, shapes, paddings) stay on the CPU: reading them never syncs a device."""
        self.scalars: dict[str, float] = {}
        for n in self.order:
            if self.nodes[n]["op"] == "Const":
                if n not in weights:
                    raise WeightsError(f"{model.source}: constant {n!r} has no weights in the manifest")
                value = weights[n]
                if value.dtype != np.float32:
                    self.int_consts[n] = torch.from_numpy(value.astype(np.int64))
                    continue
                if value.ndim == 0:
                    self.scalars[n] = float(value)
                    continue
                self.slots[n] = len(self.consts)
                self.consts.append(nn.Parameter(torch.from_numpy(value), requires_grad=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[str, Value] = {}
        faces = max(len(x), 1)
        held = 0  # values all nodes' outputs hold: bounded per face (tfjs_limits)
        for name in self.order:
            node = self.nodes[name]
            op = node["op"]
            if op == "Placeholder":
                values[name] = x
            elif op == "Const":
                values[name] = self.consts[self.slots[name]] if name in self.slots else \
                    self.scalars.get(name, self.int_consts.get(name))
            else:
                inputs = [values[self._source(i)] for i in node.get("input", []) if not i.startswith("^")]
                self._check_size(name, planned_values(op, node, inputs), held, faces)
                values[name] = self._run(name, node, inputs)
                made = values[name].numel() if isinstance(values[name], torch.Tensor) else 1
                self._check_size(name, made, held, faces)
                held += made
        return values[self._source(self.output)]

    def _run(self, name: str, node: Node, inputs: list[Value]) -> torch.Tensor:
        """One node's output; whatever the op raises on inputs a crafted graph gives it is one WeightsError."""
        try:
            return OPS[node["op"]](node, inputs)
        except (RuntimeError, ValueError, IndexError, KeyError, TypeError, AttributeError, ArithmeticError) as exc:
            shapes = ", ".join(str(tuple(t.shape)) if isinstance(t, torch.Tensor) else "()" for t in inputs)
            op = node.get("folded_from", node["op"])
            raise WeightsError(f"{self.source}: node {name!r} ({op}) cannot run on inputs of shapes "
                               f"{shapes}: {str(exc).splitlines()[0]}") from exc

    def _check_size(self, name: str, values: int, held: int, faces: int) -> None:
        """WeightsError before a node's output (`values`) passes the per-face limits, alone or with the `held` rest."""
        if values > MAX_NODE_VALUES * faces or held + values > MAX_FORWARD_VALUES * faces:
            op = self.nodes[name].get("folded_from", self.nodes[name]["op"])
            raise WeightsError(f"{self.source}: node {name!r} ({op}) would make {values:,} values ({held:,} held "
                               f"before it) for {faces} face(s); the limits are {MAX_NODE_VALUES:,} per node and "
                               f"{MAX_FORWARD_VALUES:,} in all, per face")

    def _source(self, ref: str) -> str:
        name = _ref(ref)[0]
        return self.alias.get(name, name)


def _schedule(model: GraphModel, output: str) -> list[str]:
    """The nodes `output` depends on, each after its inputs (iterative; cycles and unknown ops refused)."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[tuple[str, bool]] = [(output, False)]
    while stack:
        name, expanded = stack.pop()
        if expanded:
            state[name] = 2
            order.append(name)
            continue
        if state.get(name) == 2:
            continue
        if state.get(name) == 1:
            raise WeightsError(f"{model.source}: the graph has a cycle through {name!r}")
        node = model.nodes.get(name)
        if node is None:
            raise WeightsError(f"{model.source}: a node reads {name!r}, which the graph does not have")
        op = node["op"]
        if op not in OPS and op not in ("Placeholder", "Const"):
            raise WeightsError(f"{model.source}: node {name!r} uses op {op!r}, which facesec's TF.js loader does "
                               f"not support (supported: {', '.join(sorted(OPS))})")
        state[name] = 1
        stack.append((name, True))
        for ref in node.get("input", []):
            if not isinstance(ref, str):
                raise WeightsError(f"{model.source}: node {name!r} has a malformed input {ref!r}")
            if ref.startswith("^"):
                continue
            dep, index = _ref(ref)
            if index:
                raise WeightsError(f"{model.source}: node {name!r} reads output {index} of {dep!r}; only first "
                                   "outputs are supported")
            if state.get(dep) == 1:
                raise WeightsError(f"{model.source}: the graph has a cycle through {dep!r}")
            if state.get(dep) != 2:
                stack.append((dep, False))
    return order
