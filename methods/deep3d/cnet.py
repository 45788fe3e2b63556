"""``deep3d_cnet``: Deng'19 C-Net, confidence-weighted identity aggregation over image sets."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from benchmark3dface.data.sample import Sample
from benchmark3dface.geometry.camera import PerspectiveCamera
from benchmark3dface.methods import MethodSpec, Reconstruction, ReconstructionMethod
from benchmark3dface.training.weights import load_lightning_checkpoint

from .losses import DengLoss, resolve_weights
from .method import PerceptualMixin, sample_ids
from .networks import AGGREGATIONS, CNet, RNet, aggregate_identity, coefficient_output_scale

CONFIGS = {"quick": "configs/cnet_quick.yaml", "paper": "configs/cnet_paper.yaml"}  # package data, see method.py


def load_rnet_checkpoint(path: str | Path, layout) -> tuple[RNet, str]:
    """R-Net weights from a Deep3D Lightning checkpoint (``rnet.*`` keys; the backbone name is
    read from its hyper-parameters) or from a plain R-Net state dict saved with a
    ``{"backbone": name, "state_dict": ...}`` wrapper. Returns (R-Net, backbone name)."""
    p = Path(path).expanduser()
    blob = load_lightning_checkpoint(p, "an R-Net checkpoint of Deep3D", "train Deep3D first (e.g. `b3f fit --config "
                                     "experiments/quick/deep3d.yaml`) and pass its .ckpt as rnet_checkpoint")
    hp = blob.get("hyper_parameters", {}) or {}
    backbone = hp.get("backbone", blob.get("backbone"))
    if backbone is None:
        raise ValueError(f"{p}: no backbone name in the checkpoint's hyper_parameters")
    state = blob["state_dict"]
    rstate = {k[len("rnet."):]: v for k, v in state.items() if k.startswith("rnet.")} or dict(state)
    num_coeffs = layout.size
    scale = coefficient_output_scale(layout, float(hp.get("trans_unit_mm", 100.0)),
                                     float(hp.get("shape_output_scale", 1.0)))
    rnet = RNet(backbone, num_coeffs, zero_init_head=False, output_scale=scale, head_grid=int(hp.get("head_grid", 1)))
    missing, unexpected = rnet.load_state_dict(rstate, strict=False)
    if missing:
        raise ValueError(f"{p}: R-Net weights incomplete ({len(missing)} missing keys, e.g. {missing[:3]}); "
                         f"is this a Deep3D checkpoint for a {num_coeffs}-coefficient model?")
    return rnet, backbone


class Deep3DCNet(PerceptualMixin, ReconstructionMethod):
    """C-Net on frozen R-Net features, trained on identity sets (Deng'19 Sec. 5).

    Each set's images go through the frozen R-Net; C-Net turns each image's stage-1 and pooled
    features into confidences ``c`` (80 element-wise ones, or 1 global score for S1); the
    aggregated identity replaces every image's identity coefficients, each image is re-rendered
    with its own expression / pose / light / albedo, and the hybrid loss of the re-rendered set
    trains C-Net (Eq. 8).

    Args:
        rnet_checkpoint: a trained Deep3D checkpoint; None builds a fresh R-Net of ``backbone``
            (tests / smoke runs; recorded in ``config_warnings``).
        backbone: R-Net backbone when no checkpoint is given.
        aggregation: ``S4`` (element-wise, 80 outputs, default) | ``S2`` / ``S3`` (same C-Net,
            trained with S4 aggregation, aggregated at inference by the summed confidence /
            the most confident image) | ``S1`` (a 1-output C-Net) | ``mean`` (shape averaging,
            nothing to train).
        lr: Adam learning rate (2e-5 paper).
        loss_weights / reg_weights: overrides of the ``cnet`` preset (photo 1.9, landmark
            1.6e-3, perceptual 0.1, reg 3e-4).
        perceptual, train_missing_idnet, skin_source, landmark_unit_224, landmark_high_weight: as
            in Deep3D.
        cnet_width: channels of C-Net's three convolutions (256 in the paper).
    """

    spec = MethodSpec(
        name="deep3d_cnet", input_kind="set", requires=("lm68",), outputs=("mesh", "landmarks2d", "albedo"),
        configs=CONFIGS, checkpoint_args={"rnet_checkpoint": "deep3d"},
        description="Deng'19 C-Net: confidence-weighted identity aggregation over image sets (frozen R-Net)",
        paper="Deng et al., Accurate 3D Face Reconstruction with Weakly-Supervised Learning, CVPRW 2019")

    def __init__(self, facemodel: str = "procedural", facemodel_path: str | None = None, image_size: int = 224,
                 rnet_checkpoint: str | None = None, backbone: str = "resnet50", aggregation: str = "S4",
                 lr: float = 2e-5, loss_weights: Mapping[str, float] | None = None,
                 reg_weights: Mapping[str, float] | None = None, perceptual: str = "idnet",
                 train_missing_idnet: bool = False, skin_source: str = "auto", landmark_unit_224: bool = True,
                 landmark_high_weight: float = 20.0, cnet_width: int = 256):
        super().__init__(facemodel=facemodel, facemodel_path=facemodel_path, image_size=image_size)
        self.save_hyperparameters()
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        self.aggregation = aggregation
        size = self.facemodel.layout.size
        weights, reg = resolve_weights("cnet", loss_weights, reg_weights)
        self._init_perceptual(perceptual, weights["perceptual"], train_missing_idnet)
        if rnet_checkpoint:
            self.rnet, _ = load_rnet_checkpoint(rnet_checkpoint, self.facemodel.layout)
        else:
            self.rnet = RNet(backbone, size, output_scale=coefficient_output_scale(self.facemodel.layout))
            self._warn("no rnet_checkpoint given: C-Net runs on an untrained (zero-head) R-Net")
        for p in self.rnet.parameters():
            p.requires_grad_(False)
        self.rnet.eval()
        out_dim = 1 if aggregation == "S1" else self.facemodel.layout.id
        self.cnet = CNet(self.rnet.stage1_channels, self.rnet.feature_dim, out_dim, width=cnet_width)
        self.loss = DengLoss(self.facemodel, weights, reg, encoder=self._encoder, skin_source=skin_source,
                             landmark_unit_224=landmark_unit_224, landmark_high_weight=landmark_high_weight)

    def train(self, mode: bool = True):
        super().train(mode)
        self.rnet.eval()  # frozen: BatchNorm statistics stay those of the trained R-Net
        return self

    @property
    def train_strategy(self) -> str:
        """S3's argmax is not differentiable: its C-Net trains with S4 aggregation (as S2's)."""
        return "S4" if self.aggregation in ("S2", "S3") else self.aggregation

    # ------------------------------------------------------------------ core
    @staticmethod
    def _set_images(batch_images: Tensor) -> Tensor:
        if batch_images is None:
            raise ValueError("deep3d_cnet needs images in the batch")
        if batch_images.dim() == 4:  # one unbatched set (V, 3, H, W)
            batch_images = batch_images[None]
        if batch_images.dim() != 5:
            raise ValueError(f"deep3d_cnet expects set images (B, V, 3, H, W), got {tuple(batch_images.shape)}")
        return batch_images

    def features(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(B, V, 3, S, S) -> coefficients (B, V, C) and confidences (B, V, K or 1)."""
        images = self._set_images(images).float()
        b, v = images.shape[:2]
        with torch.no_grad():
            coeffs, stage1, pooled = self.rnet(images.flatten(0, 1))
        conf = self.cnet(stage1, pooled)
        return coeffs.view(b, v, -1), conf.view(b, v, -1)

    def identity_and_confidence(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(B, V, 3, S, S) -> per-image identity coefficients (B, V, K) and confidences."""
        coeffs, conf = self.features(images)
        return coeffs[..., self.facemodel.layout.slice("id")], conf

    def aggregate(self, coeffs: Tensor, conf: Tensor, strategy: str | None = None) -> Tensor:
        """(B, V, C) coefficients with the aggregated identity put into every view."""
        lay = self.facemodel.layout
        alpha = coeffs[..., lay.slice("id")]
        agg = aggregate_identity(alpha, None if (strategy or self.aggregation) == "mean" else conf,
                                 strategy or self.aggregation)
        parts = lay.split(coeffs)
        parts = {**parts, "id": agg[:, None].expand_as(alpha)}
        return lay.join(parts)

    @torch.no_grad()
    def reconstruct(self, batch: Sample) -> list[Reconstruction]:
        images = self._set_images(batch.image).float()
        b, v, _, size, _ = images.shape
        was = self.training
        self.eval()
        try:
            coeffs, conf = self.features(self.network_input(images))
        finally:
            self.train(was)
        lay = self.facemodel.layout
        agg = self.aggregate(coeffs, conf)[:, 0].clone()  # view 0's pose, aggregated identity
        agg[:, lay.slice("exp")] = 0.0  # the set's identity shape: neutral expression
        cam = PerspectiveCamera.deng(int(size))
        faces = self.faces_from_coeffs(agg, cam)
        views = self.faces_from_coeffs(coeffs.flatten(0, 1), cam)
        out = []
        for i, sid in enumerate(sample_ids(batch)):
            out.append(Reconstruction(sid, [faces[i]], per_view=views[i * v:(i + 1) * v],
                                      extras={"confidence": conf[i].cpu(), "aggregation": self.aggregation}))
        return out

    # ------------------------------------------------------------------ training
    def setup(self, stage: str) -> None:
        if stage == "fit":
            self._resolve_pending_encoder()

    def compute_loss(self, batch: Sample):
        images = self._set_images(batch.image).float()
        b, v = images.shape[:2]
        coeffs, conf = self.features(images)
        recombined = self.aggregate(coeffs, conf, self.train_strategy).flatten(0, 1)

        def flat(x: Tensor | None, per_item_dims: int) -> Tensor | None:
            if x is None:
                return None
            if x.dim() == per_item_dims + 1:  # unbatched set
                x = x[None]
            return x.flatten(0, 1)

        result, extras = self.loss(recombined, images.flatten(0, 1), flat(batch.lm68, 2), flat(batch.lm5, 2),
                                   flat(batch.skin_mask, 2))
        return result, conf, extras

    def training_step(self, batch: Sample, batch_idx: int) -> Tensor:
        if self.train_strategy == "mean":
            raise RuntimeError("deep3d_cnet with aggregation='mean' has nothing to train (shape averaging)")
        result, conf, _ = self.compute_loss(batch)
        b = conf.shape[0]
        self.log("train/loss", result.total.detach(), prog_bar=True, batch_size=b)
        for name, value in result.terms.items():
            self.log(f"train/{name}", value, batch_size=b)
        self.log("train/conf_spread", conf.detach().std(1).mean(), batch_size=b)
        return result.total

    def validation_step(self, batch: Sample, batch_idx: int) -> None:
        result, conf, _ = self.compute_loss(batch)
        self.log("val/loss", result.total, prog_bar=True, batch_size=conf.shape[0])

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.cnet.parameters(), lr=self.hparams.lr)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["config_warnings"] = list(self.config_warnings)
