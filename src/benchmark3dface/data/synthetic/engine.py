"""The synthetic face engine: random faces from a morphable model, rendered with ground truth.

One call, :meth:`SyntheticEngine.generate`, turns ``(seed, split, index)`` into a
:class:`~benchmark3dface.data.sample.Sample` of the configured mode:

1. scene parameters from per-sample numpy generators (``seeding``): identities (from the
   split's identity pool, id -> coefficients is deterministic), expressions, pose, SH light;
2. placement: single/set/multiview crops put the face where Deng's 5-point alignment would
   (the least-squares scale + translation of its 5 points onto the mean face's targets is the
   identity, up to a small jitter); multiface images place 1-10 faces under one global camera;
3. decode (model frame, mm; optional fine detail along the normals, ``detail_amplitude``) ->
   pose -> project -> rasterize all faces of a sample in one call (``render.rasterize``; back
   faces culled) -> colour, depth, parse and instance maps;
4. background (noise, gradients, textures, other faces), occluders, blur, noise, JPEG, 8 bits;
5. labels: the GT (optionally noisy shape labels on labelled train samples, ``label_noise_std``).

Frames and units follow docs/conventions.md. The image path runs with one torch thread (a
context manager restores the caller's setting), so samples are bit-identical whatever the
DataLoader worker count or ``torch.set_num_threads``.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ...facemodel.model import MorphableModel, lm68_to_lm5
from ...facemodel.regions import NOSE, SKIN
from ...geometry.camera import DENG_DISTANCE_MM, DENG_FOCAL_224, PerspectiveCamera, WeakPerspectiveCamera
from ...geometry.lighting import DENG_SH_INIT, sh_basis
from ...geometry.mesh import vertex_face_table
from ...geometry.rotation import euler_to_matrix
from ...render.interpolate import pixel_barycentrics
from ...render.rasterize import rasterize
from ..preprocess.align import deng_target_points, fit_scale_translation
from ..sample import Sample
from . import backgrounds as bg
from . import degrade
from .config import SynthConfig
from .occluders import occluder_colour, occluder_shapes, shapes_mask
from .scene import (detail_field, draw_identities, face_size_px, identity_coefficients, first_order_achromatic, multiface_layout,
                    sample_angles, sample_expression, sample_sh)
from .seeding import check_split, sample_rng

#: landmark visibility: largest gap (mm) between a landmark's depth and the visible surface.
VISIBILITY_TOLERANCE_MM = 10.0
#: screen-depth offset (mm) that keeps weak-perspective background faces behind the subject.
_WEAK_BG_OFFSET = 1.0e4


@contextmanager
def single_thread():
    """Run torch ops with one intra-op thread (thread-count-independent float results)."""
    old = torch.get_num_threads()
    if old != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if old != 1:
            torch.set_num_threads(old)


#: coefficients are quantised to multiples of 2**-COEF_BITS within +-COEF_MAX (see _ExactBasis)
COEF_BITS = 16
COEF_MAX = 16.0


def quantize_coefficients(x: np.ndarray) -> np.ndarray:
    """Round model coefficients to multiples of ``2**-16`` within ``+-16`` (exact in float32)."""
    q = float(2 ** COEF_BITS)
    return np.round(np.clip(x, -COEF_MAX, COEF_MAX) * q) / q


class _ExactBasis:
    """``mean + coeffs @ basis`` computed exactly, whatever the BLAS and CPU.

    The basis is rounded once to multiples of ``2**-e`` (``e`` chosen so that every partial sum
    fits in float64's 53 bits; ~1e-5 mm for a face model) and the coefficients are multiples of
    ``2**-16`` (:func:`quantize_coefficients`); the GEMM then runs on integer-valued float64
    numbers, where every product and partial sum is exact, so summation order, blocking and FMA
    use cannot change the result. It is rounded to float32 once at the end.
    """

    def __init__(self, mean: Tensor, basis: Tensor) -> None:
        self.mean = mean.reshape(-1).double()
        self.k = basis.shape[0]
        if self.k:
            bmax = float(basis.abs().max().clamp_min(1e-30))
            e = int(math.floor(53 - COEF_BITS - math.log2(self.k * COEF_MAX * bmax) - 1))
            e = max(min(e, 60), -60)
            self.basis = torch.round(basis.reshape(self.k, -1).double() * 2.0 ** e)
            self.inv = 2.0 ** -(e + COEF_BITS)

    def __call__(self, coeffs: Tensor) -> Tensor:
        m = coeffs.shape[0]
        if not self.k:
            return self.mean.float().expand(m, -1).clone()
        cq = coeffs.double() * float(2 ** COEF_BITS)  # integers
        return (self.mean + (cq @ self.basis) * self.inv).float()


def rotate_points(v: Tensor, rot: Tensor) -> Tensor:
    """``R v`` for ``(M, N, 3)`` points and ``(M, 3, 3)`` rotations with element-wise ops in a
    fixed order (no BLAS, so the same bits on every CPU)."""
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    r = rot[:, None]
    return torch.stack([x * r[..., 0, 0] + y * r[..., 0, 1] + z * r[..., 0, 2],
                        x * r[..., 1, 0] + y * r[..., 1, 1] + z * r[..., 1, 2],
                        x * r[..., 2, 0] + y * r[..., 2, 1] + z * r[..., 2, 2]], -1)


def unit(v: Tensor, eps: float = 1e-12) -> Tensor:
    """Normalise ``(..., 3)`` vectors with element-wise ops (fixed order)."""
    x, y, z = (t.contiguous() for t in v.unbind(-1))
    n = (x * x).add_(y * y).add_(z * z).sqrt_()
    return v / n.clamp_min_(eps)[..., None]


def sh_irradiance(normals: Tensor, sh: Tensor) -> Tensor:
    """Deng's SH irradiance (``geometry.lighting.sh_shading``) with element-wise ops in a fixed
    order: ``(M, N, 3)`` unit normals, ``(M, 27)`` coefficients -> ``(M, N, 3)``."""
    y = sh_basis(normals, dim=0)  # (9, M, N) contiguous planes
    g = sh.reshape(-1, 3, 9).clone()
    g[:, :, 0] += DENG_SH_INIT
    g = g.permute(1, 2, 0).contiguous()[..., None]  # (3, 9, M, 1)
    out = []
    for c in range(3):
        acc = y[0] * g[c, 0]
        for k in range(1, 9):
            acc.add_(y[k] * g[c, k])
        out.append(acc)
    return torch.stack(out, -1)


@dataclass
class _Faces:
    """Parameters of M faces (float64 numpy; angles in radians)."""

    identity: np.ndarray  # (M,) int64
    ident: np.ndarray  # (M, K_id)
    exp: np.ndarray  # (M, K_exp)
    tex: np.ndarray  # (M, K_tex)
    angles: np.ndarray  # (M, 3)
    sh: np.ndarray  # (M, 27)

    @staticmethod
    def concat(parts: list["_Faces"]) -> "_Faces":
        return _Faces(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(_Faces)))

    def take(self, keep: np.ndarray) -> "_Faces":
        return _Faces(*(getattr(self, f.name)[keep] for f in fields(_Faces)))


class SyntheticEngine:
    """Renders synthetic samples from a :class:`MorphableModel` (kept on the CPU).

    Args:
        model: any morphable model (the embedded procedural one by default upstream).
        config: :class:`SynthConfig`.
    """

    def __init__(self, model: MorphableModel, config: SynthConfig) -> None:
        self.model = model
        self.cfg = config
        lay = model.layout
        if lay.sh not in (0, 27) or lay.angles != 3 or lay.trans != 3:
            raise ValueError(f"synthetic engine needs a layout with 3 angles, 27 (or 0) SH and "
                             f"3 translation values, got {lay}")
        self.layout = lay
        self.size = int(config.image_size)
        with torch.no_grad():
            self.mean = model.mean_shape.detach().cpu().float().contiguous()
            n = self.mean.shape[0]
            self.n = n
            shape_basis = torch.cat([model.id_basis.detach().cpu().float().reshape(lay.id, 3 * n),
                                     model.exp_basis.detach().cpu().float().reshape(lay.exp, 3 * n)])
            self.shape_model = _ExactBasis(self.mean, shape_basis)
            self.albedo_model = _ExactBasis(model.mean_albedo.detach().cpu().float(),
                                            model.albedo_basis.detach().cpu().float().reshape(lay.tex, 3 * n))
        self.tri = model.triangles.detach().cpu().long().contiguous()
        self.vertex_faces = vertex_face_table(self.tri, model.num_vertices)
        self.lm_idx = model.landmarks68.detach().cpu().long()
        self.regions = model.regions.detach().cpu().long()
        self.weak = config.projection == "weak_perspective"
        s = self.size
        if config.mode == "multiface":
            self.camera = PerspectiveCamera.global_image(s, s)
        else:
            self.camera = PerspectiveCamera.deng(s)
        self.weak_camera = WeakPerspectiveCamera(s, s)
        self.target5 = deng_target_points(self.mean, self.lm_idx, s).double()
        self._detail_xy: np.ndarray | None = None

    # ================================================================== public
    def generate(self, split: str, index: int, seed: int = 0) -> Sample:
        """The sample ``index`` of ``split`` for ``seed`` (a pure function of the three and the
        engine's model/config)."""
        return self.generate_many(split, [index], seed)[0]

    def generate_many(self, split: str, indices: Sequence[int], seed: int = 0) -> list[Sample]:
        """Samples ``indices`` of ``split``, each bit-identical to :meth:`generate`'s; faster
        than one at a time because the faces of all samples are decoded in one exact GEMM (the
        decode reads the whole basis, ~150 MB for the procedural model, whatever the face count)."""
        check_split(split)
        for index in indices:
            if index < 0:
                raise IndexError(f"synthetic sample index must be >= 0, got {index}")
        with torch.no_grad(), single_thread():
            return self._drive([self._steps(split, int(i), int(seed)) for i in indices])

    def _drive(self, steps: list[Generator]) -> list[Sample]:
        """Run sample generators in lockstep: every round, the faces all running generators ask
        for are decoded together and each gets its own rows back. ``_ExactBasis`` makes every row
        exact, so a sample does not depend on what it was decoded with."""
        out: list[Sample | None] = [None] * len(steps)
        asks: dict[int, _Faces] = {}

        def advance(i: int, value: Any) -> None:
            try:
                asks[i] = steps[i].send(value)
            except StopIteration as stop:
                out[i] = stop.value

        for i in range(len(steps)):
            advance(i, None)
        while asks:
            order = sorted(asks)
            counts = [len(asks[i].identity) for i in order]
            verts, albedo, rot = self._decode(_Faces.concat([asks[i] for i in order]))
            asks = {}
            start = 0
            for i, c in zip(order, counts):
                advance(i, (verts[start:start + c], albedo[start:start + c], rot[start:start + c]))
                start += c
        return out  # type: ignore[return-value]

    # ================================================================== parameters
    def _identity_params(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.cfg
        pairs = [identity_coefficients(self.layout, int(i), cfg.identity_seed, cfg.id_std, cfg.tex_std)
                 for i in ids]
        return (np.stack([p[0] for p in pairs]).reshape(len(ids), self.layout.id),
                np.stack([p[1] for p in pairs]).reshape(len(ids), self.layout.tex))

    def _random_faces(self, rng: np.random.Generator, ids: np.ndarray, shared_exp_light: bool = False,
                      angles: np.ndarray | None = None) -> _Faces:
        cfg, m = self.cfg, len(ids)
        ident, tex = self._identity_params(ids)
        k = 1 if shared_exp_light else m
        exp = sample_expression(rng, self.layout, self.model.exp_prior, k, cfg.exp_std)
        sh = sample_sh(rng, k, cfg.ambient_range, cfg.directional_max, cfg.light_tint)
        if cfg.shading == "lambertian_sh1":
            sh = first_order_achromatic(sh)
        if angles is None:
            angles = sample_angles(rng, m, cfg.yaw_max, cfg.pitch_max, cfg.roll_max, cfg.pose_prior)
        if shared_exp_light:
            exp, sh = np.repeat(exp, m, 0), np.repeat(sh, m, 0)
        q = quantize_coefficients
        return _Faces(ids, q(ident), q(exp), q(tex), angles, sh)

    def _scene(self, rng: np.random.Generator, split: str) -> tuple[_Faces, np.ndarray | None, float | None]:
        """GT faces of the sample, multiface layout (centres + sizes) and multiview yaw."""
        cfg = self.cfg
        if cfg.mode in ("single", "set"):
            v = cfg.views
            ids = np.repeat(draw_identities(rng, cfg, split, 1), v)
            return self._random_faces(rng, ids), None, None
        if cfg.mode == "multiview":
            ids = np.repeat(draw_identities(rng, cfg, split, 1), 3)
            base = sample_angles(rng, 1, 0.0, cfg.pitch_max, cfg.roll_max, cfg.pose_prior)[0]
            angles = np.repeat(base[None], 3, 0)
            if cfg.view_yaws is not None:  # explicit (left, front, right) triplet
                yaw = None
                angles[:, 1] = np.radians(list(cfg.view_yaws))
            else:
                yaw = cfg.view_yaw if cfg.view_yaw is not None else float(rng.uniform(*cfg.view_yaw_range))
                angles[:, 1] = np.radians([-yaw, 0.0, yaw])
            return self._random_faces(rng, ids, shared_exp_light=True, angles=angles), None, yaw
        layout = multiface_layout(rng, self.size, self.size, cfg.min_faces, cfg.max_faces,
                                  cfg.face_scale_range, cfg.max_overlap)
        ids = draw_identities(rng, cfg, split, len(layout[0]))
        return self._random_faces(rng, ids), layout, None

    # ================================================================== geometry
    def _decode(self, f: _Faces) -> tuple[Tensor, Tensor, Tensor]:
        """Model-frame vertices (M, N, 3) mm, albedo (M, N, 3), rotations (M, 3, 3)."""
        t = [torch.from_numpy(a.astype(np.float32)) for a in (f.ident, f.exp, f.tex, f.angles)]
        verts, rot = self._shape(t[0], t[1], t[3])
        m, n = len(f.identity), self.n
        alb = self.albedo_model(t[2]).reshape(m, n, 3).clamp(0.0, 1.0)
        return verts, alb, rot

    def _shape(self, ident: Tensor, exp: Tensor, angles: Tensor) -> tuple[Tensor, Tensor]:
        verts = self.shape_model(torch.cat([ident, exp], 1)).reshape(ident.shape[0], self.n, 3)
        return verts, euler_to_matrix(angles)

    def gt_meshes(self, coeffs: Tensor) -> tuple[Tensor, Tensor]:
        """GT meshes from GT coefficients ``(M, C)``: model-frame and camera-frame vertices
        ``(M, N, 3)`` mm, bit-identical to those of :meth:`generate`. Weak perspective: the
        camera-frame mesh is ``R v`` (no translation). Not with ``detail_amplitude`` > 0: the
        fine detail is beyond the coefficients (shards then store the meshes).

        They equal ``model.decode(coeffs)`` up to ~1e-4 mm: the engine evaluates the linear model
        exactly on a basis rounded to ~1e-5 mm (see ``_ExactBasis``)."""
        with torch.no_grad(), single_thread():
            p = {k: v.float().contiguous() for k, v in self.layout.split(coeffs).items()}
            verts, rot = self._shape(p["id"], p["exp"], p["angles"])
            rotated = rotate_points(verts, rot)
            world = rotated if self.weak else rotated + p["trans"][:, None]
            return verts, world

    def _project(self, world: Tensor) -> Tensor:
        return self.camera.project(world)

    def _place_perspective(self, rng: np.random.Generator, rotated: Tensor) -> np.ndarray:
        """Translations (M, 3) mm putting each face where Deng's alignment would, plus jitter.

        Fixed point: with the current translation, fit ``k p + t2 ~ target`` on the projected 5
        points; move the face so that its origin lands at ``k o + t2`` (o = the origin's image)
        at depth ``d / k``. Converges in a few steps (the fit is the identity at the end).
        """
        cam, cfg, s = self.camera, self.cfg, self.size
        pts = rotated[:, self.lm_idx].double()  # (M, 68, 3)
        m = pts.shape[0]
        t = torch.zeros(m, 3, dtype=torch.float64)
        for _ in range(5):
            lm = cam.project(pts + t[:, None])[..., :2]
            k, t2 = fit_scale_translation(lm68_to_lm5(lm), self.target5)
            k = k.clamp(0.25, 4.0)  # guards degenerate 5-point layouts (never hit in practice)
            o = cam.project(t[:, None])[:, 0, :2]
            depth = (cam.distance - t[:, 2]) / k
            t = cam.unproject(k[:, None] * o + t2, depth)
        jit_s = np.exp(rng.standard_normal(m) * cfg.align_scale)
        jit_t = rng.standard_normal((m, 2)) * cfg.align_shift * s
        o = cam.project(t[:, None])[:, 0, :2] + torch.from_numpy(jit_t)
        depth = (cam.distance - t[:, 2]) / torch.from_numpy(jit_s)
        return cam.unproject(o, depth).numpy()

    def _place_weak(self, rng: np.random.Generator, rotated: Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Weak-perspective scale (M,) px/mm and 2D translation (M, 2) px, aligned like Deng."""
        cfg, s = self.cfg, self.size
        pts = rotated[:, self.lm_idx].double()
        c = s / 2.0
        p = torch.stack([c + pts[..., 0], c - pts[..., 1]], -1)  # scale 1, no translation
        k, t2 = fit_scale_translation(lm68_to_lm5(p), self.target5)
        tx = t2[:, 0] + (k - 1) * c
        ty = -(t2[:, 1] + (k - 1) * c)
        jit_s = np.exp(rng.standard_normal(len(k)) * cfg.align_scale)
        jit_t = rng.standard_normal((len(k), 2)) * cfg.align_shift * s
        scale = k.numpy() * jit_s
        shift = np.stack([tx.numpy() * jit_s + jit_t[:, 0], ty.numpy() * jit_s - jit_t[:, 1]], 1)
        return scale, shift

    def _place_multiface(self, centres: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """Translations putting each face's origin at its centre pixel, at the depth where it has
        the scale of a Deng crop of ``sizes`` px."""
        cam = self.camera
        depth = DENG_DISTANCE_MM * (224.0 / sizes) * (cam.focal / DENG_FOCAL_224)
        return cam.unproject(torch.from_numpy(centres), torch.from_numpy(depth)).numpy()

    def _with_detail(self, verts: Tensor, identities: np.ndarray) -> Tensor:
        """Model-frame GT vertices ``(M, N, 3)`` displaced along their unit normals by each
        identity's fine-detail field x ``detail_amplitude`` mm (``scene.detail_field``, on the
        mean shape's x, y); unchanged (the same tensor) when the option is off.

        Same bits on every CPU: the normals and the displacement are computed in float64 numpy
        with single-rounding element-wise operations (no fused multiply-add kernel such as
        ``torch.linalg.cross``, no MKL vector math) and the displacement is rounded to
        multiples of 2**-20 mm before the one float32 addition."""
        amp = float(self.cfg.detail_amplitude)
        if not amp > 0:
            return verts
        if self._detail_xy is None:
            self._detail_xy = self.mean[:, :2].double().numpy()
        ids, which = np.unique(np.asarray(identities), return_inverse=True)  # views share one field
        fields_ = np.stack([detail_field(self._detail_xy, int(i), self.cfg.identity_seed) for i in ids])
        field = fields_[which.reshape(-1)] * amp  # (M, N) mm
        q = float(2 ** 20)
        disp = np.round(field[..., None] * self._exact_vertex_normals(verts.numpy().astype(np.float64)) * q) / q
        return verts + torch.from_numpy(disp.astype(np.float32))

    def _exact_vertex_normals(self, verts: np.ndarray) -> np.ndarray:
        """Unit vertex normals of ``(M, N, 3)`` float64 vertices: the normalised sum of the
        adjacent unit face normals, in increasing face id (``vertex_faces``)."""
        tri = self.tri.numpy()
        v0, v1, v2 = (verts[:, tri[:, k]] for k in range(3))
        a, b = v1 - v0, v2 - v0
        fn = np.stack([a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1], a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2],
                       a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]], -1)

        def unit64(x: np.ndarray) -> np.ndarray:
            n = np.sqrt(x[..., 0] * x[..., 0] + x[..., 1] * x[..., 1] + x[..., 2] * x[..., 2])
            return x / np.maximum(n, 1e-12)[..., None]

        fn = unit64(fn)
        adj = self.vertex_faces.numpy()  # (N, K), -1 padded
        acc = np.zeros_like(verts)
        for k in range(adj.shape[1]):
            col = adj[:, k]
            acc = acc + fn[:, np.maximum(col, 0)] * (col >= 0)[None, :, None]
        return unit64(acc)

    def _noisy_labels(self, faces: _Faces, rng: np.random.Generator) -> _Faces:
        """``faces`` with ``label_noise_std`` Gaussian noise on the identity and expression
        coefficients (quantised like every coefficient)."""
        std = float(self.cfg.label_noise_std)
        q = quantize_coefficients
        return _Faces(faces.identity, q(faces.ident + rng.standard_normal(faces.ident.shape) * std),
                      q(faces.exp + rng.standard_normal(faces.exp.shape) * std), faces.tex, faces.angles, faces.sh)

    def _vertex_normals_at(self, verts: Tensor, which: Tensor) -> Tensor:
        """Unit normals (normalised sum of the adjacent unit face normals) of the vertices
        ``which`` (flat ids into the ``M * N`` vertices of ``verts (M, N, 3)``): ``(len(which), 3)``.
        Adjacent faces are summed in increasing face id with element-wise ops (same bits on
        every CPU and for any set of requested vertices)."""
        n, f = self.n, self.tri.shape[0]
        flat = verts.reshape(-1, 3)
        mesh = torch.div(which, n, rounding_mode="floor")
        adj = self.vertex_faces.index_select(0, which - mesh * n)  # (U, K), -1 padded
        ok = (adj >= 0)[..., None]

        def face_normals(tri: Tensor) -> Tensor:  # (..., 3) global vertex ids -> unit normals
            v0, v1, v2 = (flat.index_select(0, tri[..., k].reshape(-1)).view(*tri.shape[:-1], 3) for k in range(3))
            return unit(torch.linalg.cross(v1 - v0, v2 - v0))

        if adj.numel() < verts.shape[0] * f:  # few vertices: the normals of their faces only
            tri = self.tri.index_select(0, adj.clamp_min(0).reshape(-1)).view(*adj.shape, 3)
            fn = face_normals(tri + (mesh * n)[:, None, None]) * ok
        else:  # every face normal once (the same values), then gathered
            all_tri = (self.tri[None] + (torch.arange(verts.shape[0]) * n)[:, None, None]).reshape(-1, 3)
            fn = face_normals(all_tri).index_select(0, (adj.clamp_min(0) + (mesh * f)[:, None]).reshape(-1))
            fn = fn.view(*adj.shape, 3) * ok
        acc = fn[:, 0]
        for k in range(1, adj.shape[1]):
            acc = acc + fn[:, k]
        return unit(acc)

    # ================================================================== the sample
    def _steps(self, split: str, index: int, seed: int) -> Generator[_Faces, tuple[Tensor, Tensor, Tensor], Sample]:
        """The sample as a generator: it yields each set of faces it needs decoded and is sent
        back ``(verts, albedo, rotations)``; its return value is the sample (see :meth:`_drive`)."""
        cfg, s, lay = self.cfg, self.size, self.layout
        rng = sample_rng(seed, split, index, "scene")
        rng_bg = sample_rng(seed, split, index, "background")
        rng_occ = sample_rng(seed, split, index, "occluders")
        rng_img = sample_rng(seed, split, index, "degrade")
        rng_lm = sample_rng(seed, split, index, "landmarks")
        labelled = bool(rng.random() < cfg.labelled_fraction)

        faces, layout, view_yaw = self._scene(rng, split)
        m = len(faces.identity)
        multiface = cfg.mode == "multiface"
        num_images = 1 if (multiface or cfg.mode == "single") else m
        image_of_face = np.zeros(m, np.int64) if num_images == 1 else np.arange(m)

        # ---- backgrounds (kinds drawn per image; "faces" adds unlabelled faces behind) ----
        kinds = list(cfg.backgrounds)
        if multiface and "faces" in kinds and len(kinds) > 1:
            kinds.remove("faces")
        weights = None
        if cfg.background_weights is not None:
            wmap = dict(zip(cfg.backgrounds, cfg.background_weights))
            weights = np.array([wmap[k] for k in kinds], dtype=np.float64)
            weights = weights / weights.sum() if weights.sum() > 0 else None
        bg_kinds = [str(kinds[int(rng_bg.choice(len(kinds), p=weights))]) for _ in range(num_images)]
        backgrounds = torch.stack([bg.make_background(rng_bg, k, s, s) for k in bg_kinds])
        bg_faces_img = [b for b, k in enumerate(bg_kinds) if k == "faces"
                        for _ in range(1 + int(rng_bg.random() < 0.3))]

        # ---- geometry of the GT faces (and of the background faces: one decode request) ----
        nb = len(bg_faces_img)
        if nb:
            bfaces = self._random_faces(rng_bg, draw_identities(rng_bg, cfg, split, nb))
            verts, albedo, rot = yield _Faces.concat([faces, bfaces])
            (verts, bverts), (albedo, balb), (rot, brot) = (x.split([m, nb]) for x in (verts, albedo, rot))
        else:
            verts, albedo, rot = yield faces
        plain = verts
        verts = self._with_detail(verts, faces.identity)
        rotated = rotate_points(verts, rot)
        # placement from the mesh without fine detail: the detail changes nothing else
        placed = rotated if verts is plain else rotate_points(plain, rot)
        weak_scale = weak_shift = None
        if self.weak:
            weak_scale, weak_shift = self._place_weak(rng, placed)
            trans = np.zeros((m, 3))
            world = rotated
            uv = self.weak_camera.project(world, torch.from_numpy(weak_scale.astype(np.float32)),
                                          torch.from_numpy(weak_shift.astype(np.float32)))
            screen = torch.cat([uv[..., :2], -world[..., 2:3]], -1)
        else:
            trans = (self._place_multiface(*layout) if multiface else self._place_perspective(rng, placed))
            world = rotated + torch.from_numpy(trans.astype(np.float32))[:, None]
            screen = self._project(world)
            if multiface:
                kept_by = screen if placed is rotated else self._project(
                    placed + torch.from_numpy(trans.astype(np.float32))[:, None])  # the faces without detail
                keep = _unhidden_centres(kept_by, self.camera.project(torch.from_numpy(trans))[:, :2])
                if not keep.all():  # decode again: GT meshes always come from an M-row decode
                    faces, trans = faces.take(keep), trans[keep]
                    verts, albedo, rot = yield faces
                    verts = self._with_detail(verts, faces.identity)
                    rotated = rotate_points(verts, rot)
                    world = rotated + torch.from_numpy(trans.astype(np.float32))[:, None]
                    screen = self._project(world)
                    m = len(faces.identity)
                    image_of_face = np.zeros(m, np.int64)
        shading_sh = torch.from_numpy(faces.sh.astype(np.float32))

        # ---- background faces ----------------------------------------------------------
        all_screen, all_world, all_alb, all_sh = [screen], [world], [albedo], [shading_sh]
        mesh_to_image = list(image_of_face)
        if nb:
            brotated = rotate_points(bverts, brot)
            ang = rng_bg.uniform(0, 2 * math.pi, nb)
            rad = rng_bg.uniform(0.3, 0.55, nb) * s
            centre = np.stack([s / 2 + rad * np.cos(ang), s / 2 + rad * np.sin(ang)], 1)
            far = rng_bg.uniform(1.3, 2.2, nb)
            if self.weak:
                k = torch.from_numpy((np.full(nb, self.camera.focal / self.camera.distance) / far).astype(np.float32))
                sh2 = torch.from_numpy((centre - s / 2).astype(np.float32)) * torch.tensor([1.0, -1.0])
                buv = self.weak_camera.project(brotated, k, sh2)
                bscreen = torch.cat([buv[..., :2], _WEAK_BG_OFFSET - brotated[..., 2:3]], -1)
                bworld = brotated
            else:
                depth = self.camera.distance * far
                bt = self.camera.unproject(torch.from_numpy(centre), torch.from_numpy(depth)).float()
                bworld = brotated + bt[:, None]
                bscreen = self._project(bworld)
            all_screen.append(bscreen)
            all_world.append(bworld)
            all_alb.append(balb)
            all_sh.append(torch.from_numpy(bfaces.sh.astype(np.float32)))
            mesh_to_image += bg_faces_img
        screen_all = torch.cat(all_screen)
        world_all = torch.cat(all_world)

        # ---- rasterize everything of the sample at once ---------------------------------
        m2i = torch.tensor(mesh_to_image, dtype=torch.long)
        frags = rasterize(screen_all, self.tri, s, mesh_to_image=m2i, num_images=num_images,
                          cull_backfaces=True, orthographic=self.weak)
        surf = pixel_barycentrics(screen_all, self.tri, frags)
        pix, mesh = surf.pixel_index, surf.mesh_index
        # shading only at the vertices of the visible triangles (far fewer than N at small sizes)
        used, where = torch.unique((mesh * self.n)[:, None] + surf.vertex_index, return_inverse=True)
        colors = torch.cat(all_alb).reshape(-1, 3).index_select(0, used)
        b = surf.bary
        per_pixel = lay.sh == 27 and cfg.shading == "lambertian_sh1"
        if lay.sh == 27:
            normals = self._vertex_normals_at(world_all, used)
            if per_pixel:  # Phong: the albedo and the normal are interpolated, the light is applied per pixel
                nrm = normals[where]
                n_pix = unit(b[:, 0:1] * nrm[:, 0] + b[:, 1:2] * nrm[:, 1] + b[:, 2:3] * nrm[:, 2])
                sh_pix = torch.cat(all_sh).index_select(0, mesh)
            else:  # Gouraud: shaded at the vertices, the colours are interpolated
                sh_used = torch.cat(all_sh).index_select(0, torch.div(used, self.n, rounding_mode="floor"))
                colors = (colors * sh_irradiance(normals[:, None], sh_used)[:, 0]).clamp(0.0, 1.0)
        g = colors[where]  # (P, 3, 3)
        rgb = b[:, 0:1] * g[:, 0] + b[:, 1:2] * g[:, 1] + b[:, 2:3] * g[:, 2]
        if per_pixel:
            rgb = (rgb * sh_irradiance(n_pix[:, None], sh_pix)[:, 0]).clamp(0.0, 1.0)
        img = backgrounds.permute(0, 2, 3, 1).reshape(-1, 3).clone()
        img[pix] = rgb
        hw = s * s
        is_gt = mesh < m
        gpix = pix[is_gt]
        instance = torch.full((num_images * hw,), -1, dtype=torch.long)
        instance[gpix] = mesh[is_gt]
        depth = torch.full((num_images * hw,), float("nan"))
        depth[gpix] = surf.depth[is_gt]
        parse = torch.zeros(num_images * hw, dtype=torch.long)
        parse[gpix] = self.regions[surf.nearest_vertex()[is_gt]]
        instance = instance.view(num_images, s, s)
        depth = depth.view(num_images, s, s)
        parse = parse.view(num_images, s, s)
        img = img.view(num_images, s, s, 3).permute(0, 3, 1, 2)

        # ---- 2D landmarks (exact projections of the GT landmark vertices) ---------------
        lm_screen = screen[:, self.lm_idx]  # (M, 68, 3): u, v, depth
        lm2d = lm_screen[..., :2]
        lm_np = lm2d.double().numpy()
        sizes = face_size_px(lm_np)

        # ---- occluders --------------------------------------------------------------------
        occ = torch.zeros(num_images, s, s, dtype=torch.bool)
        occ_kinds: list[str | None] = []
        for k in range(m):
            if rng_occ.random() >= cfg.occlusion_prob:
                occ_kinds.append(None)
                continue
            kind = str(cfg.occluders[int(rng_occ.integers(len(cfg.occluders)))])
            ell, cap = occluder_shapes(rng_occ, kind, lm_np[k], float(sizes[k]))
            mask = shapes_mask(ell, cap, s, s)
            colour = occluder_colour(rng_occ, kind, s, s)
            bi = int(image_of_face[k])
            img[bi] = torch.where(mask[None], colour, img[bi])
            occ[bi] |= mask
            occ_kinds.append(kind)
        face_mask = instance >= 0
        occlusion_mask = occ & face_mask
        parse = parse.masked_fill(occ, 0)
        skin = ((parse == SKIN) | (parse == NOSE)).float()
        occluded = torch.stack([(occlusion_mask[int(image_of_face[k])] & (instance[int(image_of_face[k])] == k)).any()
                                for k in range(m)])

        # ---- landmark visibility ------------------------------------------------------------
        col = torch.floor(lm2d[..., 0]).long()
        row = torch.floor(lm2d[..., 1]).long()
        inside = (col >= 0) & (col < s) & (row >= 0) & (row < s)
        bi = torch.from_numpy(image_of_face)[:, None].expand(m, 68)
        flat = (bi * hw + row.clamp(0, s - 1) * s + col.clamp(0, s - 1))
        at_inst = instance.reshape(-1)[flat]
        at_depth = depth.reshape(-1)[flat]
        own = at_inst == torch.arange(m)[:, None]
        near = (at_depth - lm_screen[..., 2]).abs() <= VISIBILITY_TOLERANCE_MM
        lm_visible = inside & own & near & ~occ.reshape(-1)[flat]

        # ---- image degradations ------------------------------------------------------------
        images, jpeg_q = [], []
        for bi_ in range(num_images):
            x = img[bi_]
            if rng_img.random() < cfg.blur_prob:
                x = degrade.gaussian_blur(x, float(rng_img.uniform(0.3, max(cfg.blur_sigma_max, 0.3))))
            x = degrade.add_noise(x, rng_img, float(rng_img.uniform(0.0, cfg.noise_max)))
            if cfg.grayscale:
                x = degrade.to_grayscale(x)
            u8 = degrade.quantize(x)
            q = None
            if rng_img.random() < cfg.jpeg_prob:
                q = int(rng_img.integers(cfg.jpeg_quality_min, 96))
                u8 = degrade.jpeg(u8, q)
                if cfg.grayscale:
                    u8 = u8[:1].expand(3, -1, -1).contiguous()
            images.append(degrade.u8_to_float(u8))
            jpeg_q.append(q)
        image = torch.stack(images)

        # ---- the record --------------------------------------------------------------------
        if self.weak:
            pose_t = np.concatenate([weak_shift, weak_scale[:, None]], 1)
            camera = {"type": "weak_perspective", "width": s, "height": s,
                      "scale": [float(x) for x in weak_scale],
                      "translation": [[float(a), float(b_)] for a, b_ in weak_shift]}
        else:
            pose_t = trans
            cam = self.camera
            camera = {"type": "perspective", "focal": float(cam.focal), "cx": float(cam.cx),
                      "cy": float(cam.cy), "distance": float(cam.distance), "width": s, "height": s}
        angles = torch.from_numpy(faces.angles.astype(np.float32))
        labels = faces
        if labelled and cfg.label_noise_std > 0 and split == "train":
            # noisy shape labels (a fitted 3DMM): noisy id/exp coefficients and their meshes
            labels = self._noisy_labels(faces, sample_rng(seed, split, index, "label_noise"))
            verts, _, lrot = yield labels
            world = rotate_points(verts, lrot)
            if not self.weak:
                world = world + torch.from_numpy(trans.astype(np.float32))[:, None]
        coeffs = lay.join({
            "id": torch.from_numpy(labels.ident.astype(np.float32)),
            "exp": torch.from_numpy(labels.exp.astype(np.float32)),
            "tex": torch.from_numpy(faces.tex.astype(np.float32)),
            "angles": angles,
            "sh": shading_sh if lay.sh == 27 else torch.zeros(m, 0),
            "trans": torch.from_numpy(trans.astype(np.float32)),
        })
        pose = torch.cat([angles, torch.from_numpy(pose_t.astype(np.float32))], 1)
        # lm68_3d like AFLW2000-3D's pt3d: (u, v) px and a relative depth scaled like u, v,
        # larger = nearer: perspective (z_ref - z_cam) f / z_ref with z_ref the camera depth of
        # the face origin; weak perspective s * z_world.
        if self.weak:
            zpx = -lm_screen[..., 2] * torch.from_numpy(weak_scale.astype(np.float32))[:, None]
        else:
            zref = torch.from_numpy((self.camera.distance - trans[:, 2]).astype(np.float32))[:, None]
            zpx = (zref - lm_screen[..., 2]) * self.camera.focal / zref
        lm3d = torch.cat([lm2d, zpx[..., None]], -1)
        mode = cfg.mode
        meta = {"dataset": "synthetic", "mode": mode, "split": split, "index": index, "seed": seed,
                "facemodel": self.model.name, "projection": cfg.projection,
                "identities": [int(i) for i in faces.identity],
                "backgrounds": bg_kinds, "occluders": occ_kinds, "jpeg_quality": jpeg_q,
                "grayscale": bool(cfg.grayscale)}
        if view_yaw is not None:
            meta["view_yaw_deg"] = float(view_yaw)
        if mode == "multiview" and cfg.view_yaws is not None:
            meta["view_yaws_deg"] = [float(y) for y in cfg.view_yaws]
        if cfg.detail_amplitude > 0:
            meta["detail_amplitude_mm"] = float(cfg.detail_amplitude)
        if cfg.shading != "sh2":
            meta["shading"] = cfg.shading
        if labels is not faces:
            meta["label_noise_std"] = float(cfg.label_noise_std)
        sample = Sample(kind=mode, sample_id=f"synthetic/{mode}/{split}/{seed}/{index:08d}",
                        camera=camera, labelled=labelled, meta=meta)

        def per_image(x: Tensor) -> Tensor:
            return x[0] if num_images == 1 else x

        def per_face(x: Tensor) -> Tensor:
            return x[0] if mode == "single" else x

        sample.image = per_image(image)
        if multiface:
            sample.identity = torch.from_numpy(faces.identity.copy())
            sample.meta["instance_map"] = instance[0].to(torch.int16)
        else:
            sample.identity = int(faces.identity[0])
        if not labelled:
            noise = rng_lm.standard_normal((m, 68, 2)) * (cfg.landmark_noise * sizes)[:, None, None]
            lm_det = (lm2d.double() + torch.from_numpy(noise)).float()
            sample.lm68 = per_face(lm_det)
            sample.lm5 = per_face(lm68_to_lm5(lm_det))
            return sample
        sample.lm68 = per_face(lm2d.contiguous())
        sample.lm68_visible = per_face(lm_visible)
        sample.lm5 = per_face(lm68_to_lm5(lm2d))
        sample.lm68_3d = per_face(lm3d)
        sample.parse = per_image(parse)
        sample.skin_mask = per_image(skin)
        sample.face_mask = per_image(face_mask)
        sample.occlusion_mask = per_image(occlusion_mask)
        sample.depth = per_image(depth)
        sample.coeffs = per_face(coeffs)
        if cfg.return_vertices:
            sample.vertices = per_face(verts.contiguous())
            sample.vertices_cam = per_face(world.contiguous())
        if cfg.return_topology:
            sample.triangles = self.tri.clone()
        sample.landmark_indices = self.lm_idx.clone()
        sample.yaw = per_face(angles[:, 1].clone())
        sample.pose = per_face(pose)
        sample.occluded = bool(occluded[0]) if mode == "single" else occluded
        if multiface:
            sample.centers = lm_centres(self.camera, torch.from_numpy(trans.astype(np.float32)))
        return sample


def _unhidden_centres(screen: Tensor, centres: Tensor) -> np.ndarray:
    """Faces to keep so that no face's centre pixel can be hidden by a nearer face: going from
    the nearest face to the farthest, a face is dropped when its centre lies inside the
    projected bounding box of a kept nearer face. ``screen (F, N, 3)``, ``centres (F, 2)``."""
    lo, hi = screen[..., :2].amin(1).double(), screen[..., :2].amax(1).double()
    depth = screen[..., 2].amin(1)
    order = torch.argsort(depth, stable=True).tolist()
    keep = np.zeros(screen.shape[0], dtype=bool)
    kept: list[int] = []
    for k in order:
        c = centres[k].double()
        if not any(bool(((c >= lo[j]) & (c <= hi[j])).all()) for j in kept):
            keep[k] = True
            kept.append(k)
    return keep


def lm_centres(camera: PerspectiveCamera, trans: Tensor) -> Tensor:
    """WM3DR face centres: the image of each face's model origin (its translation), (F, 2) px."""
    return camera.project(trans)[:, :2].contiguous()
