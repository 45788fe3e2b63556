"""``fitting``: per-image analysis-by-synthesis with Deng'19's losses (no network, no training).

For a batch of images (each one an independent problem, optimised together):

1. **Initial pose** from the 2D landmarks: ``geometry.pose.fit_pose_to_landmarks`` places the
   mean face's 68 landmarks (or its 5 alignment points when the sample has only ``lm5``) on
   the sample's landmarks; identity, expression, albedo and lighting start at 0 (mean face,
   ambient white light). A sample without landmarks keeps the identity pose (Deng-aligned crop).
2. **Stage "landmarks"**: pose + identity + expression on the landmark loss and the
   coefficient prior (no rendering: only the 68 landmark vertices are decoded).
3. **Appearance init**: SH lighting and albedo coefficients solved in closed form for the
   current geometry (alternating ridge least squares, ``appearance.py``).
4. **Stage "photometric"**: all coefficients (+ albedo, SH lighting) on the robust photometric
   loss with skin attention, rendered at ``fit_size`` pixels, plus landmarks, coefficient
   prior, albedo flatness and the gamma (monochrome light) prior.

Defaults (Adam on normalised parameters, cosine-decayed learning rate): 150 landmark steps at
lr 0.05, then 40 photometric steps at lr 0.05 rendered at 128 px. See docs/methods/fitting.md.

Sets and multi-view samples (``eval_kinds`` includes ``multiview``): every view is fitted on its
own (one problem per image, as for single images), ``per_view`` holds the per-view faces and the
aggregated face is the front view's (``aggregate="front"``) or the mean of the per-view
identities with a neutral expression in the front view's pose (``aggregate="mean_identity"``).
``fit(..., views=V)`` ties the identity, expression, albedo and lighting of every V consecutive
images (the multi-view baseline ``fitting_mv``, multiview.py).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark3dface.data.sample import Sample
from benchmark3dface.facemodel import lm68_to_lm5
from benchmark3dface.geometry.camera import PerspectiveCamera
from benchmark3dface.geometry.pose import fit_pose_to_landmarks
from benchmark3dface.losses import skin_attention
from benchmark3dface.methods import MethodSpec, Reconstruction, ReconstructionMethod

from .appearance import init_appearance
from .objective import (
    DEFAULT_REG_WEIGHTS,
    DEFAULT_WEIGHTS,
    LandmarkDecoder,
    LandmarkTarget,
    appearance_priors,
    coefficient_prior,
    landmark_target,
    landmark_term,
    model_landmarks,
    photometric_terms,
    resolve_weights,
    total,
)
from .optimize import OPTIMIZERS, Stage, group_mask, run_stage

SKIN_SOURCES = ("auto", "sample", "model", "none")
AGGREGATES = ("front", "mean_identity")
#: coefficient groups one multi-view problem shares across its views (the pose is per view)
SHARED_GROUPS = ("id", "exp", "tex", "sh")


def _ids(batch: Sample) -> list[str]:
    return list(batch.sample_id) if isinstance(batch.sample_id, list) else [batch.sample_id]


def _stacked(value: Any, name: str) -> Tensor | None:
    if value is None or isinstance(value, Tensor):
        return value
    raise ValueError(f"fitting: the batch's {name} is a list (some samples have it, others not, or shapes "
                     f"differ); batch samples with the same annotations together")


def _batched(x: Tensor | None, sample_ndim: int, device: torch.device) -> Tensor | None:
    """A copy of ``x`` on ``device`` with a leading batch axis (added for an uncollated sample)."""
    if x is None:
        return None
    x = x.clone().to(device)
    return x[None] if x.ndim == sample_ndim else x


class Fitting(ReconstructionMethod):
    """Optimisation-based fitting baseline (see the module docstring).

    Args:
        facemodel / facemodel_path / image_size: see ``ReconstructionMethod``.
        landmark_iters / landmark_lr: stage 1 (pose + identity + expression on landmarks).
        photo_iters / photo_lr: stage 2 (all coefficients on the photometric + other terms).
        optimizer: ``"adam"`` (independent per-image problems) or ``"lbfgs"``.
        fit_size: side (px) at which the photometric stage renders; the image and the skin
            attention are downsampled to it (antialiased); None or a size >= the input's
            renders at the input size.
        loss_weights: overrides of ``objective.DEFAULT_WEIGHTS`` (photo, landmark, reg,
            tex_flat, gamma).
        reg_weights: overrides of the coefficient-prior group weights (id, exp, tex).
        skin_source: skin attention from the sample's ``skin_mask`` (``sample``), from the
            preprocessing skin-colour model (``model``), the first available (``auto``), or
            none (``none``: all pixels weight 1).
        keep_best: per image, keep the best coefficients seen during a stage (Adam).
        appearance_init: before the photometric stage, solve the SH lighting and the albedo
            coefficients in closed form (alternating ridge least squares, ``appearance.py``).
    """

    spec = MethodSpec(name="fitting", input_kind="single", requires=(), inputs=("image", "lm68", "lm5"),
                      trainable=False, eval_kinds=("single", "multiview", "single_weak"),
                      outputs=("mesh", "landmarks2d", "albedo"),
                      description="per-image analysis-by-synthesis on Deng'19's losses (landmarks, then photometric)",
                      paper="baseline (optimisation; losses of Deng et al. 2019)")

    def __init__(self, facemodel: str = "procedural", facemodel_path: str | None = None, image_size: int = 224,
                 landmark_iters: int = 150, landmark_lr: float = 0.05, photo_iters: int = 40,
                 photo_lr: float = 0.05, optimizer: str = "adam", fit_size: int | None = 128,
                 loss_weights: Mapping[str, float] | None = None, reg_weights: Mapping[str, float] | None = None,
                 skin_source: str = "auto", keep_best: bool = True, appearance_init: bool = True,
                 aggregate: str = "front"):
        # settings are checked before the (slower) face model is loaded
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"fitting: optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        if skin_source not in SKIN_SOURCES:
            raise ValueError(f"fitting: skin_source must be one of {SKIN_SOURCES}, got {skin_source!r}")
        if aggregate not in AGGREGATES:
            raise ValueError(f"fitting: aggregate must be one of {AGGREGATES}, got {aggregate!r}")
        if fit_size is not None and fit_size < 16:
            raise ValueError(f"fitting: fit_size must be >= 16 px (or None), got {fit_size}")
        weights = resolve_weights(loss_weights, DEFAULT_WEIGHTS, "fitting loss term")
        reg = resolve_weights(reg_weights, DEFAULT_REG_WEIGHTS, "regulariser group")
        stages = (
            Stage("landmarks", ("angles", "trans", "id", "exp"), landmark_iters, landmark_lr, photometric=False),
            Stage("photometric", ("id", "exp", "tex", "angles", "sh", "trans"), photo_iters, photo_lr,
                  photometric=True),
        )
        super().__init__(facemodel, facemodel_path, image_size)
        self.save_hyperparameters()
        self.weights, self.reg_weights, self.stages = weights, reg, stages
        self.optimizer_name = optimizer
        self.fit_size = fit_size
        self.skin_source = skin_source
        self.keep_best = keep_best
        self.appearance_init = appearance_init
        self.aggregate = aggregate
        #: views whose identity / expression / albedo / light are tied in one problem (1: none)
        self.tie_views = False

    # ------------------------------------------------------------------ pieces
    def initial_coeffs(self, target: LandmarkTarget | None, batch_size: int, camera: PerspectiveCamera,
                       device: torch.device) -> Tensor:
        """Zero coefficients with the pose fitted to the landmarks (mean face), (B, C)."""
        fm = self.facemodel
        coeffs = fm.layout.zeros(batch_size, device=device)
        if target is None:
            return coeffs
        mean_lm = fm.mean_shape[fm.landmarks68].expand(batch_size, 68, 3)
        pts3 = lm68_to_lm5(mean_lm) if target.five else mean_lm
        vis = (target.weights > 0).to(pts3.dtype)
        angles, trans, _ = fit_pose_to_landmarks(pts3, target.points.to(pts3), camera, weights=vis)
        coeffs[:, fm.layout.slice("angles")] = angles
        coeffs[:, fm.layout.slice("trans")] = trans
        return coeffs

    def attention(self, batch: Sample, image: Tensor, lm5: Tensor | None) -> Tensor:
        """(B, H, W) Deng skin attention at the input size (see ``skin_source``)."""
        b, _, h, w = image.shape
        skin = _stacked(batch.skin_mask, "skin_mask") if "skin_mask" in batch.present() else None
        if self.skin_source == "none":
            return image.new_ones(b, h, w)
        if skin is not None and self.skin_source in ("auto", "sample"):
            return skin_attention(skin.to(image).reshape(b, h, w))
        if self.skin_source == "sample":
            raise ValueError("fitting: skin_source='sample' but the batch has no skin_mask")
        from benchmark3dface.data.preprocess.skin import skin_mask

        maps = [skin_mask(image[i], None if lm5 is None else lm5[i]) for i in range(b)]
        return torch.stack(maps).to(image)

    def _project(self, coeffs: Tensor) -> Tensor:
        """Keep blendshape weights of ``unit_interval`` models in [0, 1]."""
        if self.facemodel.exp_prior != "unit_interval":
            return coeffs
        out = coeffs.clone()
        sl = self.facemodel.layout.slice("exp")
        out[:, sl] = out[:, sl].clamp(0.0, 1.0)
        return out

    def fit(self, image: Tensor, target: LandmarkTarget | None, attention: Tensor,
            views: int = 1) -> tuple[Tensor, dict[str, Tensor]]:
        """Fit coefficients to (B, 3, S, S) images.

        Args:
            image: input images in [0, 1]; target: landmarks in input pixels (or None);
            attention: (B, S, S) skin attention.
            views: tie every ``views`` consecutive images into one problem: their
                ``SHARED_GROUPS`` coefficients (identity, expression, albedo, SH light) are the
                mean over the views (so they move together), the pose is per view, and the
                objective of each image is the mean of its problem's (1: independent images).
        Returns:
            coefficients (B, C) and per-image diagnostics: ``landmark_rms_px`` (input pixels,
            NaN without landmarks), ``photometric`` (colour units at the fit size), ``loss``
            (final objective of the last stage that ran), ``seconds_<stage>`` (per image).
        """
        fm = self.facemodel
        b, _, size, _ = image.shape
        if views < 1 or b % views:
            raise ValueError(f"fitting: {b} images are not groups of {views} views")
        cam = PerspectiveCamera.deng(size)
        shared = group_mask(fm.layout, SHARED_GROUPS, image.device).bool()

        def tie(c: Tensor) -> Tensor:
            if views == 1:
                return c
            mean = c.reshape(-1, views, c.shape[-1]).mean(1, keepdim=True).expand(-1, views, -1).reshape(c.shape)
            return torch.where(shared, mean, c)

        def share(loss: Tensor) -> Tensor:
            return loss if views == 1 else loss.reshape(-1, views).mean(1).repeat_interleave(views)

        coeffs = tie(self.initial_coeffs(target, b, cam, image.device))
        lm_decoder = LandmarkDecoder(fm)
        fs = size if self.fit_size is None else min(size, int(self.fit_size))
        if fs != size:
            img_fit = F.interpolate(image, size=(fs, fs), mode="bilinear", antialias=True, align_corners=False)
            att_fit = F.interpolate(attention[:, None], size=(fs, fs), mode="bilinear", antialias=True,
                                    align_corners=False)[:, 0].clamp(0, 1)
        else:
            img_fit, att_fit = image, attention
        use_lm = target is not None and self.weights["landmark"] != 0

        def landmark_objective(c: Tensor) -> Tensor:
            c = tie(c)
            terms = {"reg": coefficient_prior(c, fm, self.reg_weights),
                     "landmark": landmark_term(lm_decoder(c, cam), target)}
            return share(total(terms, self.weights))

        def photometric_objective(c: Tensor) -> Tensor:
            c = tie(c)
            photo, geo, _ = photometric_terms(c, fm, img_fit, att_fit)
            terms = {"photo": photo, "reg": coefficient_prior(c, fm, self.reg_weights),
                     **appearance_priors(c, fm, geo.albedo)}
            if use_lm:
                terms["landmark"] = landmark_term(geo.landmarks2d * (size / fs), target)
            return share(total(terms, self.weights))

        last = coeffs.new_full((b,), float("nan"))
        diag: dict[str, Tensor] = {}
        for stage in self.stages:
            if not stage.photometric and not use_lm:
                continue  # nothing to fit the landmarks to
            t0 = time.perf_counter()
            if stage.photometric and self.appearance_init and stage.iterations > 0:
                coeffs = tie(init_appearance(coeffs, fm, img_fit, att_fit))
            objective = photometric_objective if stage.photometric else landmark_objective
            coeffs, loss = run_stage(coeffs, objective, stage, fm.layout, self.optimizer_name,
                                     keep_best=self.keep_best, project=self._project)
            coeffs = tie(coeffs)
            if stage.iterations > 0:
                last = loss
            diag[f"seconds_{stage.name}"] = coeffs.new_full((b,), (time.perf_counter() - t0) / b)
        with torch.no_grad():
            photo = photometric_terms(coeffs, fm, img_fit, att_fit)[0]
            if target is not None:
                d = model_landmarks(lm_decoder(coeffs, cam), target) - target.points.to(coeffs)
                vis = (target.weights > 0).to(coeffs)
                rms = ((d ** 2).sum(-1) * vis).sum(-1).div(vis.sum(-1).clamp_min(1)).sqrt()
            else:
                rms = coeffs.new_full((b,), float("nan"))
        diag.update(landmark_rms_px=rms, photometric=photo, loss=last)
        return coeffs.detach(), diag

    # ------------------------------------------------------------------ contract
    def reconstruct(self, batch: Sample) -> list[Reconstruction]:
        if batch.image is None:
            raise ValueError("fitting needs the batch's images")
        ids = _ids(batch)
        if batch.image.ndim == 5 or (batch.image.ndim == 4 and len(ids) == 1 and batch.image.shape[1] == 3
                                      and _kind(batch) in ("set", "multiview")):
            return self.reconstruct_views(batch)
        coeffs, faces, extras = self._fit_images(batch, ids, batch.image, batch.lm68, batch.lm5, 1)
        return [Reconstruction(sid, [face], extras=extras[i]) for i, (sid, face) in enumerate(zip(ids, faces))]

    def reconstruct_views(self, batch: Sample) -> list[Reconstruction]:
        """Sets / multi-view samples ``(B, V, 3, S, S)``: one fit per view (tied across the views
        when ``tie_views``), ``per_view`` faces, and the aggregated face (``aggregate``)."""
        ids = _ids(batch)
        image = batch.image if batch.image.ndim == 5 else batch.image[None]
        b, v = image.shape[:2]
        flat = image.reshape(b * v, *image.shape[2:])

        def views_of(x: Tensor | None, k: int) -> Tensor | None:
            return None if x is None else _stacked(x, "landmarks").reshape(b * v, k, 2)

        unit_ids = [f"{sid}#v{k}" for sid in ids for k in range(v)]
        coeffs, faces, extras = self._fit_images(batch, unit_ids, flat, views_of(batch.lm68, 68),
                                                 views_of(batch.lm5, 5), v if self.tie_views else 1)
        kind = _kind(batch)
        front = v // 2 if kind == "multiview" else 0
        out = []
        for i, sid in enumerate(ids):
            per_view = faces[i * v:(i + 1) * v]
            if self.aggregate == "mean_identity":
                lay = self.facemodel.layout
                c = coeffs[i * v + front].clone()
                c[lay.slice("id")] = coeffs[i * v:(i + 1) * v, lay.slice("id")].mean(0)
                c[lay.slice("exp")] = 0
                agg = self.faces_from_coeffs(c[None], PerspectiveCamera.deng(int(flat.shape[-1])))[0]
            else:
                agg = per_view[front]
            ex = {"coeffs": coeffs[i * v:(i + 1) * v].cpu(), "aggregate": self.aggregate, "tied_views": self.tie_views,
                  "fit_seconds": sum(e["fit_seconds"] for e in extras[i * v:(i + 1) * v])}
            out.append(Reconstruction(sid, [agg], per_view=per_view, extras=ex))
        return out

    def _fit_images(self, batch: Sample, ids: list[str], images: Tensor, lm68: Tensor | None, lm5: Tensor | None,
                    views: int) -> tuple[Tensor, list, list[dict[str, Any]]]:
        """Fit (N, 3, S, S) images (``views``: see ``fit``) -> coefficients, faces, extras."""
        t0, c0 = time.perf_counter(), time.process_time()
        # evaluation loops run under inference mode; fitting needs autograd (and normal tensors)
        with torch.inference_mode(False), torch.enable_grad():
            dev = self.facemodel.mean_shape.device
            image = images.clone().to(dev, torch.float32)
            if image.ndim == 3:
                image = image[None]
            if image.ndim != 4 or image.shape[1] != 3 or image.shape[-1] != image.shape[-2]:
                raise ValueError(f"fitting needs square RGB images (B, 3, S, S), got {tuple(image.shape)}")
            size = image.shape[-1]
            lm68 = _batched(_stacked(lm68, "lm68"), 2, dev)
            lm5 = _batched(_stacked(lm5, "lm5"), 2, dev)
            vis = None
            if "lm68_visible" in batch.present() and views == 1 and image.shape[0] == len(_ids(batch)):
                vis = _batched(_stacked(batch.lm68_visible, "lm68_visible"), 1, dev)
            lm5_att = lm5 if lm5 is not None else (lm68_to_lm5(lm68.float()) if lm68 is not None else None)
            target = landmark_target(None if lm68 is None else lm68.float(), vis,
                                     None if lm5 is None else lm5.float(), size)
            skin_view = batch if image.shape[0] == len(_ids(batch)) else _NoSkin()
            attention = self.attention(skin_view, image, lm5_att).clone()
            coeffs, diag = self.fit(image, target, attention, views=views)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        faces = self.faces_from_coeffs(coeffs, PerspectiveCamera.deng(size))
        init = "none" if target is None else ("lm5" if target.five else "lm68")
        n = len(ids)
        extras = [{"coeffs": coeffs[i].cpu(), "fit_seconds": seconds / n, "fit_batch_seconds": seconds,
                   "fit_cpu_seconds": cpu / n, "fit_batch_size": n, "fit_landmarks": init,
                   **{f"fit_{k}": float(v[i]) for k, v in diag.items()}} for i in range(n)]
        return coeffs, faces, extras


class _NoSkin:
    """A stand-in batch without a skin mask (views flattened from a set / multi-view batch)."""

    skin_mask = None

    def present(self) -> list[str]:
        return []


def _kind(batch: Sample) -> str:
    k = batch.kind
    return k if isinstance(k, str) else (k[0] if k else "single")


__all__ = ["AGGREGATES", "SHARED_GROUPS", "SKIN_SOURCES", "Fitting"]
