"""``deep3d``: Deng'19 R-Net trained with the weakly-supervised hybrid loss (single images)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from benchmark3dface.data.sample import Sample
from benchmark3dface.geometry.camera import PerspectiveCamera
from benchmark3dface.methods import MethodSpec, Reconstruction, ReconstructionMethod

from .evaluate import true_error
from .losses import DengLoss, resolve_weights
from .networks import RNet, coefficient_output_scale

#: profile -> LightningCLI config, relative to this package's directory: package data under
#: configs/, so they are found in a non-editable install too (experiments/*/deep3d.yaml link here)
CONFIGS = {"quick": "configs/quick.yaml", "paper": "configs/paper.yaml"}


def sample_ids(batch: Sample) -> list[str]:
    return list(batch.sample_id) if isinstance(batch.sample_id, list) else [batch.sample_id]


class PerceptualMixin:
    """Resolves the ``perceptual`` option to a frozen encoder kept outside the module tree,
    and records why the term is off in ``config_warnings``."""

    config_warnings: list[str]

    def _init_perceptual(self, spec: str, weight: float, train_missing: bool) -> None:
        from benchmark3dface.perceptual import build_encoder, parse_spec

        self.config_warnings = []
        self._pending_idnet = False
        encoder = None
        if weight == 0.0:
            parse_spec(spec)  # still validate the option
        else:
            kind, path = parse_spec(spec)
            if kind == "idnet" and path is None and train_missing:
                from benchmark3dface.perceptual.idnet import IdNetConfig, cached_idnet

                got = cached_idnet(IdNetConfig())
                if got is None:
                    self._pending_idnet = True  # trained in setup("fit"), not at construction
                else:
                    encoder = got[0].freeze()
            else:
                encoder, warns = build_encoder(spec)
                for w in warns:
                    self._warn(w)
        object.__setattr__(self, "_encoder", encoder)  # not a submodule: never in checkpoints

    def _warn(self, message: str) -> None:
        self.config_warnings.append(message)
        warnings.warn(f"{type(self).__name__}: {message}", stacklevel=3)

    def _resolve_pending_encoder(self) -> None:
        if not self._pending_idnet:
            return
        from benchmark3dface.perceptual.idnet import IdNetConfig, load_or_train_idnet

        model, _, _ = load_or_train_idnet(IdNetConfig())
        object.__setattr__(self, "_encoder", model.freeze())
        self._pending_idnet = False
        self.loss.encoder = self._encoder

    @property
    def encoder(self):
        return self._encoder


class Deep3D(PerceptualMixin, ReconstructionMethod):
    """Deng et al. 2019 R-Net: a timm ResNet regressing the model's coefficient vector, trained
    without 3D labels by rendering the prediction (Deng's camera rescaled to the input size).

    Args:
        facemodel / facemodel_path: morphable model source (the coefficient layout sets the
            head size: 257 for Deng's layout).
        image_size: nominal input size (the camera is always taken from the actual batch size).
        backbone: timm name (``resnet50`` = paper, ``resnet18`` = quick profile).
        backbone_weights: optional local ImageNet state dict for the backbone (Deng initialises
            from ImageNet; nothing is downloaded).
        lr: Adam learning rate (1e-4 paper). lr_schedule: ``constant`` | ``cosine`` (to 0 over
            the trainer's steps). weight_decay: Adam weight decay (0 paper).
        loss_preset: ``paper`` | ``code`` (see losses.py); loss_weights / reg_weights: per-term
            overrides, e.g. ``{"perceptual": 0.0}`` or ``{"tex": 1.7e-2}``.
        perceptual: identity encoder: ``none`` | ``idnet`` | ``idnet:<path>`` |
            ``facenet:<path>`` | ``arcface:<path>``; without an encoder the term is off and
            the reason is recorded in ``config_warnings`` (also saved in checkpoints).
        train_missing_idnet: with ``perceptual="idnet"``, train (and cache) the default IdNet
            at ``setup("fit")`` when it is not cached yet.
        skin_source: skin attention from ``auto`` (the sample's skin mask, else the
            preprocessing skin-colour model) | ``sample`` | ``model`` | ``none``.
        landmark_unit_224: landmark offsets in 224-px units (paper weights at any input size).
        use_landmark_visibility: ignore landmarks flagged invisible (default: use all 68).
        zero_init_head: start from the mean face at the default pose (official code).
        trans_unit_mm: the network's translation output unit in mm (100: decimetres, as Deng's
            network predicts for BFM in decimetres; keeps the output scales of all groups alike).
        head_grid: 1 = global average pooling before the head (paper); k > 1 pools the last
            feature map to k x k cells.
        landmark_high_weight: weight of the nose / inner-mouth landmarks (20 = paper). Trained
            from scratch on a small budget, the 20x weights lock the translation onto the nose and
            mouth and the pose is learned far more slowly (docs/methods/deep3d.md).
        image_terms_subset: compute the rendered-image terms on the first k images of each
            batch only (None = all images, the paper; see losses.DengLoss).
        shape_output_scale: factor on the identity / expression outputs (1 = paper). Under Adam
            every head weight moves at the learning rate, so < 1 is a lower effective learning
            rate for the shape than for the pose (less shape noise while the pose is learned).
        shape_warmup_steps: for the first N training steps the identity / expression outputs
            are held at 0 (mean shape) so that pose, light and albedo are learned first (0 =
            paper). From scratch, the shape otherwise absorbs the pose errors (it correlates with
            the image features the pose is not yet read from) and ends up worse than the mean.
    """

    spec = MethodSpec(
        name="deep3d", input_kind="single", requires=("lm68",), outputs=("mesh", "landmarks2d", "albedo"),
        configs=CONFIGS, eval_kinds=("single", "single_weak"),  # single_weak: the depth board (mesh rendered)
        description="Deng'19 R-Net: ResNet -> 3DMM coefficients, weakly supervised hybrid loss",
        paper="Deng et al., Accurate 3D Face Reconstruction with Weakly-Supervised Learning, CVPRW 2019")

    def __init__(self, facemodel: str = "procedural", facemodel_path: str | None = None, image_size: int = 224,
                 backbone: str = "resnet50", backbone_weights: str | None = None, lr: float = 1e-4,
                 lr_schedule: str = "constant", weight_decay: float = 0.0, loss_preset: str = "paper",
                 loss_weights: Mapping[str, float] | None = None, reg_weights: Mapping[str, float] | None = None,
                 perceptual: str = "idnet", train_missing_idnet: bool = False, skin_source: str = "auto",
                 landmark_unit_224: bool = True, use_landmark_visibility: bool = False,
                 zero_init_head: bool = True, trans_unit_mm: float = 100.0, head_grid: int = 1,
                 landmark_high_weight: float = 20.0, image_terms_subset: int | None = None,
                 shape_output_scale: float = 1.0, shape_warmup_steps: int = 0):
        super().__init__(facemodel=facemodel, facemodel_path=facemodel_path, image_size=image_size)
        self.save_hyperparameters()
        if lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {lr_schedule!r}")
        self.rnet = RNet(backbone, self.facemodel.layout.size, weights=backbone_weights, zero_init_head=zero_init_head,
                         output_scale=coefficient_output_scale(self.facemodel.layout, trans_unit_mm,
                                                               shape_output_scale),
                         head_grid=head_grid)
        weights, reg = resolve_weights(loss_preset, loss_weights, reg_weights)
        self._init_perceptual(perceptual, weights["perceptual"], train_missing_idnet)
        self.shape_frozen = shape_warmup_steps > 0
        self.loss = DengLoss(self.facemodel, weights, reg, encoder=self._encoder, skin_source=skin_source,
                             landmark_unit_224=landmark_unit_224, use_landmark_visibility=use_landmark_visibility,
                             landmark_high_weight=landmark_high_weight, image_terms_subset=image_terms_subset)

    # ------------------------------------------------------------------ inference
    def forward(self, image: Tensor) -> Tensor:
        """(B, 3, S, S) in [0, 1] -> (B, layout.size) coefficients."""
        return self.rnet(image)[0]

    @staticmethod
    def _images(batch: Sample) -> Tensor:
        if batch.image is None:
            raise ValueError("deep3d needs images in the batch")
        img = batch.image
        return img[None] if img.dim() == 3 else img

    @torch.no_grad()
    def reconstruct(self, batch: Sample) -> list[Reconstruction]:
        img = self._images(batch).float()
        was = self.training
        self.eval()
        try:
            coeffs = self(self.network_input(img))
        finally:
            self.train(was)
        faces = self.faces_from_coeffs(coeffs, PerspectiveCamera.deng(int(img.shape[-1])))
        return [Reconstruction(sid, [f], extras={"coeffs": c.cpu()}) for sid, f, c in zip(sample_ids(batch), faces, coeffs)]

    # ------------------------------------------------------------------ training
    def setup(self, stage: str) -> None:
        if stage == "fit":
            self._resolve_pending_encoder()

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self.shape_frozen = self.global_step < self.hparams.shape_warmup_steps

    def compute_loss(self, batch: Sample):
        img = self._images(batch).float()
        coeffs = self(img)
        if self.training and self.shape_frozen:
            lay = self.facemodel.layout
            keep = torch.ones(lay.size, device=coeffs.device, dtype=coeffs.dtype)
            keep[lay.slice("id")] = 0.0
            keep[lay.slice("exp")] = 0.0
            coeffs = coeffs * keep
        lm68 = batch.lm68
        if lm68 is not None and lm68.dim() == 2:
            lm68 = lm68[None]
        lm5 = batch.lm5[None] if batch.lm5 is not None and batch.lm5.dim() == 2 else batch.lm5
        skin = batch.skin_mask
        if skin is not None and skin.dim() == 2:
            skin = skin[None]
        vis = batch.lm68_visible
        if vis is not None and vis.dim() == 1:
            vis = vis[None]
        result, extras = self.loss(coeffs, img, lm68, lm5, skin, vis)
        return result, coeffs, extras

    def _log_terms(self, prefix: str, result, batch_size: int) -> None:
        on_step = prefix == "train"
        self.log(f"{prefix}/loss", result.total.detach(), prog_bar=True, on_step=on_step, on_epoch=not on_step,
                 batch_size=batch_size)
        for name, value in result.terms.items():
            self.log(f"{prefix}/{name}", value, on_step=on_step, on_epoch=not on_step, batch_size=batch_size)

    def training_step(self, batch: Sample, batch_idx: int) -> Tensor:
        result, coeffs, _ = self.compute_loss(batch)
        if not torch.isfinite(result.total):
            raise FloatingPointError(f"deep3d: non-finite loss at step {self.global_step}: "
                                     f"{ {k: float(v) for k, v in result.terms.items()} }")
        self._log_terms("train", result, coeffs.shape[0])
        return result.total

    def validation_step(self, batch: Sample, batch_idx: int) -> None:
        result, coeffs, _ = self.compute_loss(batch)
        self._log_terms("val", result, coeffs.shape[0])
        if batch.vertices is not None:
            p = self.facemodel.layout.split(coeffs)
            pred = self.facemodel.shape(p["id"], p["exp"])
            gt = batch.vertices if batch.vertices.dim() == 3 else batch.vertices[None]
            if gt.shape == pred.shape:
                self.log("val/true_error_mm", true_error(pred, gt.to(pred)).mean(), prog_bar=True,
                         batch_size=coeffs.shape[0])

    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if self.hparams.lr_schedule == "constant":
            return opt
        total = int(self.trainer.estimated_stepping_batches) if self.trainer is not None else 1000
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------ checkpoint extras
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["config_warnings"] = list(self.config_warnings)
