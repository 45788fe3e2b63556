"""``dfmvr``: DF-MVR (Zhao et al., seed 001) -- multi-view (left, front, right) reconstruction
with a Tri-UNet fusion network, a RedNet regressor and face-parse masks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark3dface.data.sample import Sample
from benchmark3dface.geometry.camera import PerspectiveCamera
from benchmark3dface.losses import (
    DENG_HIGH_WEIGHT_INDICES,
    DFMVR_CODE_DILATION_PX,
    DFMVR_CODE_HIGH_WEIGHT_INDICES,
    DFMVR_CODE_LEVELS,
    DFMVR_PAPER_DILATION_PX,
    DFMVR_PAPER_LEVELS,
    aligned_landmark3d_loss,
    coefficient_regularization,
    dfmvr_weight_map,
    landmark_loss,
    landmark_weights,
    parse_cross_entropy,
    photometric_loss,
)
from benchmark3dface.contracts import FaceReconstruction
from benchmark3dface.methods import MethodSpec, Reconstruction, ReconstructionMethod
from benchmark3dface.metrics.true_error import aligned_vertex_errors
from benchmark3dface.render.interpolate import pixel_barycentrics
from benchmark3dface.render.rasterize import rasterize
from benchmark3dface.render.shading import render_rgb

from .landmarks101 import ALIGN7, landmarks101
from .networks import FUSIONS, CoefficientHeads, RedNet, batch_to_group_norm
from .parse_input import NUM_CLASSES, one_hot_parse, parse_from_lm68

CONFIGS = {"quick": "configs/quick.yaml", "paper": "configs/paper.yaml"}

#: loss presets. ``paper``: Sec. IV (w_p 4, w_m 3, w_l 1 with w_2d 0.02 / w_3d 1, w_reg 3e-4,
#: reg 1 / 0.8 / 0.017, weight-map levels 254/128/32 of 255, 20 px dilation at 224 px, weight 20
#: on nose + inner mouth). ``code``: the public code's weight map (0.99/0.5/0.25, ~5 px dilation)
#: and landmark weights (eyes too); term weights as the paper (REFERENCE.md lists no others).
LOSS_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"photo": 4.0, "mask": 3.0, "landmark": 1.0, "lm2d": 0.02, "lm3d": 1.0, "reg": 3e-4,
              "reg_id": 1.0, "reg_exp": 0.8, "reg_tex": 0.017, "levels": DFMVR_PAPER_LEVELS,
              "dilation_px_224": DFMVR_PAPER_DILATION_PX, "high_indices": DENG_HIGH_WEIGHT_INDICES},
    "code": {"photo": 4.0, "mask": 3.0, "landmark": 1.0, "lm2d": 0.02, "lm3d": 1.0, "reg": 3e-4,
             "reg_id": 1.0, "reg_exp": 0.8, "reg_tex": 0.017, "levels": DFMVR_CODE_LEVELS,
             "dilation_px_224": DFMVR_CODE_DILATION_PX, "high_indices": DFMVR_CODE_HIGH_WEIGHT_INDICES},
}
SHARED_GROUPS = ("id", "exp", "tex", "sh")


def resolve_loss(preset: str, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    if preset not in LOSS_PRESETS:
        raise ValueError(f"dfmvr: loss_preset must be one of {sorted(LOSS_PRESETS)}, got {preset!r}")
    out = dict(LOSS_PRESETS[preset])
    for k, v in (overrides or {}).items():
        if k not in out:
            raise ValueError(f"dfmvr: unknown loss weight {k!r}; known: {sorted(out)}")
        out[k] = v
    return out


def skip_nonfinite_grads(params) -> bool:
    """If any gradient is not finite, drop all gradients (the optimiser then skips the step)
    and return True."""
    params = [p for p in params if p.grad is not None]
    if all(torch.isfinite(p.grad).all() for p in params):
        return False
    for p in params:
        p.grad = None
    return True


def _ids(batch: Sample) -> list[str]:
    return list(batch.sample_id) if isinstance(batch.sample_id, list) else [batch.sample_id]


class DFMVR(ReconstructionMethod):
    """DF-MVR: per view RGB + a one-hot face-parse map -> fusion network -> RedNet -> shared
    identity / expression / texture / SH + one pose per view, trained by rendering each view.

    Args:
        fusion: ``triunet`` (paper) | ``unet`` (Table IV v2: one U-Net on stacked views) |
            ``cnn`` (v1: plain conv stack).
        widths: encoder widths (paper 64..1024); fused_channels: the fusion map's channels
            (paper 64, public code 256).
        regressor: ``rednet`` (involution, paper) | ``resnet`` (3x3 convs, Table IV v3);
            depth 26 | 38 | 50; reg_width: stem width (64 = RedNet/ResNet-50);
            involution_kernel / group_channels / reduction: 7 / 16 / 4 (paper).
        parse_input: concatenate the one-hot parse map to the RGB (False: Table IV v4, which also
            drops the mask loss). The parse comes from the 68 input landmarks
            (``parse_input.parse_from_lm68``) at training and test time.
        loss_preset: ``paper`` | ``code``; loss_weights: overrides (``{"lm3d": 0}`` = v5).
        single_view_prob: chance per training triplet of keeping one random view and blacking out
            the others (paper 1/3); losses then use the kept view only.
        views: number of views (3); front_view: the view slot a single image is put in and whose
            face is the aggregated one (1 = front).
        init_yaws_deg: initial per-view yaw of the pose heads (the rig's nominal view yaws).
        trans_unit_mm: translation output unit.
        lr / lr_schedule / weight_decay: Adam (paper 1e-4, cosine).
        norm: ``batch`` (paper, public code) | ``group``: GroupNorm instead of every BatchNorm of
            the fusion network and the regressor (the quick profile: BatchNorm's running
            statistics made one-view inputs non-finite after a short run; networks.batch_to_group_norm).
    """

    spec = MethodSpec(
        name="dfmvr", input_kind="multiview", requires=("lm68", "parse"), inputs=("image", "lm68"),
        outputs=("mesh", "landmarks2d", "albedo"), configs=CONFIGS, eval_kinds=("multiview", "single"),
        description="DF-MVR: Tri-UNet fusion of three views + RedNet regressor, face-parse weighted losses",
        paper="Zhao et al., Weakly-Supervised Multi-view 3D Face Reconstruction with Deep Fusion (DF-MVR)",
        version="1")

    def __init__(self, facemodel: str = "procedural", facemodel_path: str | None = None, image_size: int = 224,
                 fusion: str = "triunet", widths: Sequence[int] = (64, 128, 256, 512, 1024), fused_channels: int = 64,
                 regressor: str = "rednet", depth: int = 50, reg_width: int = 64, involution_kernel: int = 7,
                 group_channels: int = 16, reduction: int = 4, parse_input: bool = True, loss_preset: str = "paper",
                 loss_weights: Mapping[str, Any] | None = None, single_view_prob: float = 1 / 3, views: int = 3,
                 front_view: int = 1, init_yaws_deg: Sequence[float] | None = (-30.0, 0.0, 30.0),
                 trans_unit_mm: float = 100.0, lr: float = 1e-4, lr_schedule: str = "cosine",
                 weight_decay: float = 0.0, norm: str = "batch"):
        super().__init__(facemodel=facemodel, facemodel_path=facemodel_path, image_size=image_size)
        self.save_hyperparameters()
        if fusion not in FUSIONS:
            raise ValueError(f"dfmvr: fusion must be one of {sorted(FUSIONS)}, got {fusion!r}")
        if regressor not in ("rednet", "resnet"):
            raise ValueError(f"dfmvr: regressor must be 'rednet' or 'resnet', got {regressor!r}")
        if lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"dfmvr: lr_schedule must be 'constant' or 'cosine', got {lr_schedule!r}")
        if norm not in ("batch", "group"):
            raise ValueError(f"dfmvr: norm must be 'batch' or 'group', got {norm!r}")
        if not 0 <= front_view < views:
            raise ValueError(f"dfmvr: front_view {front_view} outside [0, {views})")
        self.views = int(views)
        in_ch = 3 + (NUM_CLASSES if parse_input else 0)
        self.fusion = FUSIONS[fusion](in_ch, list(widths), fused_channels, views=self.views)
        self.regressor = RedNet(fused_channels, depth, reg_width, involution=regressor == "rednet",
                                kernel_size=involution_kernel, group_channels=group_channels, reduction=reduction)
        if norm == "group":
            batch_to_group_norm(self.fusion)
            batch_to_group_norm(self.regressor)
        lay = self.facemodel.layout
        self.heads = CoefficientHeads(self.regressor.out_channels, [(g, getattr(lay, g)) for g in SHARED_GROUPS],
                                      views=self.views, trans_unit_mm=trans_unit_mm, init_yaws_deg=init_yaws_deg)
        self.weights = resolve_loss(loss_preset, loss_weights)
        if not parse_input:
            self.weights["mask"] = 0.0  # v4 removes the face mask input and the mask loss
        self.skipped_steps = 0
        self.register_buffer("lm101", landmarks101(self.facemodel), persistent=False)
        self.register_buffer("lm_w", landmark_weights(68, 20.0, self.weights["high_indices"]), persistent=False)

    # ------------------------------------------------------------------ network
    def network_inputs(self, images: Tensor, lm68: Tensor | None) -> Tensor:
        """``(B, V, 3, H, W)`` images + ``(B, V, 68, 2)`` landmarks (px of the images) -> the
        network input ``(B, V, 3 [+ 10], S, S)`` at ``image_size`` (parse drawn from landmarks)."""
        x = self.network_input(images.float())
        if not self.hparams.parse_input:
            return x
        s = x.shape[-1]
        if lm68 is None:
            raise ValueError("dfmvr: the parse input channel needs 68 landmarks per view (lm68)")
        parse = parse_from_lm68(lm68.float() * (s / images.shape[-1]), s)
        return torch.cat([x, one_hot_parse(parse).to(x)], 2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, V, C, S, S)`` -> (shared ``(B, id+exp+tex+sh)``, pose ``(B, V, 6)``)."""
        return self.heads(self.regressor(self.fusion(x)))

    def view_coeffs(self, shared: Tensor, pose: Tensor) -> Tensor:
        """-> ``(B, V, layout.size)`` per-view coefficient vectors (shared part repeated)."""
        lay = self.facemodel.layout
        b, v = pose.shape[:2]
        parts, off = {}, 0
        for g in SHARED_GROUPS:
            k = getattr(lay, g)
            parts[g] = shared[:, None, off:off + k].expand(b, v, k)
            off += k
        parts["angles"], parts["trans"] = pose[..., :3], pose[..., 3:]
        return lay.join(parts, batch_shape=(b, v), dtype=shared.dtype, device=shared.device)

    def _as_views(self, batch: Sample) -> tuple[Tensor, Tensor | None, Tensor]:
        """Images ``(B, V, 3, H, W)``, landmarks and a ``(B, V)`` present-view mask; a single
        image goes to the front slot, the other views black."""
        img = batch.image
        if img is None:
            raise ValueError("dfmvr needs images in the batch")
        lm = batch.lm68 if "lm68" in batch.present() else None
        if img.dim() == 3:
            img, lm = img[None], None if lm is None else lm.reshape(1, 68, 2)
        if img.dim() == 4:  # single images
            b = img.shape[0]
            full = img.new_zeros(b, self.views, *img.shape[1:])
            full[:, self.hparams.front_view] = img
            lmv = None
            if lm is not None:
                lmv = lm.new_zeros(b, self.views, 68, 2)
                lmv[:, :] = lm.reshape(b, 1, 68, 2)
            present = torch.zeros(b, self.views, dtype=torch.bool, device=img.device)
            present[:, self.hparams.front_view] = True
            return full, lmv, present
        if img.shape[1] != self.views:
            raise ValueError(f"dfmvr: expected {self.views} views, got {img.shape[1]}")
        return img, lm, torch.ones(img.shape[:2], dtype=torch.bool, device=img.device)

    def _blank(self, x: Tensor, present: Tensor) -> Tensor:
        return x * present[:, :, None, None, None].to(x)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict_coeffs(self, batch: Sample) -> tuple[Tensor, Tensor]:
        img, lm, present = self._as_views(batch)
        was = self.training
        self.eval()
        try:
            x = self._blank(self.network_inputs(img, lm), present)
            shared, pose = self(x)
        finally:
            self.train(was)
        return self.view_coeffs(shared, pose), present

    @torch.no_grad()
    def reconstruct(self, batch: Sample) -> list[Reconstruction]:
        single = batch.image is not None and batch.image.dim() <= 4
        coeffs, _ = self.predict_coeffs(batch)
        b, v, c = coeffs.shape
        size = int(batch.image.shape[-1])
        finite = torch.isfinite(coeffs).all(-1).all(-1)  # (B,)
        faces = self.faces_from_coeffs(torch.nan_to_num(coeffs).reshape(b * v, c), PerspectiveCamera.deng(size))
        for i in torch.nonzero(~finite).flatten().tolist():
            faces[i * v:(i + 1) * v] = [FaceReconstruction(None, None, failure="dfmvr: non-finite coefficients")
                                        for _ in range(v)]
        out, f = [], self.hparams.front_view
        for i, sid in enumerate(_ids(batch)):
            per = faces[i * v:(i + 1) * v]
            ex = {"coeffs": coeffs[i].cpu()}
            out.append(Reconstruction(sid, [per[f]], extras=ex) if single else
                       Reconstruction(sid, [per[f]], per_view=per, extras=ex))
        return out

    # ------------------------------------------------------------------ losses
    def render_views(self, coeffs: Tensor, size: int) -> tuple[Any, Tensor, Tensor, Tensor]:
        """``(M, C)`` coefficients -> (geometry, rgb ``(M,3,S,S)``, coverage ``(M,S,S)``, soft
        parse probabilities ``(M, 10, S, S)``: the model's vertex regions, background where
        nothing is covered)."""
        fm = self.facemodel
        geo = fm.decode(coeffs, PerspectiveCamera.deng(size))
        frags = rasterize(geo.projected, fm.triangles, size, cull_backfaces=True)
        surf = pixel_barycentrics(geo.projected, fm.triangles, frags)
        rgb = render_rgb(surf, geo.colors)
        mask = frags.mask.to(rgb.dtype)
        onehot = F.one_hot(fm.regions.clamp(0, NUM_CLASSES - 1), NUM_CLASSES).to(rgb.dtype)
        bg = torch.zeros(NUM_CLASSES, dtype=rgb.dtype, device=rgb.device)
        bg[0] = 1.0
        probs = surf.to_image(surf.interpolate_covered(onehot.expand(coeffs.shape[0], *onehot.shape)), bg)
        return geo, rgb, mask, probs.permute(0, 3, 1, 2)

    def loss_terms(self, batch: Sample, shared: Tensor, pose: Tensor, present: Tensor) -> dict[str, Tensor]:
        """Per-term losses (unweighted) over the present views (Eqs. 2-8)."""
        w = self.weights
        img = batch.image.float()
        b, v, _, h, _ = img.shape
        coeffs = self.view_coeffs(shared, pose)
        sel = present.reshape(-1)
        cv = coeffs.reshape(b * v, -1)[sel]
        imgs = img.reshape(b * v, 3, h, h)[sel]
        terms: dict[str, Tensor] = {}
        need_render = w["photo"] > 0 or w["mask"] > 0
        geo = None
        if need_render:
            geo, rgb, cover, probs = self.render_views(cv, h)
            parse = batch.parse.reshape(b * v, h, h)[sel] if batch.parse is not None else None
            if parse is None:
                raise ValueError("dfmvr: the photometric / mask terms need parse labels in the batch (parse)")
            if w["photo"] > 0:
                dil = int(round(w["dilation_px_224"] * h / 224))
                wmap = dfmvr_weight_map(parse, dil, w["levels"]) * cover
                terms["photo"] = photometric_loss(rgb, imgs, wmap, reduction="per_image")
            if w["mask"] > 0:
                terms["mask"] = parse_cross_entropy(probs, parse, inputs="probs")
        if w["lm2d"] > 0:
            if batch.lm68 is None:
                raise ValueError("dfmvr: the 2D landmark term needs lm68 in the batch")
            lm2d = geo.landmarks2d if geo is not None else \
                self.facemodel.decode(cv, PerspectiveCamera.deng(h)).landmarks2d
            unit = 224.0 / h
            gt = batch.lm68.float().reshape(b * v, 68, 2)[sel]
            terms["lm2d"] = landmark_loss(lm2d * unit, gt * unit, weights=self.lm_w.to(lm2d), squared=False)
        lay = self.facemodel.layout
        p = lay.split(coeffs[:, 0])  # shared groups are the same in every view
        if w["lm3d"] > 0:
            if batch.vertices is None:
                raise ValueError("dfmvr: the 3D landmark term needs GT 3D landmarks (vertices) in the batch")
            gt_v = batch.vertices.float()
            gt_v = gt_v[:, 0] if gt_v.dim() == 4 else gt_v
            shape = self.facemodel.shape(p["id"], p["exp"])
            terms["lm3d"] = aligned_landmark3d_loss(shape[:, self.lm101], gt_v[:, self.lm101], ALIGN7)
        if w["reg"] > 0:
            terms["reg"] = coefficient_regularization(p["id"], p["exp"], p["tex"], w["reg_id"], w["reg_exp"],
                                                      w["reg_tex"])
        return terms

    def total(self, terms: Mapping[str, Tensor]) -> Tensor:
        w = self.weights
        scale = {"photo": w["photo"], "mask": w["mask"], "lm2d": w["landmark"] * w["lm2d"],
                 "lm3d": w["landmark"] * w["lm3d"], "reg": w["reg"]}
        return sum(scale[k] * t for k, t in terms.items())

    def training_present(self, b: int, device) -> Tensor:
        """``(B, V)`` present views: all, or with ``single_view_prob`` one random view."""
        present = torch.ones(b, self.views, dtype=torch.bool, device=device)
        p = float(self.hparams.single_view_prob)
        if p > 0:
            single = torch.rand(b) < p
            keep = torch.randint(0, self.views, (b,))
            for i in torch.nonzero(single).flatten().tolist():
                present[i] = False
                present[i, keep[i]] = True
        return present

    def compute_loss(self, batch: Sample, present: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        img = batch.image
        if img is None or img.dim() != 5 or img.shape[1] != self.views:
            raise ValueError(f"dfmvr trains on {self.views}-view batches (B, V, 3, H, W)")
        if present is None:
            present = self.training_present(img.shape[0], img.device) if self.training else \
                torch.ones(img.shape[:2], dtype=torch.bool, device=img.device)
        x = self._blank(self.network_inputs(img, batch.lm68), present)
        shared, pose = self(x)
        terms = self.loss_terms(batch, shared, pose, present)
        return self.total(terms), terms, self.view_coeffs(shared, pose)

    def training_step(self, batch: Sample, batch_idx: int) -> Tensor:
        loss, terms, coeffs = self.compute_loss(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"dfmvr: non-finite loss at step {self.global_step}: "
                                     f"{ {k: float(v) for k, v in terms.items()} }")
        bs = coeffs.shape[0]
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=bs)
        for k, t in terms.items():
            self.log(f"train/{k}", t.detach(), batch_size=bs)
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        """Skip an update whose gradients are not finite (a pose that puts the face behind the
        camera early in training can give a finite loss with inf / NaN gradients); counted in
        ``train/skipped_steps``."""
        if skip_nonfinite_grads(self.parameters()):
            self.skipped_steps += 1
            self.log("train/skipped_steps", float(self.skipped_steps))

    def validation_step(self, batch: Sample, batch_idx: int) -> None:
        loss, terms, coeffs = self.compute_loss(batch)
        bs = coeffs.shape[0]
        self.log("val/loss", loss, batch_size=bs)
        if batch.vertices is not None:
            p = self.facemodel.layout.split(coeffs[:, 0])
            pred = self.facemodel.shape(p["id"], p["exp"])
            gt = batch.vertices[:, 0] if batch.vertices.dim() == 4 else batch.vertices
            self.log("val/true_error_mm", aligned_vertex_errors(pred, gt.to(pred)).mean().float(), prog_bar=True,
                     batch_size=bs)

    def configure_optimizers(self) -> Any:
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if self.hparams.lr_schedule == "constant":
            return opt
        total = int(self.trainer.estimated_stepping_batches) if self._trainer is not None else 1000
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


__all__ = ["DFMVR", "LOSS_PRESETS", "resolve_loss"]
