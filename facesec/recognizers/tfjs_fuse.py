"""Build-time folding of the elementwise tails that converters leave after convolutions.

A converted Keras network often runs `Conv2D -> Mul(gamma) -> Add(beta) -> Relu -> Minimum(6) ->
Maximum(0)` (a batch norm and a ReLU6): five passes over each activation map. Scale and shift fold
into the filter and a bias, the clamps into one fused activation, and the convolution becomes
`_FusedConv2D` / `FusedDepthwiseConv2dNative`, which the executor already runs. Same arithmetic up to
float rounding; fewer passes (benchmarks/embed_throughput.py).
"""

from __future__ import annotations

import base64
import copy
from typing import Any

import numpy as np

Node = dict[str, Any]
CONVS = {"Conv2D": "_FusedConv2D", "DepthwiseConv2dNative": "FusedDepthwiseConv2dNative"}


def _inputs(node: Node) -> list[str]:
    return [i.split(":")[0] for i in node.get("input", []) if not i.startswith("^")]


def _scalar(nodes: dict[str, Node], weights: dict[str, np.ndarray], name: str) -> float | None:
    value = weights.get(name) if nodes.get(name, {}).get("op") == "Const" else None
    return float(value) if value is not None and value.dtype == np.float32 and value.size == 1 else None


def _channel_const(nodes: dict[str, Node], weights: dict[str, np.ndarray], name: str,
                   channels: int) -> np.ndarray | None:
    """A float constant that scales or shifts each output channel (shape [C], [1, 1, 1, C] or a scalar)."""
    value = weights.get(name) if nodes.get(name, {}).get("op") == "Const" else None
    if value is None or value.dtype != np.float32:
        return None
    if value.size == 1:
        return np.full(channels, float(value.reshape(-1)[0]), np.float32)
    if value.size == channels and value.shape[-1] == channels:
        return value.reshape(channels)
    return None


def fold_convolutions(order: list[str], nodes: dict[str, Node], weights: dict[str, np.ndarray],
                      output: str) -> tuple[list[str], dict[str, Node], dict[str, np.ndarray], dict[str, str]]:
    """The schedule with scale, shift and ReLU/ReLU6 tails folded into their convolutions.

    Returns the new order, nodes, weights, and aliases (a removed node -> the node now computing it).
    """
    nodes = {n: copy.deepcopy(v) for n, v in nodes.items()}
    weights = dict(weights)
    consumers: dict[str, list[str]] = {n: [] for n in order}
    for n in order:
        for i in _inputs(nodes[n]):
            consumers.setdefault(i, []).append(n)
    alias: dict[str, str] = {}
    removed: set[str] = set()
    for name in order:
        conv = nodes[name]
        if conv["op"] not in CONVS or name in removed:
            continue
        ins = _inputs(conv)
        if len(ins) != 2 or len(consumers.get(ins[1], [])) != 1 or ins[1] not in weights:
            continue
        kernel = weights[ins[1]].astype(np.float32)
        if kernel.ndim != 4:
            continue  # the executor names the problem
        depthwise = conv["op"] == "DepthwiseConv2dNative"
        channels = kernel.shape[2] * kernel.shape[3] if depthwise else kernel.shape[3]
        bias = np.zeros(channels, np.float32)
        activation: str | None = None
        absorbed: list[str] = []
        last = name
        while last != output and len(consumers.get(last, [])) == 1:
            nxt = consumers[last][0]
            node = nodes[nxt]
            others = [i for i in _inputs(node) if i != last]
            op = node["op"]
            if activation is None and op == "Mul" and len(others) == 1:
                k = _channel_const(nodes, weights, others[0], channels)
                if k is None:
                    break
                kernel = kernel * (k.reshape(kernel.shape[2], kernel.shape[3]) if depthwise else k)
                bias = bias * k
            elif activation is None and op in ("Add", "AddV2", "BiasAdd") and len(others) == 1:
                b = _channel_const(nodes, weights, others[0], channels)
                if b is None:
                    break
                bias = bias + b
            elif activation is None and op in ("Relu", "Relu6"):
                activation = op
            elif activation == "Relu" and op == "Minimum" and len(others) == 1 \
                    and _scalar(nodes, weights, others[0]) == 6.0:
                activation = "Relu6"
            elif activation is not None and op == "Maximum" and len(others) == 1 \
                    and _scalar(nodes, weights, others[0]) == 0.0:
                pass  # already non-negative
            else:
                break
            absorbed.append(nxt)
            last = nxt
        if not absorbed:
            continue
        alias.update({n: name for n in absorbed})
        removed.update(absorbed + [ins[1]])
        weights[f"{name}/folded_filter"] = kernel.astype(np.float32)
        weights[f"{name}/folded_bias"] = bias.astype(np.float32)
        fused = ["BiasAdd"] + ([activation] if activation else [])
        conv["folded_from"] = conv["op"]
        conv["op"] = CONVS[conv["op"]]
        conv["input"] = [conv["input"][0], f"{name}/folded_filter", f"{name}/folded_bias"]
        conv.setdefault("attr", {})["fused_ops"] = {"list": {"s": [base64.b64encode(f.encode()).decode()
                                                                    for f in fused]}}
        for const in (f"{name}/folded_filter", f"{name}/folded_bias"):
            nodes[const] = {"name": const, "op": "Const"}
    new_order = _reschedule(order, nodes, removed, alias.get(output, output))
    return new_order, {n: nodes[n] for n in new_order}, {n: weights[n] for n in new_order if n in weights}, alias


def _reschedule(order: list[str], nodes: dict[str, Node], removed: set[str], output: str) -> list[str]:
    """The order without the absorbed nodes, each folded convolution after its new constants, and no constant
    that nothing reads any more."""
    new_order: list[str] = []
    for n in order:
        if n in removed:
            continue
        if nodes[n]["op"] in CONVS.values() and f"{n}/folded_filter" in nodes:
            new_order += [f"{n}/folded_filter", f"{n}/folded_bias"]
        new_order.append(n)
    used = {i for n in new_order for i in _inputs(nodes[n])} | {output}
    return [n for n in new_order if nodes[n]["op"] != "Const" or n in used]
