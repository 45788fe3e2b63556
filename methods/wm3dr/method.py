"""``wm3dr`` (multi-face images) and ``wm3dr_stage1`` (single centred faces): WM3DR, seed 004.

Training (Sec. III-B, Eqs. 7-16): the parameters are gathered at the ground-truth centre cells;
terms ``center`` (focal heatmap loss, binary targets as in the paper or CenterNet Gaussians),
``photo`` (robust L2,1 photometric loss on the skin mask x the union of the rendered masks, all
faces of an image rendered into one image), ``landmark`` (68 points, weight 20 on nose / inner
mouth, offsets in 224-px units of each face's crop), ``reg`` (coefficient regulariser, Deng's
group weights) and ``tex_var`` (albedo variance over the skin vertices). The perceptual identity
term is not built (see docs/methods/wm3dr.md).

Stage 1 (``wm3dr_stage1``) trains the same network on single centred faces (the centre label is
the image centre); stage 2 (``wm3dr``) starts from its checkpoint (``stage1_checkpoint``, filled
in by the benchmark runner through ``MethodSpec.checkpoint_args``) on multi-face images.
"""

from __future__ import annotations

from collections.abc import Mapping
import math
from typing import Any

import torch
from torch import Tensor

from benchmark3dface.data.sample import Sample
from benchmark3dface.geometry.camera import DENG_FOCAL_224, PerspectiveCamera
from benchmark3dface.geometry.rotation import euler_to_matrix, rotate
from benchmark3dface.losses import (coefficient_regularization, draw_gaussian_heatmap, focal_heatmap_loss,
                                    landmark_loss, landmark_weights, photometric_loss, texture_flatness_loss)
from benchmark3dface.methods import MethodSpec, Reconstruction, ReconstructionMethod
from benchmark3dface.render import render_passes

from .networks import WM3DRNet, cell_of, find_peaks, gather_cells, raw_to_coeffs

#: profile -> config, relative to this package (package data; experiments/*/wm3dr*.yaml link here)
CONFIGS = {"quick": "configs/quick.yaml", "paper": "configs/paper.yaml"}
STAGE1_CONFIGS = {"quick": "configs/stage1_quick.yaml", "paper": "configs/stage1_paper.yaml"}

TERMS = ("center", "photo", "landmark", "reg", "tex_var")
#: the paper's weights (Sec. III-B): lambda_c 1, lambda_pix 100, lambda_lan 0.1, lambda_norm 1e-4,
#: lambda_var 1e-3 (lambda_per 0.01: the perceptual term is not built)
PAPER_WEIGHTS = {"center": 1.0, "photo": 100.0, "landmark": 0.1, "reg": 1e-4, "tex_var": 1e-3}
REG_WEIGHTS = {"id": 1.0, "exp": 0.8, "tex": 1.7e-3}


def sample_ids(batch: Sample) -> list[str]:
    return list(batch.sample_id) if isinstance(batch.sample_id, list) else [batch.sample_id]


def _box_side(lm: Tensor) -> Tensor:
    """(K, 68, 2) -> (K,) sqrt(w h) of each landmark box (px)."""
    wh = (lm.amax(1) - lm.amin(1)).clamp_min(1.0)
    return (wh[:, 0] * wh[:, 1]).sqrt()


