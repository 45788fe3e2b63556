"""Readers for TensorFlow.js model files, numpy only (no TensorFlow, no node).

Two formats, both documented by tfjs (``tfjs-core/src/io/types.ts``, ``tfjs-converter``):

**Weights manifest** (``*-weights_manifest.json``, or the ``weightsManifest`` entry of a
``model.json``): a list of groups ``{"paths": [shard, ...], "weights": [entry, ...]}``. A group's
shards are concatenated in order into one byte buffer holding its weights back to back, in
entry order, little-endian. An entry is ``{"name", "shape", "dtype"}`` plus an optional
``"quantization"``:

- none: raw ``float32`` / ``int32`` (4 bytes each) or ``bool`` (1 byte);
- ``{"dtype": "uint8" | "uint16", "scale": s, "min": m}``: affine quantisation, the stored
  integer ``q`` stands for ``q * s + m`` (computed here in float64, then cast to the entry's
  dtype; an ``int32`` entry is rounded);
- ``{"dtype": "float16"}``: IEEE half floats (2 bytes), widened to float32.

**Graph model** (``model.json`` with ``"format": "graph-model"``): ``modelTopology.node`` is a
TensorFlow GraphDef as JSON: nodes ``{"name", "op", "input": [...], "attr": {...}}`` in
topological order; constants are ``Const`` nodes whose values are the manifest weights of the
same name. :func:`read_graph_model` returns the nodes in file order with decoded attributes
(strings base64-decoded, integer lists as ints) and the constants as numpy arrays.

Also here: TensorFlow's ``"SAME"`` padding rule (:func:`same_padding`), which PyTorch's
symmetric ``padding=`` cannot express at stride 2 on even sizes.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: bytes per stored element, by storage dtype
_ITEM_BYTES = {"float32": 4, "int32": 4, "bool": 1, "uint8": 1, "uint16": 2, "float16": 2}
_NP = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}


class TfjsFormatError(ValueError):
    """A tfjs file does not follow the format (the message names the file and the problem)."""


def _shape(entry: dict, where: str) -> tuple[int, ...]:
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise TfjsFormatError(f"{where}: weight {entry.get('name')!r} has no valid shape ({shape!r})")
    return tuple(shape)


def decode_weight(entry: dict, raw: bytes, where: str = "<manifest>") -> np.ndarray:
    """One manifest entry's bytes -> its array (dequantised, see module docstring).

    Args:
        entry: the manifest entry (``name``, ``shape``, ``dtype``, optional ``quantization``).
        raw: exactly the entry's bytes.
        where: file name for error messages.
    """
    name = entry.get("name")
    shape = _shape(entry, where)
    dtype = entry.get("dtype", "float32")
    if dtype not in _NP:
        raise TfjsFormatError(f"{where}: weight {name!r} has unsupported dtype {dtype!r}")
    n = math.prod(shape)
    q = entry.get("quantization")
    if q is None:
        arr = np.frombuffer(raw, dtype=np.dtype(_NP[dtype]).newbyteorder("<"), count=n)
        return arr.astype(_NP[dtype]).reshape(shape)
    qd = q.get("dtype")
    if qd == "float16":
        arr = np.frombuffer(raw, dtype=np.dtype(np.float16).newbyteorder("<"), count=n).astype(np.float64)
    elif qd in ("uint8", "uint16"):
        if "scale" not in q or "min" not in q:
            raise TfjsFormatError(f"{where}: weight {name!r}: {qd} quantisation without scale/min")
        ints = np.frombuffer(raw, dtype=np.dtype(qd).newbyteorder("<"), count=n).astype(np.float64)
        arr = ints * float(q["scale"]) + float(q["min"])
    else:
        raise TfjsFormatError(f"{where}: weight {name!r} has unsupported quantisation {qd!r}")
    if dtype == "int32":
        arr = np.rint(arr)
    return arr.astype(_NP[dtype]).reshape(shape)


def stored_nbytes(entry: dict, where: str = "<manifest>") -> int:
    """Bytes an entry occupies in the shard buffer."""
    q = entry.get("quantization")
    key = q.get("dtype") if q else entry.get("dtype", "float32")
    if key not in _ITEM_BYTES:
        raise TfjsFormatError(f"{where}: weight {entry.get('name')!r} has unsupported storage dtype {key!r}")
    return math.prod(_shape(entry, where)) * _ITEM_BYTES[key]


def read_weights(manifest: list[dict], folder: str | Path, where: str = "<manifest>") -> dict[str, np.ndarray]:
    """All weights of a weights manifest whose shard files lie in ``folder``.

    Args:
        manifest: the parsed manifest (list of groups).
        folder: where the shard files (``paths``) are.
        where: the manifest's file name, for messages.
    Returns:
        {weight name: array} in manifest order (float32 / int32 / bool arrays).
    Raises:
        TfjsFormatError: malformed manifest, missing shard, or shards whose size does not match
            the entries (too short or with bytes left over).
    """
    if not isinstance(manifest, list):
        raise TfjsFormatError(f"{where}: a weights manifest is a list of groups, got {type(manifest).__name__}")
    folder = Path(folder)
    out: dict[str, np.ndarray] = {}
    for gi, group in enumerate(manifest):
        if not isinstance(group, dict) or "paths" not in group or "weights" not in group:
            raise TfjsFormatError(f"{where}: group {gi} lacks 'paths' / 'weights'")
        chunks = []
        for p in group["paths"]:
            shard = folder / p
            if not shard.is_file():
                raise TfjsFormatError(f"{where}: shard file {shard} not found")
            chunks.append(shard.read_bytes())
        buf = b"".join(chunks)
        off = 0
        for entry in group["weights"]:
            nb = stored_nbytes(entry, where)
            if off + nb > len(buf):
                raise TfjsFormatError(f"{where}: shards of group {gi} end before weight {entry.get('name')!r} "
                                      f"({len(buf)} bytes, need {off + nb})")
            out[entry["name"]] = decode_weight(entry, buf[off:off + nb], where)
            off += nb
        if off != len(buf):
            raise TfjsFormatError(f"{where}: group {gi} shards hold {len(buf)} bytes, the entries use {off}")
    return out


def read_weights_manifest(path: str | Path) -> dict[str, np.ndarray]:
    """A ``*-weights_manifest.json`` file (shards beside it) -> {name: array}."""
    path = Path(path)
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TfjsFormatError(f"{path}: not a readable JSON weights manifest ({exc})") from exc
    return read_weights(manifest, path.parent, str(path))


# ----------------------------------------------------------------------------- graph models
@dataclass
class GraphNode:
    """One node of a tfjs graph model: ``op`` (TF op name), ``inputs`` (node names, a ``:k``
    output suffix kept), ``attr`` (decoded: str, int, float, bool, lists of those, dtype names)."""

    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attr: dict[str, Any] = field(default_factory=dict)


@dataclass
class GraphModel:
    """A parsed graph model: ``nodes`` in file order, ``consts`` {name: array} (the weights),
    ``signature`` as stored (input/output tensor names and shapes)."""

    nodes: list[GraphNode]
    consts: dict[str, np.ndarray]
    signature: dict

    def node(self, name: str) -> GraphNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)


def _decode_attr_value(v: dict) -> Any:
    if "list" in v:
        lst = v["list"]
        if "i" in lst:
            return [int(x) for x in lst["i"]]
        if "s" in lst:
            return [base64.b64decode(x).decode("utf-8", "replace") for x in lst["s"]]
        if "f" in lst:
            return [float(x) for x in lst["f"]]
        if "b" in lst:
            return [bool(x) for x in lst["b"]]
        return []
    if "s" in v:
        return base64.b64decode(v["s"]).decode("utf-8", "replace")
    if "i" in v:
        return int(v["i"])
    if "f" in v:
        return float(v["f"])
    if "b" in v:
        return bool(v["b"])
    if "type" in v:
        return v["type"]
    if "shape" in v:
        return [int(d.get("size", -1)) for d in v["shape"].get("dim", [])]
    return v


def decode_attrs(attr: dict) -> dict[str, Any]:
    """A GraphDef JSON ``attr`` map -> plain Python values (strings base64-decoded)."""
    return {k: _decode_attr_value(v) for k, v in (attr or {}).items()}


def read_graph_model(path: str | Path) -> GraphModel:
    """A tfjs ``model.json`` graph model (weight shards beside it) -> :class:`GraphModel`.

    Raises:
        TfjsFormatError: not a graph model, or a ``Const`` node without a weight.
    """
    path = Path(path)
    try:
        model = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TfjsFormatError(f"{path}: not a readable JSON model ({exc})") from exc
    if not isinstance(model, dict) or "modelTopology" not in model or "weightsManifest" not in model:
        raise TfjsFormatError(f"{path}: not a tfjs model.json (needs modelTopology and weightsManifest)")
    if model.get("format") not in (None, "graph-model"):
        raise TfjsFormatError(f"{path}: format {model.get('format')!r} is not a graph model")
    topo = model["modelTopology"]
    if not isinstance(topo, dict) or "node" not in topo:
        raise TfjsFormatError(f"{path}: modelTopology has no 'node' list (a layers model?)")
    consts = read_weights(model["weightsManifest"], path.parent, str(path))
    nodes = [GraphNode(n["name"], n["op"], list(n.get("input", [])), decode_attrs(n.get("attr", {})))
             for n in topo["node"]]
    for n in nodes:
        if n.op == "Const" and n.name not in consts:
            raise TfjsFormatError(f"{path}: Const node {n.name!r} has no weight in the manifest")
    return GraphModel(nodes, consts, model.get("signature", {}))


# ----------------------------------------------------------------------------- TF padding
def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow ``"SAME"`` padding of one spatial axis: (before, after).

    The output has ``ceil(size / stride)`` samples; the total padding is
    ``max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)``, split with the smaller
    half *before* (so stride 2 on an even size pads 0 before and 1 after for a 3-tap kernel).
    """
    out = -(-size // stride)
    eff = (kernel - 1) * dilation + 1
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2
