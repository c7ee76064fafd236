"""Reader for TensorFlow.js graph models: `model.json` (GraphDef topology + weights manifest) and
its binary weight shards.

Written from the format's documentation: the manifest lists groups of weights; a group's shard
files, concatenated in order, hold its weights back to back, each `numel * bytes` long, little-endian,
stored as its `dtype` or, when `quantization` is given, as `uint8` / `uint16` (value = q * scale + min)
or `float16`. Reading is strict: every shard byte must belong to exactly one weight, every weight must
be a constant of the graph, and paths may not leave the model's folder.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from facesec import safe_json
from facesec.errors import WeightsError

MAX_JSON_BYTES = 64 << 20
"""A topology larger than this is refused unread (real graph models have a few MB at most)."""

MAX_WEIGHT_BYTES = 2 << 30
"""Weights taking more are refused before any shard is read (hse-faceres has 7 MB; an IResNet-100, 261 MB)."""
MAX_NODES = 20_000
"""A topology of more nodes is refused (hse-faceres has 84; large ResNets a few thousand)."""
MAX_RANK = 8
"""A weight of more dimensions is refused (convolution kernels have four)."""

STORED = {"float32": ("<f4", 4), "int32": ("<i4", 4), "bool": ("u1", 1)}
"""Unquantised dtypes: numpy type and bytes per element."""
QUANTISED = {"uint8": ("u1", 1), "uint16": ("<u2", 2), "float16": ("<f2", 2)}
"""Quantisation dtypes: numpy type and bytes per element."""


@dataclass
class GraphModel:
    """A parsed graph model: its nodes by name, decoded weights, the signature and a digest of all files."""

    source: str
    nodes: dict[str, dict[str, Any]]
    weights: dict[str, np.ndarray]
    signature: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""
    n_weight_bytes: int = 0


def locate(path: str | Path) -> Path:
    """`model.json` itself, or the only `*.json` with a weights manifest in a folder."""
    p = Path(path).expanduser()
    if p.is_dir():
        candidates = [p / "model.json"] if (p / "model.json").is_file() else sorted(p.glob("*.json"))
        if len(candidates) != 1:
            raise WeightsError(f"{p}: expected one TF.js model.json in the folder, found "
                               f"{len(candidates)} .json files; give the file itself")
        p = candidates[0]
    if not p.is_file():
        raise WeightsError(f"TF.js model file not found: {p}")
    return p


def read_graph_model(path: str | Path, read_weights: bool = True) -> GraphModel:
    """Parse a TF.js graph model strictly; WeightsError (one line) for anything unexpected. Without
    `read_weights` only model.json and the shards' names and sizes are checked (cheap: what `validate` does)."""
    json_path = locate(path)
    source = str(json_path)
    size = json_path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise WeightsError(f"{source}: {size:,} bytes is too large for a TF.js model.json (limit {MAX_JSON_BYTES:,})")
    raw = json_path.read_bytes()
    try:
        doc = safe_json.loads(raw)  # nesting and number length bounded: a crafted attribute cannot crash a copy
    except ValueError as exc:
        raise WeightsError(f"{source}: not valid JSON ({str(exc).splitlines()[0][:120]})") from exc
    if not isinstance(doc, dict):
        raise WeightsError(f"{source}: not a TF.js model (top level is not an object)")
    fmt = doc.get("format")
    if fmt != "graph-model":
        raise WeightsError(f"{source}: format is {fmt!r}, not 'graph-model' (convert Keras layers models with "
                           "tensorflowjs_converter --output_format=tfjs_graph_model)")
    topology = doc.get("modelTopology")
    node_list = topology.get("node") if isinstance(topology, dict) else None
    if not isinstance(node_list, list) or not node_list:
        raise WeightsError(f"{source}: modelTopology has no 'node' list")
    if len(node_list) > MAX_NODES:
        raise WeightsError(f"{source}: {len(node_list):,} nodes; more than {MAX_NODES:,} are refused")
    nodes: dict[str, dict[str, Any]] = {}
    for node in node_list:
        if not isinstance(node, dict) or not isinstance(node.get("name"), str) or not isinstance(node.get("op"), str):
            raise WeightsError(f"{source}: a node without a name or op: {str(node)[:80]}")
        inputs, attrs = node.get("input", []), node.get("attr", {})
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs) or not isinstance(attrs, dict):
            raise WeightsError(f"{source}: node {node['name']!r} has malformed inputs or attributes")
        if node["name"] in nodes:
            raise WeightsError(f"{source}: two nodes are named {node['name']!r}")
        nodes[node["name"]] = node
    digest = hashlib.sha256(raw)
    weights, n_bytes = _read_weights(json_path, doc.get("weightsManifest"), digest, read_weights)
    for name, value in weights.items():
        node = nodes.get(name)
        if node is None or node["op"] != "Const":
            raise WeightsError(f"{source}: weight {name!r} is not a constant of the graph")
        declared = _const_shape(node)
        if declared is not None and declared != list(value.shape):
            raise WeightsError(f"{source}: weight {name!r} has shape {list(value.shape)} in the manifest but "
                               f"{declared} in the graph")
    signature = doc["signature"] if isinstance(doc.get("signature"), dict) else {}
    return GraphModel(source, nodes, weights, signature, digest.hexdigest(), n_bytes)


