"""``coarsenet``: Richardson'17 CoarseNet (Sec. 3) -- a ResNet that regresses the *update* of
identity + expression + weak-perspective pose from the grayscale image masked by the current
estimate's visible region plus feedback channels rendered from that estimate (PNCC and normal
map; 7 channels), applied iteratively from the mean face."""

from __future__ import annotations

import math
from typing import Any

import timm
import torch
from torch import Tensor, nn

from benchmark3dface.data.sample import Sample
from benchmark3dface.geometry.camera import WeakPerspectiveCamera
from benchmark3dface.losses.shape import basis_gram, gmse_loss
from benchmark3dface.methods import MethodSpec, Reconstruction, ReconstructionMethod

from .geometry import WeakDecoder, grayscale

CONFIGS = {"quick": "configs/quick.yaml", "paper": "configs/paper.yaml"}
FEEDBACK = {"pncc_normal": 7, "pncc": 4}


def sample_ids(batch: Sample) -> list[str]:
    return list(batch.sample_id) if isinstance(batch.sample_id, list) else [batch.sample_id]


class CoarseNetBase(ReconstructionMethod):
    """The CoarseNet machinery shared by ``coarsenet`` and ``coarsefine``.

    Args:
        facemodel / facemodel_path: morphable model (identity + expression sizes set the head).
        image_size: the network's input side (the estimate is rendered at this size; test images
            of any size are resized, the parameter vector is size independent).
        backbone: timm ResNet name (``resnet10t`` quick, ``resnet18`` paper), from scratch.
        iterations: inference iterations from the mean face (4 = paper).
        feedback: ``pncc_normal`` (paper, 7 channels) or ``pncc`` (ablation, 4 channels).
        lr: Adam learning rate.  perturbations: training starting points per image per step.
        zero_start_prob: fraction of starting points that are the mean face (r = 0), the
            first iteration's input at test time.
        pose_weight: weight of the pose term (in mm^2-equivalents, see ``coarse_loss``).
        rand_*: spread of ``r_rand`` (shape coefficients ~ N(0, 1) from the model prior).
        eval_iteration: the iterate ``reconstruct`` returns (None = the last); every iterate is
            in ``Reconstruction.extras["iterates"]``.
    """

    def __init__(self, facemodel: str = "procedural", facemodel_path: str | None = None, image_size: int = 96,
                 backbone: str = "resnet10t", iterations: int = 4, feedback: str = "pncc_normal", lr: float = 1e-3,
                 perturbations: int = 2, zero_start_prob: float = 0.3, pose_weight: float = 1.0,
                 rand_yaw: float = 0.8, rand_pitch_roll: float = 0.3, rand_shift: float = 0.03,
                 rand_log_scale: float = 0.1, eval_iteration: int | None = None):
        super().__init__(facemodel=facemodel, facemodel_path=facemodel_path, image_size=image_size)
        self.save_hyperparameters()
        if feedback not in FEEDBACK:
            raise ValueError(f"feedback must be one of {tuple(FEEDBACK)}, got {feedback!r}")
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        self.decoder = WeakDecoder(self.facemodel)
        lay = self.decoder.layout
        self.net = timm.create_model(backbone, pretrained=False, in_chans=FEEDBACK[feedback], num_classes=lay.size)
        head = self.net.get_classifier()
        nn.init.zeros_(head.weight)  # the untrained net predicts no update
        nn.init.zeros_(head.bias)
        out_scale = torch.ones(lay.size)
        out_scale[lay.pose_slice] = torch.tensor([0.3, 0.5, 0.3, 0.05, 0.05, 0.1])
        self.register_buffer("out_scale", out_scale, persistent=False)
        m = self.facemodel
        basis = torch.cat([m.id_basis, m.exp_basis], 0).detach().float()
        self.register_buffer("gram", basis_gram(basis) / m.num_vertices, persistent=False)
        mean = m.mean_shape.detach().float()
        self.face_radius = float((mean - mean.mean(0)).norm(dim=-1).pow(2).mean().sqrt())

    # ------------------------------------------------------------------ feedback + one step
    def feedback_input(self, gray: Tensor, r: Tensor) -> Tensor:
        """(B,1,S,S) grayscale at the network size and the estimate r -> the network input."""
        rend = self.decoder.render(r, int(gray.shape[-1]))
        mask = rend["mask"]
        chans = [gray * mask, rend["pncc"]]
        if self.hparams.feedback == "pncc_normal":
            chans.append((rend["normal"] * 0.5 + 0.5) * mask)
        return torch.cat(chans, 1) * 2.0 - 1.0

    def update(self, gray: Tensor, r: Tensor, net: nn.Module | None = None) -> Tensor:
        """One update ``Δr(I, r)`` of ``net`` (default this CoarseNet)."""
        return (self.net if net is None else net)(self.feedback_input(gray, r)) * self.out_scale

    def log_terms(self, terms: dict[str, Tensor], batch_size: int) -> Tensor:
        """Refuses a non-finite total, logs every term, returns the total."""
        if not torch.isfinite(terms["total"]):
            raise FloatingPointError(f"{self.spec.name}: non-finite loss at step {self.global_step}")
        for name, v in terms.items():
            self.log(f"train/{name}", v.detach(), prog_bar=name == "total", batch_size=batch_size)
        return terms["total"]

    def network_gray(self, images: Tensor) -> Tensor:
        img = images[None] if images.dim() == 3 else images
        return grayscale(self.network_input(img.float()))

    @torch.no_grad()
    def iterate(self, images: Tensor, iterations: int | None = None) -> list[Tensor]:
        """``[r_0 = 0, r_1, ..., r_n]`` (B, P) each: the iteration from the mean face (eval mode,
        no randomness: deterministic)."""
        n = int(iterations or self.hparams.iterations)
        gray = self.network_gray(images)
        was = self.training
        self.eval()
        try:
            r = torch.zeros(gray.shape[0], self.decoder.layout.size, device=gray.device)
            out = [r]
            for _ in range(n):
                r = r + self.update(gray, r)
                out.append(r)
        finally:
            self.train(was)
        return out

    def model_coeffs(self, r: Tensor) -> Tensor:
        """r -> the morphable model's coefficient vector (id, exp, angles; the rest zero)."""
        ident, exp, pose = self.decoder.split(r)
        return self.facemodel.layout.join({"id": ident, "exp": exp, "angles": pose[:, :3]})

    def faces(self, r: Tensor, size: int):
        scale, t2 = self.decoder.camera_params(r, size)
        return self.faces_from_coeffs(self.model_coeffs(r), WeakPerspectiveCamera(size, size), scale=scale,
                                      translation2d=t2)

    def chosen_iterate(self, iterates: list[Tensor]) -> Tensor:
        k = self.hparams.eval_iteration
        return iterates[-1] if k is None else iterates[int(k)]

    # ------------------------------------------------------------------ training
    def target(self, batch: Sample) -> Tensor:
        """The ground-truth r of a weak-perspective synthetic batch (training only)."""
        if batch.coeffs is None or batch.pose is None:
            raise ValueError("coarsenet trains on synthetic weak-perspective samples with coeffs and pose")
        lay = self.facemodel.layout
        c = batch.coeffs.float()
        pose = batch.pose.float()
        size = int(batch.image.shape[-1])
        p = self.decoder.pose_from_sample(pose[:, :3], pose[:, 3], pose[:, 4], pose[:, 5], size)
        return torch.cat([c[:, lay.slice("id")], c[:, lay.slice("exp")], p], 1)

    def random_r(self, n: int, device) -> Tensor:
        h = self.hparams
        sc = self.facemodel.sample_coeffs(n)
        u = lambda a: (torch.rand(n) * 2 - 1) * a  # noqa: E731
        pose = torch.stack([u(h.rand_pitch_roll), u(h.rand_yaw), u(h.rand_pitch_roll),
                            torch.randn(n) * h.rand_shift, torch.randn(n) * h.rand_shift,
                            torch.randn(n) * h.rand_log_scale], 1)
        return torch.cat([sc["id"], sc["exp"], pose], 1).to(device)

    def starting_points(self, r_gt: Tensor) -> Tensor:
        """r_t = b r_gt + (1 - b) r_rand, b ~ U(0, 1); a fraction are the mean face r = 0."""
        n = r_gt.shape[0]
        b = torch.rand(n, 1, device=r_gt.device)
        r_t = b * r_gt + (1 - b) * self.random_r(n, r_gt.device)
        zero = torch.rand(n, 1, device=r_gt.device) < self.hparams.zero_start_prob
        return torch.where(zero, torch.zeros_like(r_t), r_t)

    def coarse_loss(self, pred_update: Tensor, r_t: Tensor, r_gt: Tensor, size: int) -> dict[str, Tensor]:
        """GMSE (Eq. 4; per-vertex mean squared error, mm^2) of the shape update + the pose
        MSE in mm^2-equivalents: angles and log scale x the face's RMS radius, translations
        (fractions of the image) x the image side in mm at the nominal scale."""
        lay = self.decoder.layout
        d = (r_t + pred_update) - r_gt
        gm = gmse_loss(r_t[:, lay.shape_slice] + pred_update[:, lay.shape_slice], r_gt[:, lay.shape_slice],
                       gram=self.gram)
        s0 = self.decoder.nominal(size)[0]
        w = torch.tensor([self.face_radius] * 3 + [size / s0] * 2 + [self.face_radius], device=d.device)
        pose = ((d[:, lay.pose_slice] * w) ** 2).sum(-1).mean()
        return {"gmse": gm, "pose": pose, "total": gm + self.hparams.pose_weight * pose}

    def training_step(self, batch: Sample, batch_idx: int) -> Tensor:
        r_gt = self.target(batch)
        gray = self.network_gray(batch.image)
        k = int(self.hparams.perturbations)
        gray_k = gray.repeat(k, 1, 1, 1)
        r_gt_k = r_gt.repeat(k, 1)
        r_t = self.starting_points(r_gt_k)
        terms = self.coarse_loss(self.update(gray_k, r_t), r_t, r_gt_k, int(gray.shape[-1]))
        return self.log_terms(terms, r_t.shape[0])

    def validation_step(self, batch: Sample, batch_idx: int) -> None:
        r_gt = self.target(batch)
        its = self.iterate(batch.image)
        size = self.hparams.image_size
        for i in (1, len(its) - 1):
            t = self.coarse_loss(its[i] - its[i - 1], its[i - 1], r_gt, size)
            self.log(f"val/total_it{i}", t["total"], batch_size=r_gt.shape[0])

    def configure_optimizers(self) -> Any:
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        total = int(self.trainer.estimated_stepping_batches) if self.trainer is not None else 1000
        if not math.isfinite(total) or total <= 0:
            return opt
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class CoarseNet(CoarseNetBase):
    """Richardson et al. 2017 CoarseNet (see ``CoarseNetBase`` for the arguments)."""

    spec = MethodSpec(
        name="coarsenet", input_kind="single", requires=("coeffs",), inputs=("image",),
        outputs=("mesh", "landmarks2d"), configs=CONFIGS, eval_kinds=("single", "single_weak"),
        description="Richardson'17 CoarseNet: iterative ResNet updates of id/exp/weak pose with PNCC+normal feedback",
        paper="Richardson et al., Learning Detailed Face Reconstruction from a Single Image, CVPR 2017")

    @torch.no_grad()
    def reconstruct(self, batch: Sample) -> list[Reconstruction]:
        img = batch.image[None] if batch.image.dim() == 3 else batch.image
        size = int(img.shape[-1])
        its = self.iterate(img)
        faces = self.faces(self.chosen_iterate(its), size)
        stack = torch.stack(its, 1).cpu()
        return [Reconstruction(sid, [f], extras={"iterates": stack[b]}) for b, (sid, f) in
                enumerate(zip(sample_ids(batch), faces))]
