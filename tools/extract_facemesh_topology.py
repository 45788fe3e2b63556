#!/usr/bin/env python3
"""Extract the FaceMesh topology facts from the npm package ``@vladmandic/human`` (MIT) into
``src/benchmark3dface/facenets/facemesh_topology.npz``.

Facts taken (as data, from ``src/face/facemeshcoords.ts`` of the package):

- ``TRI468``: the 468-point mesh triangles (flat list of vertex indices, 3 per triangle);
- ``VTX68``: the FaceMesh vertex standing for each iBUG-68 landmark;
- ``UV468``: the canonical (frontal, flattened) uv position of each vertex, u right, v down;
- ``meshAnnotations``: named vertex lists (silhouette, lips, eyes, brows ...);
- ``pairs*``: contour connections (face oval, lips, eyes, brows), kept as (K, 2) index pairs.

Usage::

    python tools/extract_facemesh_topology.py                 # npm pack @vladmandic/human@3.3.6
    python tools/extract_facemesh_topology.py --source DIR    # an unpacked package (DIR/src/face/...)

The output records the package, its version and the sha256 of the source file it was read from.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np

PACKAGE = "@vladmandic/human"
VERSION = "3.3.6"
SOURCE_FILE = "src/face/facemeshcoords.ts"
OUT = Path(__file__).resolve().parents[1] / "src" / "benchmark3dface" / "facenets" / "facemesh_topology.npz"


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def _array_literal(text: str, name: str) -> str:
    """The ``[...]`` literal assigned to ``export const NAME``."""
    m = re.search(rf"export const {name}\b[^=]*=\s*\[", text)
    if m is None:
        raise ValueError(f"{SOURCE_FILE}: no array {name}")
    start, depth = m.end() - 1, 0
    for i in range(start, len(text)):
        depth += {"[": 1, "]": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i + 1]
    raise ValueError(f"{SOURCE_FILE}: unterminated array {name}")


def _numbers(literal: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", literal)]


def _annotations(text: str) -> dict[str, list[int]]:
    m = re.search(r"export const meshAnnotations[^=]*=\s*\{(.*?)\n\};", text, flags=re.S)
    if m is None:
        raise ValueError(f"{SOURCE_FILE}: no meshAnnotations")
    return {k: [int(x) for x in _numbers(v)] for k, v in re.findall(r"(\w+):\s*\[([^\]]*)\]", m.group(1))}


def extract(ts_path: Path) -> dict[str, np.ndarray]:
    raw = ts_path.read_text()
    text = _strip_comments(raw)
    tri = np.array(_numbers(_array_literal(text, "TRI468")), dtype=np.int16).reshape(-1, 3)
    vtx68 = np.array(_numbers(_array_literal(text, "VTX68")), dtype=np.int16)
    uv = np.array(_numbers(_array_literal(text, "UV468")), dtype=np.float32).reshape(-1, 2)
    if vtx68.shape != (68,) or uv.shape != (468, 2) or tri.max() >= 468:
        raise ValueError(f"{ts_path}: unexpected sizes (VTX68 {vtx68.shape}, UV468 {uv.shape}, TRI468 max {tri.max()})")
    out: dict[str, np.ndarray] = {"triangles": tri, "vtx68": vtx68, "uv": uv}
    for name, idx in _annotations(text).items():
        out[f"annotation_{name}"] = np.array(idx, dtype=np.int16)
    for name in ("pairsLips", "pairsLeftEye", "pairsLeftEyebrow", "pairsRightEye", "pairsRightEyebrow",
                 "pairsFaceContour"):
        out[name] = np.array(_numbers(_array_literal(text, name)), dtype=np.int16).reshape(-1, 2)
    out["provenance"] = np.array(json.dumps({
        "package": f"{PACKAGE}@{VERSION}", "licence": "MIT", "file": SOURCE_FILE,
        "sha256": hashlib.sha256(raw.encode()).hexdigest(),
        "generator": "tools/extract_facemesh_topology.py"}))
    return out


def _npm_source(tmp: Path) -> Path:
    subprocess.run(["npm", "pack", "--silent", "--ignore-scripts", f"{PACKAGE}@{VERSION}"], cwd=tmp, check=True,
                   capture_output=True)
    tgz = next(tmp.glob("*.tgz"))
    with tarfile.open(tgz) as tf:
        member = tf.getmember(f"package/{SOURCE_FILE}")
        tf.extract(member, tmp, filter="data")
    return tmp / "package" / SOURCE_FILE


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=None, help="unpacked @vladmandic/human package folder")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        ts = args.source / SOURCE_FILE if args.source else _npm_source(Path(tmp))
        data = extract(ts)
    np.savez_compressed(args.out, **data)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes): {len(data['triangles'])} triangles, "
          f"{sum(k.startswith('annotation_') for k in data)} annotations")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
