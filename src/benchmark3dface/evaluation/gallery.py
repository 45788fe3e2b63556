"""Gallery captures: a few fixed test samples' inputs, ground truth and a method's
reconstruction, saved next to the run so the report can show them (leaderboard/gallery.py).

File ``<run dir>/gallery.pt`` (``torch.save`` of plain tensors/str/lists; load with
``weights_only=True``)::

    {"method": str, "dataset": str, "samples": [ {
        "sample_id": str,
        "image": (3, H, W) float16 in [0, 1],
        "gt_lm68": (68, 2) float32 px or None,
        "gt_vertices": (N, 3) float32 mm, model frame, or None,
        "pred_vertices": (M, 3) float32 mm, model frame, or None (failed),
        "triangles": (F, 3) int64 of the prediction, or None,
        "pred_lm68": (68, 2) float32 px or None,
        "rotation": (3, 3) or None, "translation": (3,) mm or None,
        "camera": {"kind": ..., "focal": ..., "principal": [cx, cy], ...},
        "failure": str ("" when reconstructed),
    }, ... ]}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

VERSION = 1


def _t(x: Any, dtype=torch.float32):
    return None if x is None else torch.as_tensor(x).detach().to("cpu", dtype).clone()


def gallery_record(method: str, dataset: str, captured: dict, order: tuple[str, ...]) -> dict[str, Any]:
    from ..metrics.matching import iter_scored_faces

    samples = []
    for sid in order:
        if sid not in captured:
            continue
        rec, sample = captured[sid]
        # the first scored unit: the sample itself, view 0 of a set / triplet (its own per-view
        # reconstruction and GT), or GT face 0 of a multi-face image with the face the protocols
        # match to it
        units = iter_scored_faces(rec, sample, views=True)
        if not units:
            continue
        _, face, s = units[0]
        if face is None:
            from ..contracts import FaceReconstruction

            face = FaceReconstruction(None, None, failure=units.missing.get(units[0][0], "not reconstructed"))
        img = s.image
        if img is not None and img.ndim == 4:
            img = img[0]
        gt_lm = s.lm68[0] if s.lm68 is not None and s.lm68.ndim == 3 else s.lm68
        gt_v = s.vertices[0] if s.vertices is not None and s.vertices.ndim == 3 else s.vertices
        cam = {k: (list(v) if isinstance(v, tuple) else v) for k, v in (face.camera or {}).items()}
        samples.append({
            "sample_id": sid, "image": _t(img, torch.float16), "gt_lm68": _t(gt_lm), "gt_vertices": _t(gt_v),
            "pred_vertices": _t(face.vertices), "triangles": _t(face.triangles, torch.int64),
            "pred_lm68": _t(face.landmarks2d), "rotation": _t(face.rotation), "translation": _t(face.translation),
            "camera": cam, "failure": face.validate() or "",
        })
    return {"version": VERSION, "method": method, "dataset": dataset, "samples": samples}


def save_gallery(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(record, path)


def load_gallery(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


__all__ = ["gallery_record", "load_gallery", "save_gallery"]
