"""Golden outputs of the original tfjs runtimes, and the comparison with the torch ports.

``tests/fixtures/facenets/make_golden_tfjs.js`` runs the ORIGINAL networks (face-api's
``FaceLandmark68Net`` class and the tfjs graph models of BlazeFace and FaceMesh, executed by
``@tensorflow/tfjs`` 4.22 on its pure-JS CPU backend in node) on synthetic input images and
writes their outputs to ``tests/fixtures/facenets/golden_tfjs.json``. The inputs are not stored:
both sides generate them with :func:`golden_pattern`, an integer-only formula (a cartoon face:
skin ellipse with shading, eyes, brows, nose, mouth, a colour gradient background and a small
texture), so they are bit-identical in Python and JavaScript. The fixture records each input's
sum and a position-weighted checksum so a mismatch of the generators is caught first.

:func:`compare_with_golden` runs the torch ports on the same inputs and returns the largest
absolute differences per network and output.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

#: (centre x, centre y in 1/1000 of the image, face scale in 1/1000, skin RGB, background phase)
VARIANTS = (
    (500, 520, 1000, (224, 172, 140), 0),
    (560, 470, 700, (150, 105, 80), 90),
    (380, 400, 450, (240, 200, 175), 170),
)
#: which network sees which input size
SIZES = {"faceapi_landmark68": 112, "blazeface": 128, "facemesh": 192}


def golden_pattern(size: int, variant: int) -> np.ndarray:
    """The synthetic ``(size, size, 3)`` uint8 RGB test image ``variant`` (integer formula;
    mirrored line by line in make_golden_tfjs.js)."""
    cx, cy, sc, skin, phase = VARIANTS[variant]
    y, x = np.mgrid[0:size, 0:size].astype(np.int64)
    u = (x * 1000) // size - cx
    v = (y * 1000) // size - cy
    a = (300 * sc) // 1000
    b = (380 * sc) // 1000
    img = np.zeros((size, size, 3), np.int64)
    img[..., 0] = ((x * 255) // size + phase) % 256
    img[..., 1] = (y * 255) // size
    img[..., 2] = ((x + y) * 127) // size + 40
    face = u * u * b * b + v * v * a * a <= a * a * b * b
    shade = ((u * u + v * v) * 60) // (a * a + b * b)
    for c in range(3):
        img[..., c] = np.where(face, skin[c] - shade, img[..., c])
    ex, ey, ea, eb = (a * 4) // 10, -(b * 2) // 10, a // 5, b // 12
    for sgn in (-1, 1):
        du, dv = u - sgn * ex, v - ey
        eye = du * du * eb * eb + dv * dv * ea * ea <= ea * ea * eb * eb
        brow = (np.abs(v - (-(b * 35) // 100)) < b // 30 + 1) & (np.abs(du) < a // 5)
        img[eye] = (50, 40, 35)
        img[brow] = (70, 50, 40)
    nose = (np.abs(u) < a // 14 + 1) & (v > -(b // 10)) & (v < (b * 15) // 100)
    img[nose] = img[nose] - 40
    mu, mv, ma, mb = u, v - (b * 45) // 100, (a * 35) // 100, b // 12
    mouth = mu * mu * mb * mb + mv * mv * ma * ma <= ma * ma * mb * mb
    img[mouth] = (160, 60, 70)
    for c in range(3):
        img[..., c] += (x * 7 + y * 13 + c * 5) % 9 - 4
    return np.clip(img, 0, 255).astype(np.uint8)


def pattern_checksums(img: np.ndarray) -> tuple[int, int]:
    """(sum of all values, sum of value * (flat index % 251)) of an HxWx3 uint8 image."""
    flat = img.reshape(-1).astype(np.int64)
    return int(flat.sum()), int((flat * (np.arange(flat.size) % 251)).sum())


def default_fixture() -> Path:
    """``tests/fixtures/facenets/golden_tfjs.json`` of the source tree."""
    return Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "facenets" / "golden_tfjs.json"


def _chw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1)[None]


def torch_outputs(name: str, img: np.ndarray, net: torch.nn.Module) -> dict[str, np.ndarray]:
    """The torch port's outputs on one golden input, named and shaped as in the fixture."""
    x = _chw(img)
    with torch.no_grad():
        if name == "faceapi_landmark68":
            return {"landmarks": net(x).reshape(-1).numpy()}
        if name == "blazeface":
            return {"raw": net(x * 2.0 - 1.0)[0].numpy()}
        raw = net.forward_raw(x)
        return {k: v[0].numpy() for k, v in raw.items()}


def load_nets(names=None) -> dict[str, torch.nn.Module]:
    """The converted networks from the weights cache (raises WeightsNotFetchedError)."""
    from .faceapi import load_landmark_net
    from .mediapipe import load_blazeface, load_facemesh

    loaders = {"faceapi_landmark68": load_landmark_net, "blazeface": load_blazeface, "facemesh": load_facemesh}
    return {n: loaders[n]() for n in (names or loaders)}


def compare_with_golden(fixture: str | Path | None = None, nets: dict | None = None) -> dict[str, dict[str, float]]:
    """Max |torch - tfjs| per network and output over the fixture's inputs.

    Units: face-api's landmarks in [0, 1] of the crop; BlazeFace's raw output: the score logit
    relative to max(1, |logit|), the box and keypoint columns divided by 128 (in [0, 1] of the input: in 128-px units
    float32 rounding differs by ~1e-4 between kernel paths; the fixture holds a subset of its 896
    anchor rows, ``rows``); FaceMesh's ``mesh`` and
    ``contours`` divided by 192 (i.e. in [0, 1] of the crop, like face-api's: float32 rounding
    alone reaches ~1e-4 in 192-px units), ``face_flag`` a probability.

    Raises:
        ValueError: the fixture's input checksums differ from :func:`golden_pattern`'s.
    """
    path = Path(fixture) if fixture is not None else default_fixture()
    data = json.loads(path.read_text())
    nets = nets if nets is not None else load_nets([n for n in SIZES if n in data["networks"]])
    out: dict[str, dict[str, float]] = {}
    for name, entry in data["networks"].items():
        if name not in nets:
            continue
        diffs: dict[str, float] = {}
        for case in entry["cases"]:
            img = golden_pattern(entry["size"], case["variant"])
            if list(pattern_checksums(img)) != case["checksums"]:
                raise ValueError(f"{path}: input {name}/{case['variant']} differs from golden_pattern "
                                 f"(checksums {pattern_checksums(img)} vs {case['checksums']})")
            got = torch_outputs(name, img, nets[name])
            for key, ref in case["outputs"].items():
                g = got[key]
                if "rows" in case and key == "raw":
                    g = g[case["rows"]]
                ref_arr = np.asarray(ref, dtype=np.float64).reshape(g.shape)
                if name == "facemesh" and key in ("mesh", "contours"):
                    g, ref_arr = g / float(entry["size"]), ref_arr / float(entry["size"])
                if name == "blazeface" and key == "raw":  # coordinates (columns 1:) in [0, 1] of the input
                    g, ref_arr = g.astype(np.float64).copy(), ref_arr.copy()
                    g[..., 1:] /= float(entry["size"])
                    ref_arr[..., 1:] /= float(entry["size"])
                    # score logits reach |x| ~ 100 on far anchors: compared relative to max(1, |x|)
                    scale = np.maximum(1.0, np.abs(ref_arr[..., :1]))
                    g[..., :1] /= scale
                    ref_arr[..., :1] /= scale
                diffs[key] = max(diffs.get(key, 0.0), float(np.abs(g.astype(np.float64) - ref_arr).max()))
        out[name] = diffs
    return out
