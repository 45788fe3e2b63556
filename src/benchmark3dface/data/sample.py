"""The sample schema every data source produces and every method consumes.

One record type for all input kinds. Shapes below are for one sample; a field is ``None``
when the source does not provide it. Kinds:

- ``single``: one image, one face. Image fields ``(3, H, W)``; per-face fields unbatched
  (e.g. ``lm68`` is ``(68, 2)``).
- ``set`` / ``multiview``: V images of one identity. Image fields ``(V, 3, H, W)``; per-face
  fields get a leading ``V`` (``lm68`` is ``(V, 68, 2)``). For multiview, V = 3 in the order
  left, front, right.
- ``multiface``: one image, F faces. Image fields ``(3, H, W)``; per-face fields get a leading
  ``F`` (``lm68`` is ``(F, 68, 2)``), ``centers`` is ``(F, 2)``.

Units and frames follow docs/conventions.md: pixels (top-left origin) for 2D, millimetres for
3D, radians for angles, images float in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from torch import Tensor

KINDS = ("single", "set", "multiview", "multiface")


@dataclass
class Sample:
    kind: str = "single"
    sample_id: str = ""
    image: Tensor | None = None  # (3,H,W) or (V,3,H,W), float [0,1]
    lm68: Tensor | None = None  # (..., 68, 2) px
    lm68_visible: Tensor | None = None  # (..., 68) bool
    lm5: Tensor | None = None  # (..., 5, 2) px, Deng's order (see conventions)
    lm68_3d: Tensor | None = None  # (..., 68, 3) landmarks in image coords + depth (AFLW2000 pt3d)
    parse: Tensor | None = None  # (H,W) or (V,H,W) long, PARSE_CLASSES ids
    skin_mask: Tensor | None = None  # (H,W) or (V,H,W) float in [0,1]
    face_mask: Tensor | None = None  # (H,W) or (V,H,W) bool: pixels covered by the face
    occlusion_mask: Tensor | None = None  # (H,W) or (V,H,W) bool: face pixels hidden by occluders
    depth: Tensor | None = None  # (H,W) or (V,H,W) mm camera depth, NaN background
    identity: int | None = None  # identity label (sets, recognition losses)
    coeffs: Tensor | None = None  # (..., C) GT coefficients in the model's CoeffLayout
    vertices: Tensor | None = None  # (..., N, 3) GT mesh, mm, model frame (pose removed)
    vertices_cam: Tensor | None = None  # (..., N, 3) GT mesh, mm, camera/world frame
    triangles: Tensor | None = None  # (F, 3) GT topology
    landmark_indices: Tensor | None = None  # (68,) GT topology's landmark vertices
    scan_vertices: Tensor | None = None  # (P, 3) GT scan, mm (MICC, NoW)
    scan_triangles: Tensor | None = None  # (Q, 3) or None for point-cloud scans
    scan_landmarks7: Tensor | None = None  # (7, 3) NoW landmarks on the scan, mm
    yaw: Tensor | None = None  # (...,) radians
    pose: Tensor | None = None  # (..., 6) angles (3) + translation (3)
    camera: dict[str, Any] = field(default_factory=dict)
    centers: Tensor | None = None  # (F, 2) face centres, multiface
    labelled: bool = True  # False for unlabelled samples in semi-supervised training
    occluded: Tensor | bool | None = None  # per face/view flag
    meta: dict[str, Any] = field(default_factory=dict)  # source path, dataset, split, index...

    def present(self) -> list[str]:
        """Names of the fields that hold data."""
        out = []
        for f in fields(self):
            v = getattr(self, f.name)
            if v is not None and not (isinstance(v, dict) and not v):
                out.append(f.name)
        return out
