"""Richardson'17 parameter vector and the feedback channels rendered from an estimate.

The CoarseNet parameter vector ``r`` (``ParamLayout``) is identity + expression coefficients
of the morphable model followed by the weak-perspective pose: 3 Euler angles (radians, the
project's convention), the 2D translation as a fraction of the image side, and the log of the
scale relative to the *nominal* scale (the scale at which the engine places a frontal mean face,
``nominal_placement``). ``r = 0`` is therefore the mean face, frontal, centred as the synthetic
engine and Deng's alignment centre a face -- the starting point of the iteration (Sec. 3.2).
Using fractions of the image side and a log scale makes ``r`` independent of the image size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from benchmark3dface.data.preprocess.align import deng_target_points, fit_scale_translation
from benchmark3dface.facemodel import MorphableModel
from benchmark3dface.facemodel.model import lm68_to_lm5
from benchmark3dface.geometry.camera import WeakPerspectiveCamera
from benchmark3dface.geometry.mesh import vertex_normals
from benchmark3dface.geometry.rotation import euler_to_matrix
from benchmark3dface.render.interpolate import pixel_barycentrics
from benchmark3dface.render.rasterize import rasterize
from benchmark3dface.render.shading import pncc_code

POSE = ("pitch", "yaw", "roll", "tx", "ty", "log_scale")


@dataclass(frozen=True)
class ParamLayout:
    """``r = (id [n_id], exp [n_exp], pose [6])``."""

    n_id: int
    n_exp: int

    @property
    def size(self) -> int:
        return self.n_id + self.n_exp + 6

    @property
    def shape_slice(self) -> slice:
        return slice(0, self.n_id + self.n_exp)

    @property
    def pose_slice(self) -> slice:
        return slice(self.n_id + self.n_exp, self.size)


def nominal_placement(model: MorphableModel, size: int) -> tuple[float, float, float]:
    """``(scale px/mm, tx px, ty px)`` of the frontal mean face placed like the synthetic engine
    does (least-squares scale + translation of its 5 points onto Deng's targets, no jitter)."""
    mean = model.mean_shape.detach().double().cpu()
    lm = mean[model.landmarks68.cpu()]
    c = size / 2.0
    p = torch.stack([c + lm[:, 0], c - lm[:, 1]], -1)
    target = deng_target_points(mean.float(), model.landmarks68.cpu(), size).double()
    k, t2 = fit_scale_translation(lm68_to_lm5(p), target)
    return float(k), float(t2[0] + (k - 1) * c), float(-(t2[1] + (k - 1) * c))


class WeakDecoder:
    """Decode ``r`` into model-frame vertices, rotation and the weak-perspective screen mesh."""

    def __init__(self, model: MorphableModel):
        self.model = model
        lay = model.layout
        self.layout = ParamLayout(lay.id, lay.exp)
        self._nominal: dict[int, tuple[float, float, float]] = {}
        self._pncc: Tensor | None = None

    def nominal(self, size: int) -> tuple[float, float, float]:
        if size not in self._nominal:
            self._nominal[size] = nominal_placement(self.model, size)
        return self._nominal[size]

    def split(self, r: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        n = self.layout.n_id
        return r[:, :n], r[:, n:self.layout.n_id + self.layout.n_exp], r[:, self.layout.pose_slice]

    def camera_params(self, r: Tensor, size: int) -> tuple[Tensor, Tensor]:
        """``scale (B,)`` px/mm and ``translation2d (B, 2)`` px of ``r`` at image side ``size``."""
        s0, tx0, ty0 = self.nominal(size)
        pose = r[:, self.layout.pose_slice]
        scale = s0 * torch.exp(pose[:, 5])
        t2 = torch.stack([tx0 + size * pose[:, 3], ty0 + size * pose[:, 4]], -1)
        return scale, t2

    def pose_from_sample(self, angles: Tensor, tx: Tensor, ty: Tensor, scale: Tensor, size: int) -> Tensor:
        """Inverse of ``camera_params``: the engine's pose -> the 6 pose entries of ``r``."""
        s0, tx0, ty0 = self.nominal(size)
        return torch.cat([angles, ((tx - tx0) / size)[:, None], ((ty - ty0) / size)[:, None],
                          torch.log(scale / s0)[:, None]], 1)

    def decode(self, r: Tensor, size: int) -> dict[str, Tensor]:
        """``vertices`` (model frame, mm), ``rotation``, ``rotated`` (R v), ``screen``
        ((u, v) px, -z_world mm), ``scale``, ``translation2d``, ``landmarks2d``."""
        m = self.model
        ident, exp, pose = self.split(r)
        verts = m.shape(ident, exp)
        rot = euler_to_matrix(pose[:, :3])
        rotated = torch.einsum("bij,bnj->bni", rot, verts)
        scale, t2 = self.camera_params(r, size)
        cam = WeakPerspectiveCamera(size, size)
        screen = cam.screen(rotated, scale, t2)
        return {"vertices": verts, "rotation": rot, "rotated": rotated, "screen": screen, "scale": scale,
                "translation2d": t2, "landmarks2d": screen[:, m.landmarks68, :2]}

    def pncc(self) -> Tensor:
        if self._pncc is None:
            self._pncc = pncc_code(self.model.mean_shape.detach().float())
        return self._pncc

    def render(self, r: Tensor, size: int, extra: Tensor | None = None) -> dict[str, Tensor]:
        """Rasterize the estimate ``r`` at ``size`` px (back faces culled, orthographic): ``mask``
        (B,1,H,W), ``pncc`` (B,3,H,W), ``normal`` (B,3,H,W; camera frame, in [-1, 1]),
        ``depth`` (B,1,H,W; -z_world mm, NaN off the mesh), and ``extra`` per-vertex attributes
        ``(N, C)`` / ``(B, N, C)`` interpolated to (B,C,H,W). No gradients (feedback is an input)."""
        with torch.no_grad():
            geo = self.decode(r.float(), size)
            tri = self.model.triangles.long()
            screen = geo["screen"]
            frags = rasterize(screen, tri, size, cull_backfaces=True, orthographic=True)
            surf = pixel_barycentrics(screen, tri, frags)
            nrm = vertex_normals(geo["rotated"], tri)
            attrs = [self.pncc().to(screen).expand(screen.shape[0], -1, -1), nrm, screen[..., 2:3]]
            if extra is not None:
                attrs.append(extra.to(screen).expand(screen.shape[0], -1, -1) if extra.dim() == 2 else extra.to(screen))
            a = torch.cat(attrs, -1)
            img = surf.interpolate(a, 0.0).permute(0, 3, 1, 2)
            mask = frags.mask.to(screen.dtype).unsqueeze(1)
            n = torch.nn.functional.normalize(img[:, 3:6], dim=1) * mask
            depth = img[:, 6:7].masked_fill(mask == 0, float("nan"))
            out = {"mask": mask, "pncc": img[:, :3], "normal": n, "depth": depth, "geo": geo}
            if extra is not None:
                out["extra"] = img[:, 7:]
        return out


def grayscale(image: Tensor) -> Tensor:
    """(B, 3|1, H, W) in [0, 1] -> (B, 1, H, W) luminance (ITU-R BT.601)."""
    if image.shape[1] == 1:
        return image
    w = torch.tensor([0.299, 0.587, 0.114], dtype=image.dtype, device=image.device)
    return torch.einsum("bchw,c->bhw", image[:, :3], w)[:, None]
