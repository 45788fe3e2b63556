"""The morphable model: one interface for every source (procedural, BFM, ICT-FaceKit ...).

A model is linear: ``S = mean + sum_k alpha_k B_id[k] + sum_k beta_k B_exp[k]`` and
``T = mean_albedo + sum_k delta_k B_tex[k]``, with bases scaled so that the coefficients are
distributed ~ N(0, 1) (identity, albedo; expression too unless ``exp_prior`` says otherwise).
Vertices are in millimetres, model frame (docs/conventions.md); albedo in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..geometry.camera import PerspectiveCamera, WeakPerspectiveCamera
from ..geometry.lighting import sh_color
from ..geometry.mesh import symmetry_map, vertex_normals
from ..geometry.rotation import euler_to_matrix, rotate
from .layout import CoeffLayout
from .regions import PARSE_CLASSES, regions_from_landmarks, skin_vertices

#: Deng's 5 alignment points as (groups of) 68-landmark indices, viewer's left first.
FIVE_POINT_GROUPS = ((36, 39), (42, 45), (30,), (48,), (54,))


def lm68_to_lm5(lm68: Tensor) -> Tensor:
    """(..., 68, D) -> (..., 5, D): eye centres, nose tip, mouth corners (Deng's order)."""
    return torch.stack([lm68[..., list(g), :].mean(-2) for g in FIVE_POINT_GROUPS], -2)


@dataclass
class FaceGeometry:
    """Decoded faces for a batch (B faces).

    vertices: (B, N, 3) mm, model frame (pose removed); world: (B, N, 3) mm after R, t;
    normals: (B, N, 3) unit world-frame normals; albedo / colors: (B, N, 3) in [0, 1];
    rotation (B, 3, 3); translation (B, 3); landmarks3d: (B, 68, 3) world frame;
    projected: (B, N, 3) (u px, v px, depth mm) when a camera was given, else None (depth:
    camera depth ``D - z_world`` for a perspective camera, ``-z_world`` for weak perspective);
    landmarks2d: (B, 68, 2) px or None.
    """

    vertices: Tensor
    world: Tensor
    normals: Tensor
    albedo: Tensor
    colors: Tensor
    rotation: Tensor
    translation: Tensor
    landmarks3d: Tensor
    projected: Tensor | None = None
    landmarks2d: Tensor | None = None


class MorphableModel(nn.Module):
    """A linear 3D morphable face model with a coefficient layout.

    Args:
        name: short identifier ("procedural", "bfm", "ict" ...).
        mean_shape: (N, 3) mm.
        id_basis / exp_basis: (K, N, 3) mm per unit coefficient.
        triangles: (F, 3) 0-based, counter-clockwise seen from the front.
        landmarks68: (68,) vertex indices with iBUG-68 semantics.
        mean_albedo / albedo_basis: (N, 3) and (K, N, 3) in [0, 1] units; None for shape-only
            models (a uniform skin tone is used and the albedo group has size 0).
        regions: (N,) parse-region ids (derived from the landmarks when None).
        symmetry: (N,) left-right vertex map (nearest mirrored vertex when None).
        layout: coefficient layout; defaults to Deng's sizes capped at the model's basis sizes.
        exp_prior: "gaussian" (coefficients ~ N(0,1)) or "unit_interval" (blendshape weights in
            [0, 1], e.g. ICT-FaceKit/ARKit).
        source_units: the unit of the files it was loaded from (informational).
    """

    def __init__(self, name: str, mean_shape, id_basis, exp_basis, triangles, landmarks68,
                 mean_albedo=None, albedo_basis=None, regions=None, symmetry=None,
                 layout: CoeffLayout | None = None, exp_prior: str = "gaussian",
                 source_units: str = "mm", meta: dict[str, Any] | None = None,
                 exp_names: list[str] | None = None):
        super().__init__()
        f32 = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
        mean_shape = np.asarray(mean_shape, dtype=np.float32)
        n = mean_shape.shape[0]
        if mean_shape.ndim != 2 or mean_shape.shape[1] != 3:
            raise ValueError(f"{name}: mean_shape must be (N, 3), got {mean_shape.shape}")
        id_basis = np.asarray(id_basis, dtype=np.float32).reshape(-1, n, 3)
        exp_basis = np.asarray(exp_basis, dtype=np.float32).reshape(-1, n, 3)
        if mean_albedo is None:
            mean_albedo = np.tile(np.array([[0.78, 0.58, 0.48]], np.float32), (n, 1))
            albedo_basis = np.zeros((0, n, 3), np.float32)
        albedo_basis = np.asarray(albedo_basis, dtype=np.float32).reshape(-1, n, 3)
        triangles = np.asarray(triangles, dtype=np.int64)
        landmarks68 = np.asarray(landmarks68, dtype=np.int64).reshape(-1)
        if landmarks68.shape != (68,):
            raise ValueError(f"{name}: need 68 landmark indices, got {landmarks68.shape}")
        if triangles.min() < 0 or triangles.max() >= n:
            raise ValueError(f"{name}: triangle indices outside [0, {n})")
        if regions is None:
            regions = regions_from_landmarks(mean_shape, landmarks68)
        if symmetry is None:
            symmetry = symmetry_map(mean_shape)
        if layout is None:
            layout = CoeffLayout(id=min(80, id_basis.shape[0]), exp=min(64, exp_basis.shape[0]),
                                 tex=min(80, albedo_basis.shape[0]))
        for group, have in (("id", id_basis.shape[0]), ("exp", exp_basis.shape[0]), ("tex", albedo_basis.shape[0])):
            if getattr(layout, group) > have:
                raise ValueError(f"{name}: layout asks for {getattr(layout, group)} {group} coefficients, model has {have}")
        if exp_prior not in ("gaussian", "unit_interval"):
            raise ValueError(f"exp_prior must be 'gaussian' or 'unit_interval', got {exp_prior!r}")
        self.name = name
        self.layout = layout
        self.exp_prior = exp_prior
        self.source_units = source_units
        self.units = "mm"
        self.meta = dict(meta or {})
        self.exp_names = list(exp_names) if exp_names is not None else None
        # buffers are not persistent: a model is rebuilt from its source, checkpoints stay small
        self.register_buffer("mean_shape", f32(mean_shape), persistent=False)
        self.register_buffer("id_basis", f32(id_basis[: layout.id]), persistent=False)
        self.register_buffer("exp_basis", f32(exp_basis[: layout.exp]), persistent=False)
        self.register_buffer("mean_albedo", f32(mean_albedo), persistent=False)
        self.register_buffer("albedo_basis", f32(albedo_basis[: layout.tex]), persistent=False)
        self.register_buffer("triangles", torch.as_tensor(triangles), persistent=False)
        self.register_buffer("landmarks68", torch.as_tensor(landmarks68), persistent=False)
        self.register_buffer("regions", torch.as_tensor(np.asarray(regions, dtype=np.int64)), persistent=False)
        self.register_buffer("symmetry", torch.as_tensor(np.asarray(symmetry, dtype=np.int64)), persistent=False)
        self.register_buffer("skin", torch.as_tensor(skin_vertices(np.asarray(regions))), persistent=False)

    # ------------------------------------------------------------------ facts
    @property
    def num_vertices(self) -> int:
        return self.mean_shape.shape[0]

    @property
    def num_triangles(self) -> int:
        return self.triangles.shape[0]

    @property
    def parse_classes(self) -> tuple[str, ...]:
        return PARSE_CLASSES

    def info(self) -> dict[str, Any]:
        lo, hi = self.mean_shape.min(0).values, self.mean_shape.max(0).values
        return {
            "name": self.name, "units": self.units, "source_units": self.source_units,
            "vertices": self.num_vertices, "triangles": self.num_triangles,
            "layout": self.layout.as_dict(), "coefficients": self.layout.size,
            "exp_prior": self.exp_prior, "has_albedo": self.layout.tex > 0,
            "extent_mm": [round(float(v), 2) for v in (hi - lo)],
            "regions": {c: int((self.regions == i).sum()) for i, c in enumerate(PARSE_CLASSES) if i > 0},
            **self.meta,
        }

    # ------------------------------------------------------------------ decoding
    def shape(self, id_coeffs: Tensor, exp_coeffs: Tensor) -> Tensor:
        """(B, K_id), (B, K_exp) -> (B, N, 3) model-frame vertices in mm."""
        return (self.mean_shape
                + torch.einsum("bk,knc->bnc", id_coeffs, self.id_basis)
                + torch.einsum("bk,knc->bnc", exp_coeffs, self.exp_basis))

    def albedo(self, tex_coeffs: Tensor) -> Tensor:
        """(B, K_tex) -> (B, N, 3) albedo, clamped to [0, 1]."""
        a = self.mean_albedo + torch.einsum("bk,knc->bnc", tex_coeffs, self.albedo_basis)
        return a.clamp(0.0, 1.0)

    def decode(self, coeffs: Tensor, camera: PerspectiveCamera | WeakPerspectiveCamera | None = None, *,
               scale: Tensor | None = None, translation2d: Tensor | None = None) -> FaceGeometry:
        """Decode (B, layout.size) coefficients into posed, lit faces.

        Pose: ``world = R(angles) @ v + trans``; colours = albedo x SH(world normals, sh).
        With a ``camera`` the projected vertices and 2D landmarks are filled in:

        - :class:`PerspectiveCamera` (Deng): ``projected`` = (u px, v px, camera depth
          ``D - z_world`` mm);
        - :class:`WeakPerspectiveCamera` (Richardson, Gao; docs/conventions.md): needs ``scale``
          (B,) px/mm and optionally ``translation2d`` (B, 2) px (default 0); the world frame is
          ``R v`` (the layout's translation is ignored and returned as zeros, as the synthetic
          engine stores it) and ``projected`` = (u, v, ``-z_world`` mm), the weak-perspective
          ``Sample.depth`` convention. With the engine's GT coefficients and camera
          (``Sample.camera["scale"]``, ``["translation"]``) the landmarks are the sample's
          ``lm68``.

        In both cases ``projected[..., 2]`` is the per-vertex depth in the convention of
        ``Sample.depth``; a depth *map* is the rasterized mesh (``render.depthmap``).
        """
        p = self.layout.split(coeffs)
        verts = self.shape(p["id"], p["exp"])
        alb = self.albedo(p["tex"])
        rot = euler_to_matrix(p["angles"])
        weak = isinstance(camera, WeakPerspectiveCamera)
        trans = torch.zeros_like(p["trans"]) if weak else p["trans"]
        world = rotate(verts, rot, trans)
        normals = vertex_normals(world, self.triangles)
        colors = sh_color(alb, normals, p["sh"]) if self.layout.sh == 27 else alb
        lm3d = world[:, self.landmarks68]
        projected = lm2d = None
        if weak:
            if scale is None:
                raise ValueError("weak-perspective decode needs scale (B,) px/mm")
            scale = torch.as_tensor(scale, dtype=world.dtype, device=world.device).reshape(-1)
            t2 = (torch.zeros(world.shape[0], 2, dtype=world.dtype, device=world.device) if translation2d is None
                  else torch.as_tensor(translation2d, dtype=world.dtype, device=world.device).reshape(-1, 2))
            projected = camera.screen(world, scale.expand(world.shape[0]), t2.expand(world.shape[0], 2))
        elif camera is not None:
            projected = camera.project(world)
        if projected is not None:
            lm2d = projected[:, self.landmarks68, :2]
        return FaceGeometry(verts, world, normals, alb, colors, rot, trans, lm3d, projected, lm2d)

    def sample_coeffs(self, batch: int, generator: torch.Generator | None = None, id_std: float = 1.0,
                      exp_std: float = 1.0, tex_std: float = 1.0) -> dict[str, Tensor]:
        """Random identity / expression / albedo coefficients from the model's prior."""
        lay = self.layout
        g = generator
        ident = torch.randn(batch, lay.id, generator=g) * id_std
        if self.exp_prior == "gaussian":
            exp = torch.randn(batch, lay.exp, generator=g) * exp_std
        else:
            exp = (torch.rand(batch, lay.exp, generator=g) < 0.15).float() * torch.rand(batch, lay.exp, generator=g) * exp_std
        tex = torch.randn(batch, lay.tex, generator=g) * tex_std
        return {"id": ident, "exp": exp, "tex": tex}

    def five_points(self, vertices: Tensor) -> Tensor:
        """(..., N, D) -> (..., 5, D) Deng's 5 alignment points of a mesh in this topology."""
        return lm68_to_lm5(vertices[..., self.landmarks68, :])