class WM3DR(ReconstructionMethod):
    """WM3DR stage 2: one network pass per image, one face per heatmap peak, one camera per image.

    Args:
        facemodel / facemodel_path: the morphable model (its layout size sets the head, 257).
        image_size: stage-1 crop size (single faces are resized to it); multi-face images are
            never resized (the global camera's focal length is fixed in pixels).
        backbone: timm name (``resnet50`` paper; ``resnet18`` / ``resnet10t`` quick).
        width / head_width: neck and head channels (256 paper).
        focal: the global camera's focal length in pixels (1015, Deng's; the principal point is
            the image centre, Eq. 4).
        lr / lr_schedule: Adam learning rate, ``constant`` | ``cosine``.
        loss_weights / reg_weights: overrides of :data:`PAPER_WEIGHTS` / :data:`REG_WEIGHTS`.
        heatmap_target: ``binary`` (the paper) | ``gaussian`` (CenterNet, radius a quarter of
            the face's landmark box in cells).
        landmark_high_weight: weight of nose / inner-mouth points (20 paper).
        photo_images: render the photometric term on the first k images of a batch (None = all).
        threshold / peak_kernel / max_faces: peak decoding (0.5, 3x3, at most 100 faces).
        init_face_px: the depth output's initial bias puts every cell's face at this size (the
            side of its Deng crop, px; 224 = Deng's crop at the global focal length).
        stage1_checkpoint: a ``wm3dr_stage1`` (or ``wm3dr``) Lightning checkpoint to start from.
    """

    spec = MethodSpec(
        name="wm3dr", input_kind="multiface", requires=("lm68", "centers"), inputs=("image",),
        outputs=("mesh", "landmarks2d", "albedo"), configs=CONFIGS,
        checkpoint_args={"stage1_checkpoint": "wm3dr_stage1"},
        description="WM3DR: single-shot multi-face 3DMM regression, centre heatmap + per-cell parameters, "
                    "one global camera",
        paper="Zhang et al., Weakly-Supervised Multi-Face 3D Reconstruction, 2021")

    def __init__(self, facemodel: str = "procedural", facemodel_path: str | None = None, image_size: int = 224,
                 backbone: str = "resnet50", width: int = 256, head_width: int | None = None,
                 focal: float = DENG_FOCAL_224, lr: float = 1e-4, lr_schedule: str = "constant",
                 loss_weights: Mapping[str, float] | None = None, reg_weights: Mapping[str, float] | None = None,
                 heatmap_target: str = "binary", landmark_high_weight: float = 20.0,
                 photo_images: int | None = None, threshold: float = 0.5, peak_kernel: int = 3,
                 max_faces: int = 100, init_face_px: float = 224.0, stage1_checkpoint: str | None = None):
        super().__init__(facemodel=facemodel, facemodel_path=facemodel_path, image_size=image_size)
        self.save_hyperparameters()
        if lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {lr_schedule!r}")
        if heatmap_target not in ("binary", "gaussian"):
            raise ValueError(f"heatmap_target must be 'binary' or 'gaussian', got {heatmap_target!r}")
        w = dict(PAPER_WEIGHTS)
        for k, v in (loss_weights or {}).items():
            if k not in TERMS:
                raise ValueError(f"unknown WM3DR loss term {k!r} in loss_weights; terms are {TERMS}")
            w[k] = float(v)
        r = dict(REG_WEIGHTS)
        for k, v in (reg_weights or {}).items():
            if k not in r:
                raise ValueError(f"unknown regulariser group {k!r}; groups are {sorted(r)}")
            r[k] = float(v)
        self.weights, self.reg = w, r
        self.net = WM3DRNet(backbone, self.facemodel.layout.size, width, head_width)
        with torch.no_grad():  # every cell starts at a face of init_face_px (Deng-crop side, px)
            z = self.facemodel.layout.slice("trans").start + 2
            self.net.param_head[-1].bias[z] = math.log(224.0 / float(init_face_px))
        self.register_buffer("lm_weights", landmark_weights(high_weight=landmark_high_weight), persistent=False)
        #: images for which ``reconstruct`` found no face (an empty, counted result)
        self.empty_images = 0
        if stage1_checkpoint:
            self.load_stage1(stage1_checkpoint)

    # ------------------------------------------------------------------ weights
    def load_stage1(self, path: str) -> None:
        from benchmark3dface.training.weights import load_submodule_from_checkpoint

        load_submodule_from_checkpoint(
            self.net, path, "net", "a WM3DR stage-1 checkpoint",
            "train wm3dr_stage1 first (b3f fit --config experiments/quick/wm3dr_stage1.yaml)",
            must_match={k: self.hparams[k] for k in ("backbone", "width", "head_width")}, allow_unexpected=False)

    # ------------------------------------------------------------------ cameras
    def image_camera(self, height: int, width: int, single: bool) -> PerspectiveCamera:
        """Single centred faces: Deng's camera at the crop size (the single board's convention);
        whole images: the global camera ``K = [[f, 0, w/2], [0, f, h/2], [0, 0, 1]]`` (Eq. 4)."""
        if single:
            return PerspectiveCamera.deng(int(width))
        return PerspectiveCamera.global_image(int(width), int(height), focal=float(self.hparams.focal))

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        return self.net(image)

    @staticmethod
    def _is_single(batch: Sample) -> bool:
        return not isinstance(batch.lm68, list) and not isinstance(getattr(batch, "centers", None), list) \
            and getattr(batch, "kind", "") != "multiface"

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def reconstruct(self, batch: Sample) -> list[Reconstruction]:
        if batch.image is None:
            raise ValueError("wm3dr needs the batch's images")
        img = batch.image.float()
        img = img[None] if img.dim() == 3 else img
        ids = sample_ids(batch)
        single = self.spec.input_kind == "single"
        was = self.training
        self.eval()
        try:
            net_in = self.network_input(img) if single else img
            heat, pmap = self.net(net_in)
        finally:
            self.train(was)
        prob = torch.sigmoid(heat)
        h, w = net_in.shape[-2:]
        cam = self.image_camera(h, w, single)
        out_cam = self.image_camera(*img.shape[-2:], single)
        stride = self.net.stride
        lay = self.facemodel.layout
        out = []
        if single:  # one face per crop: the highest cell
            flat = prob.flatten(1).argmax(1)
            cells = torch.stack([flat // prob.shape[-1], flat % prob.shape[-1]], -1)
            idx = torch.arange(img.shape[0], device=img.device)
            coeffs, _ = raw_to_coeffs(gather_cells(pmap, idx, cells).float(), cells, cam, stride, lay)
            faces = self.faces_from_coeffs(coeffs, out_cam, with_center=True)
            for b, (sid, f) in enumerate(zip(ids, faces)):
                f.score = float(prob[b, 0, cells[b, 0], cells[b, 1]])
                out.append(Reconstruction(sid, [f], extras={"n_faces": 1}))
            return out
        peaks = find_peaks(prob, self.hparams.threshold, self.hparams.peak_kernel, self.hparams.max_faces)
        for b, (sid, pk) in enumerate(zip(ids, peaks)):
            if pk.cells.shape[0] == 0:
                self.empty_images += 1
                out.append(Reconstruction(sid, [], extras={"n_faces": 0}))
                continue
            raw = pmap[b, :, pk.cells[:, 0], pk.cells[:, 1]].T.float()
            coeffs, _ = raw_to_coeffs(raw, pk.cells, cam, stride, lay)
            faces = self.faces_from_coeffs(coeffs, cam, with_center=True)
            for f, s in zip(faces, pk.scores.tolist()):
                f.score = float(s)
            out.append(Reconstruction(sid, faces, extras={"n_faces": len(faces)}))
        return out

    # ------------------------------------------------------------------ training
    def _targets(self, batch: Sample, height: int, width: int) -> tuple[Tensor, Tensor, Tensor]:
        """(image index (K,), centres (K, 2) px, lm68 (K, 68, 2) px) of every GT face."""
        img = batch.image
        dev = img.device
        if self._is_single(batch):
            lm = batch.lm68[None] if batch.lm68.dim() == 2 else batch.lm68
            b = lm.shape[0]
            centers = torch.tensor([[width / 2, height / 2]], device=dev).expand(b, 2)
            return torch.arange(b, device=dev), centers, lm.to(dev).float()
        lms = batch.lm68 if isinstance(batch.lm68, list) else [batch.lm68]
        cs = batch.centers if isinstance(batch.centers, list) else [batch.centers]
        idx, centers, lm = [], [], []
        for b, (c, l) in enumerate(zip(cs, lms)):
            if c is None or l is None:
                continue
            c = c.reshape(-1, 2)
            idx.append(torch.full((c.shape[0],), b, dtype=torch.long, device=dev))
            centers.append(c.to(dev).float())
            lm.append(l.reshape(-1, 68, 2).to(dev).float())
        if not idx:
            return (torch.zeros(0, dtype=torch.long, device=dev), torch.zeros(0, 2, device=dev),
                    torch.zeros(0, 68, 2, device=dev))
        return torch.cat(idx), torch.cat(centers), torch.cat(lm)

    def _landmarks(self, coeffs: Tensor, cam: PerspectiveCamera) -> Tensor:
        fm = self.facemodel
        p = fm.layout.split(coeffs)
        li = fm.landmarks68
        verts = (fm.mean_shape[li] + torch.einsum("bk,knc->bnc", p["id"], fm.id_basis[:, li])
                 + torch.einsum("bk,knc->bnc", p["exp"], fm.exp_basis[:, li]))
        return cam.project(rotate(verts, euler_to_matrix(p["angles"]), p["trans"]))[..., :2]

    def compute_loss(self, batch: Sample) -> tuple[Tensor, dict[str, Tensor], dict[str, Any]]:
        img = batch.image.float()
        img = img[None] if img.dim() == 3 else img
        single = self._is_single(batch)
        B, _, H, W = img.shape
        heat, pmap = self.net(img)
        h, w = heat.shape[-2:]
        stride = self.net.stride
        idx, centers, lm_gt = self._targets(batch, H, W)
        cells = cell_of(centers, stride, h, w)
        terms: dict[str, Tensor] = {}
        wt = self.weights
        if self.hparams.heatmap_target == "binary":
            radii = torch.zeros(len(idx), device=img.device)
        else:
            radii = (_box_side(lm_gt) / stride / 4).floor() if len(idx) else torch.zeros(0, device=img.device)
        cell_uv = torch.stack([cells[:, 1].float() + 0.5, cells[:, 0].float() + 0.5], -1)
        target = draw_gaussian_heatmap(cell_uv, radii, idx, B, h, w)
        terms["center"] = focal_heatmap_loss(heat, target, alpha=2.0, beta=4.0, logits=True)
        extras: dict[str, Any] = {"faces": len(idx), "heat": heat.detach(), "target": target}
        if len(idx):
            cam = self.image_camera(H, W, single)
            raw = gather_cells(pmap, idx, cells)
            coeffs, _ = raw_to_coeffs(raw, cells, cam, stride, self.facemodel.layout)
            parts = self.facemodel.layout.split(coeffs)
            if wt["landmark"]:
                unit = (224.0 / (2.0 * _box_side(lm_gt)))[:, None, None]
                pred = self._landmarks(coeffs, cam)
                terms["landmark"] = landmark_loss(pred * unit, lm_gt * unit, weights=self.lm_weights.to(pred))
                extras["lm_px"] = (pred - lm_gt).norm(dim=-1).mean().detach()
            if wt["reg"]:
                terms["reg"] = coefficient_regularization(parts["id"], parts["exp"],
                                                          parts["tex"] if self.facemodel.layout.tex else None,
                                                          self.reg["id"], self.reg["exp"], self.reg["tex"])
            k = B if self.hparams.photo_images is None else max(1, min(B, int(self.hparams.photo_images)))
            sel = idx < k
            if (wt["photo"] or wt["tex_var"]) and bool(sel.any()):
                geo = self.facemodel.decode(coeffs[sel], cam)
                if wt["photo"]:
                    r = render_passes(geo.projected, self.facemodel.triangles, (H, W), ("rgb", "mask"),
                                      vertex_colors=geo.colors, mesh_to_image=idx[sel], num_images=k,
                                      cull_backfaces=True)
                    m = r["mask"][:, 0]  # union of every face rendered into its image
                    skin = getattr(batch, "skin_mask", None) if "skin_mask" in _fields(batch) else None
                    if skin is not None:
                        skin = skin[None] if skin.dim() == 2 else skin
                        m = m * (skin[:k].to(m) > 0.5).to(m)
                    terms["photo"] = photometric_loss(r["rgb"], img[:k], weight=m)
                if wt["tex_var"] and self.facemodel.layout.tex:
                    terms["tex_var"] = texture_flatness_loss(geo.albedo, self.facemodel.skin)
        total = sum(wt[n] * v for n, v in terms.items())
        return total, terms, extras

    def training_step(self, batch: Sample, batch_idx: int) -> Tensor:
        total, terms, extras = self.compute_loss(batch)
        if not torch.isfinite(total):
            raise FloatingPointError(f"wm3dr: non-finite loss at step {self.global_step}: "
                                     f"{ {k: float(v) for k, v in terms.items()} }")
        bs = int(batch.image.shape[0]) if batch.image.dim() == 4 else 1
        self.log("train/loss", total.detach(), prog_bar=True, batch_size=bs)
        for n, v in terms.items():
            self.log(f"train/{n}", v.detach(), batch_size=bs)
        if "lm_px" in extras:
            self.log("train/lm_px", extras["lm_px"], prog_bar=True, batch_size=bs)
        return total

    def validation_step(self, batch: Sample, batch_idx: int) -> None:
        total, terms, extras = self.compute_loss(batch)
        bs = int(batch.image.shape[0]) if batch.image.dim() == 4 else 1
        self.log("val/loss", total.detach(), batch_size=bs)
        if "lm_px" in extras:
            self.log("val/lm_px", extras["lm_px"], prog_bar=True, batch_size=bs)

    def configure_optimizers(self) -> Any:
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        if self.hparams.lr_schedule == "constant":
            return opt
        total = int(self.trainer.estimated_stepping_batches) if self.trainer is not None else 1000
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _fields(batch: Sample) -> tuple[str, ...]:
    """Fields readable on ``batch`` (an InputView at test time, a Sample when training)."""
    present = getattr(batch, "present", None)
    if callable(present):
        return tuple(present())
    return tuple(k for k, v in vars(batch).items() if v is not None)


class WM3DRStage1(WM3DR):
    """WM3DR stage 1: the same network on single centred faces (centre label: the image centre),
    evaluated on the single board (one face per crop: the highest heatmap cell)."""

    spec = MethodSpec(
        name="wm3dr_stage1", input_kind="single", requires=("lm68",), inputs=("image",),
        outputs=("mesh", "landmarks2d", "albedo"), configs=STAGE1_CONFIGS,
        description="WM3DR stage 1: the single-shot network trained on single centred faces",
        paper="Zhang et al., Weakly-Supervised Multi-Face 3D Reconstruction, 2021")


__all__ = ["PAPER_WEIGHTS", "REG_WEIGHTS", "TERMS", "WM3DR", "WM3DRStage1"]