def _const_shape(node: dict[str, Any]) -> list[int] | None:
    try:
        dims = node["attr"]["value"]["tensor"]["tensorShape"].get("dim", [])
        return [int(d["size"]) for d in dims]
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _shard_path(folder: Path, name: Any, source: str) -> Path:
    if not isinstance(name, str) or not name:
        raise WeightsError(f"{source}: weights manifest names a shard that is not a file name: {name!r}")
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts or "://" in name or "\\" in name:
        raise WeightsError(f"{source}: weight shard {name!r} lies outside the model's folder; refused")
    path = folder / Path(*rel.parts)
    if not path.resolve().is_relative_to(folder.resolve()):
        raise WeightsError(f"{source}: weight shard {name!r} is a link out of the model's folder; refused")
    if not path.is_file():
        raise WeightsError(f"{source}: weight shard {name!r} not found beside the model file")
    return path


def _spec_size(spec: Any, source: str) -> tuple[str, tuple[int, ...], int, dict[str, Any] | None]:
    """Name, shape, stored byte size and quantisation of one manifest entry (checked before any read)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise WeightsError(f"{source}: a weights manifest entry without a name: {str(spec)[:80]}")
    name = spec["name"]
    shape = spec.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise WeightsError(f"{source}: weight {name!r} has no valid shape ({shape!r})")
    count = math.prod(shape)
    if len(shape) > MAX_RANK or max(shape, default=0) > MAX_WEIGHT_BYTES or count > MAX_WEIGHT_BYTES:
        raise WeightsError(f"{source}: weight {name!r} has shape {str(shape)[:80]}: more than {MAX_RANK} dimensions, "
                           f"or a dimension or a count over {MAX_WEIGHT_BYTES:,}; refused")
    quant = spec.get("quantization")
    dtype = spec.get("dtype")
    if quant is not None:
        qdtype = quant.get("dtype") if isinstance(quant, dict) else None
        if qdtype not in QUANTISED or dtype not in ("float32", "int32"):
            raise WeightsError(f"{source}: weight {name!r}: unsupported quantisation {quant!r} of dtype {dtype!r} "
                               f"(supported: {', '.join(QUANTISED)} of float32 or int32)")
        if qdtype != "float16" and not all(isinstance(quant.get(k), (int, float)) and math.isfinite(quant[k])
                                           for k in ("scale", "min")):
            raise WeightsError(f"{source}: weight {name!r}: {qdtype} quantisation needs finite numeric scale and min")
        return name, tuple(shape), count * QUANTISED[qdtype][1], quant
    if dtype not in STORED:
        raise WeightsError(f"{source}: weight {name!r} has dtype {dtype!r}; supported: {', '.join(STORED)}")
    return name, tuple(shape), count * STORED[dtype][1], None


def _decode(data: bytes, spec: dict[str, Any], shape: tuple[int, ...], quant: dict[str, Any] | None) -> np.ndarray:
    if quant is None:
        value = np.frombuffer(data, dtype=STORED[spec["dtype"]][0])
        value = value.astype(bool) if spec["dtype"] == "bool" else value
    else:
        q = np.frombuffer(data, dtype=QUANTISED[quant["dtype"]][0])
        if quant["dtype"] == "float16":
            value = q.astype(np.float32)
        else:
            value = q.astype(np.float64) * float(quant["scale"]) + float(quant["min"])
            value = np.round(value) if spec["dtype"] == "int32" else value
        value = value.astype(np.int32 if spec["dtype"] == "int32" else np.float32)
    return value.reshape(shape).copy()


def _read_weights(json_path: Path, manifest: Any, digest: Any, read: bool) -> tuple[dict[str, np.ndarray], int]:
    """Every weight of every group, with each group's shards consumed to the last byte (without `read`, only the
    shards' names and sizes checked against the manifest)."""
    source = str(json_path)
    if not isinstance(manifest, list):
        raise WeightsError(f"{source}: no weightsManifest list")
    weights: dict[str, np.ndarray] = {}
    total = 0
    for g, group in enumerate(manifest):
        if not isinstance(group, dict) or not isinstance(group.get("paths"), list) \
                or not isinstance(group.get("weights"), list):
            raise WeightsError(f"{source}: weightsManifest[{g}] needs 'paths' and 'weights' lists")
        shards = [_shard_path(json_path.parent, name, source) for name in group["paths"]]
        specs = [_spec_size(spec, source) for spec in group["weights"]]
        expected = sum(s[2] for s in specs)
        if total + expected > MAX_WEIGHT_BYTES:
            raise WeightsError(f"{source}: its weights take more than {MAX_WEIGHT_BYTES:,} bytes; refused unread")
        available = sum(p.stat().st_size for p in shards)
        if available != expected:
            what = "unread bytes" if available > expected else "bytes missing"
            raise WeightsError(f"{source}: weight group {g} ({', '.join(group['paths'])}) holds {available:,} bytes "
                               f"but its manifest describes {expected:,}: {abs(available - expected):,} {what} "
                               "(truncated or edited file?)")
        total += expected
        if not read:
            continue
        data = b"".join(p.read_bytes() for p in shards)
        if len(data) != expected:  # a file changed between stat and read
            raise WeightsError(f"{source}: weight group {g} changed while being read")
        digest.update(data)
        offset = 0
        for spec, (name, shape, nbytes, quant) in zip(group["weights"], specs, strict=True):
            if name in weights:
                raise WeightsError(f"{source}: weight {name!r} appears twice in the manifest")
            value = _decode(data[offset:offset + nbytes], spec, shape, quant)
            if value.dtype == np.float32 and not np.isfinite(value).all():
                raise WeightsError(f"{source}: weight {name!r} holds NaN or infinite values")
            weights[name] = value
            offset += nbytes
    return weights, total
