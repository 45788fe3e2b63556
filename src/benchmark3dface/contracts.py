"""The output contract every method returns, and every protocol consumes.

This module sits below ``methods/`` (the Lightning side) and ``metrics/`` (the protocols) so that
both can import it without the other: it imports torch only, never Lightning (an import-linter
contract in pyproject.toml checks it). ``benchmark3dface.methods`` re-exports these types for
plugins.

Units are part of the contract: vertices in millimetres in the *model frame* (pose removed),
2D landmarks in input-image pixels (top-left origin, pixel centres at +0.5, see
docs/conventions.md). Protocols never look at which method produced a reconstruction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass
class FaceReconstruction:
    """One reconstructed face.

    Attributes:
        vertices: (N, 3) float, millimetres, model frame (pose removed).
        triangles: (F, 3) long, 0-based indices into ``vertices``.
        landmark_indices: (68,) long vertex indices with iBUG-68 semantics, or None for
            topologies without them (then ``landmarks3d`` must be given for NoW-style protocols).
        landmarks2d: (68, 2) float, input-image pixels, or None.
        landmarks3d: 3D landmarks in mm, model frame, or None: (68, 3) iBUG-68 points, or
            (7, 3) the method's own NoW points in NoW order (right eye outer, right eye inner,
            left eye inner, left eye outer, nose bottom, right mouth corner, left mouth corner;
            the official NoW interface). Given, they win over ``landmark_indices``.
        rotation: (3, 3) model -> world rotation, or None.
        translation: (3,) millimetres, or None.
        camera: free-form camera description, e.g. ``{"kind": "perspective", "focal": 1015.0,
            "principal": (112.0, 112.0), "distance": 1000.0}`` or ``{"kind": "weak", "scale": s}``.
        albedo: (N, 3) in [0, 1], optional.
        depth: (H, W) float millimetres in the input image frame, NaN where no surface; optional.
        center: (2,) image position (pixels) of the face, for multi-face images; optional.
        score: detection / confidence score, optional.
        failure: a reason string when the method could not produce this face; protocols count it
            as a failure instead of scoring it.
    """

    vertices: Tensor | None
    triangles: Tensor | None
    landmark_indices: Tensor | None = None
    landmarks2d: Tensor | None = None
    landmarks3d: Tensor | None = None
    rotation: Tensor | None = None
    translation: Tensor | None = None
    camera: dict[str, Any] = field(default_factory=dict)
    albedo: Tensor | None = None
    depth: Tensor | None = None
    center: Tensor | None = None
    score: float | None = None
    failure: str | None = None

    def landmarks_3d(self) -> Tensor | None:
        """Model-frame 3D landmarks in mm: ``landmarks3d`` ((68, 3) or NoW's (7, 3)) when given,
        else the (68, 3) vertices at ``landmark_indices``."""
        if self.landmarks3d is not None:
            return self.landmarks3d
        if self.vertices is None or self.landmark_indices is None:
            return None
        return self.vertices[self.landmark_indices]

    def validate(self) -> str | None:
        """Return a failure reason if this face cannot be scored, else None."""
        if self.failure:
            return self.failure
        if self.vertices is None or self.triangles is None:
            return "no mesh"
        if self.vertices.ndim != 2 or self.vertices.shape[-1] != 3 or self.vertices.shape[0] == 0:
            return f"vertices must be (N, 3) with N > 0, got {tuple(self.vertices.shape)}"
        if self.triangles.ndim != 2 or self.triangles.shape[-1] != 3 or self.triangles.shape[0] == 0:
            return f"triangles must be (F, 3) with F > 0, got {tuple(self.triangles.shape)}"
        if not torch.isfinite(self.vertices).all():
            return "non-finite vertices"
        if int(self.triangles.max()) >= self.vertices.shape[0] or int(self.triangles.min()) < 0:
            return "triangle index out of range"
        if self.landmarks2d is not None and tuple(self.landmarks2d.shape) != (68, 2):
            return f"landmarks2d must be (68, 2), got {tuple(self.landmarks2d.shape)}"
        if self.landmark_indices is not None and tuple(self.landmark_indices.shape) != (68,):
            return f"landmark_indices must be (68,), got {tuple(self.landmark_indices.shape)}"
        return None

    def to(self, device: torch.device | str) -> "FaceReconstruction":
        kw = {}
        for name, value in self.__dict__.items():
            kw[name] = value.to(device) if isinstance(value, Tensor) else value
        return FaceReconstruction(**kw)


@dataclass
class Reconstruction:
    """What a method returns for one input sample.

    - single image: ``faces`` holds one face;
    - multi-face image: ``faces`` holds one entry per detected face (with ``center``);
    - identity set / multi-view: ``faces[0]`` is the aggregated face, ``per_view`` the
      per-image reconstructions (same order as the input views).
    """

    sample_id: str
    faces: list[FaceReconstruction]
    per_view: list[FaceReconstruction] | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def face(self) -> FaceReconstruction:
        """The (aggregated) face of a single-face sample."""
        if not self.faces:
            return FaceReconstruction(None, None, failure="no face reconstructed")
        return self.faces[0]
