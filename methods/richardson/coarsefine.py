"""``coarsefine``: CoarseNet followed by the FineNet depth refinement (Richardson'17 Sec. 4).

The coarse network is taken from a trained ``coarsenet`` checkpoint (``coarse_checkpoint``; the
benchmark runner trains it first, ``MethodSpec.checkpoint_args``) and kept frozen; FineNet is
trained with the unsupervised shape-from-shading energy (Eq. 14). Output: the coarse mesh plus
the refined depth map (``FaceReconstruction.depth``, weak-perspective ``-z_world`` mm), which the
depth protocol scores. ``refine="optimize"`` replaces the network by the per-image Eq. 14
optimisation (the training-free reference); ``refine="none"`` returns the coarse depth map.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from benchmark3dface.data.sample import Sample
from benchmark3dface.methods import MethodSpec, Reconstruction
from benchmark3dface.training.weights import load_submodule_from_checkpoint

from .coarsenet import CoarseNetBase, sample_ids
from .finenet import PAPER_WEIGHTS, FineNet, ShadingProblem, sfs_energy, sfs_optimize, shading_problem

CONFIGS = {"quick": "configs/fine_quick.yaml", "paper": "configs/fine_paper.yaml"}
REFINE = ("network", "optimize", "none")
#: model parse regions whose albedo the linear model covers (skin, nose): the SfS mask
SFS_REGIONS = (1, 6)


class CoarseFine(CoarseNetBase):
    """CoarseNet + FineNet.

    Args (besides ``CoarseNetBase``'s, which must match the coarse checkpoint's):
        coarse_checkpoint: a ``coarsenet`` Lightning checkpoint (None: untrained coarse net). A
            ``coarsefine`` checkpoint holds the coarse weights itself: load it elsewhere with
            ``CoarseFine.load_from_checkpoint(path, coarse_checkpoint=None)``.
        refine: ``network`` (FineNet) | ``optimize`` (per-image Eq. 14) | ``none``.
        fine_width: FineNet's first-stage channels.  fine_lr: its Adam learning rate.
        sfs_weights: lambda_sh, lambda_f, lambda_sm (paper: 1, 5e-3, 1; intensities 0-255, mm).
        albedo_components: albedo basis size of the Eq. 12 solve (paper: 10).
        optimize_steps / optimize_lr: the per-image optimisation (Adam on the depth map).
    """

    spec = MethodSpec(
        name="coarsefine", input_kind="single", requires=("coeffs",), inputs=("image",),
        outputs=("mesh", "landmarks2d", "depth"), configs=CONFIGS, eval_kinds=("single", "single_weak"),
        checkpoint_args={"coarse_checkpoint": "coarsenet"},
        description="Richardson'17 CoarseNet + FineNet: hypercolumn depth refinement trained by shape from shading",
        paper="Richardson et al., Learning Detailed Face Reconstruction from a Single Image, CVPR 2017")

    def __init__(self, facemodel: str = "procedural", facemodel_path: str | None = None, image_size: int = 96,
                 backbone: str = "resnet10t", iterations: int = 4, feedback: str = "pncc_normal",
                 coarse_checkpoint: str | None = None, refine: str = "network", fine_width: int = 16,
                 fine_lr: float = 1e-3, sfs_weights: dict[str, float] | None = None, albedo_components: int = 10,
                 optimize_steps: int = 60, optimize_lr: float = 0.05, eval_iteration: int | None = None):
        super().__init__(facemodel=facemodel, facemodel_path=facemodel_path, image_size=image_size,
                         backbone=backbone, iterations=iterations, feedback=feedback, eval_iteration=eval_iteration)
        self.save_hyperparameters()
        if refine not in REFINE:
            raise ValueError(f"refine must be one of {REFINE}, got {refine!r}")
        self.weights = dict(PAPER_WEIGHTS, **(sfs_weights or {}))
        self.finenet = FineNet(width=fine_width)
        if coarse_checkpoint:
            self._load_coarse(coarse_checkpoint)
        for prm in self.net.parameters():
            prm.requires_grad_(False)
        m = self.facemodel
        lum = torch.tensor([0.299, 0.587, 0.114])
        k = min(int(albedo_components), m.albedo_basis.shape[0])
        region = torch.zeros(m.num_vertices)
        for r in SFS_REGIONS:
            region[m.regions.cpu() == r] = 1.0
        extra = torch.cat([m.mean_albedo.detach().float().cpu() @ lum[:, None],
                           (m.albedo_basis[:k].detach().float().cpu() @ lum).T, region[:, None]], 1)
        self.register_buffer("vertex_extra", extra, persistent=False)
        self.k_albedo = k

    def _load_coarse(self, path: str) -> None:
        load_submodule_from_checkpoint(
            self.net, path, "net", "a coarsenet checkpoint",
            "train coarsenet first (`b3f fit --config experiments/quick/richardson.yaml`) and pass its .ckpt as "
            "coarse_checkpoint", must_match={k: self.hparams[k] for k in ("backbone", "feedback", "image_size")})

    # ------------------------------------------------------------------ the refinement
    def problem(self, gray: Tensor, r: Tensor) -> tuple[ShadingProblem, Tensor]:
        """Eq. 14's set-up at the resolution of ``gray`` and the coarse depth (B,H,W, NaN off)."""
        rend = self.decoder.render(r, int(gray.shape[-1]), extra=self.vertex_extra)
        ex = rend["extra"]
        k = self.k_albedo
        mask = rend["mask"] * (ex[:, k + 1:k + 2] > 0.999)
        p = shading_problem(gray, rend["depth"], mask, rend["geo"]["scale"], ex[:, :1], ex[:, 1:k + 1, None])
        return p, rend["depth"][:, 0]

    def refine_depth(self, gray: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
        """(refined, coarse) depth maps (B,H,W), NaN off the coarse mesh."""
        p, coarse = self.problem(gray, r)
        mode = self.hparams.refine
        if mode == "network":
            with torch.no_grad():
                z = self.finenet(gray, p.z0, p.mask)
        elif mode == "optimize":
            with torch.enable_grad():
                z = sfs_optimize(p, self.hparams.optimize_steps, self.hparams.optimize_lr, self.weights)
        else:
            z = p.z0
        return torch.where(coarse.isfinite(), z, torch.full_like(z, float("nan"))), coarse

    @torch.no_grad()
    def reconstruct(self, batch: Sample) -> list[Reconstruction]:
        img = batch.image[None] if batch.image.dim() == 3 else batch.image
        size = int(img.shape[-1])
        was = self.training
        self.eval()
        try:
            its = self.iterate(img)
            r = self.chosen_iterate(its)
            from .geometry import grayscale

            gray = grayscale(img.float())  # FineNet is fully convolutional: the input resolution
            depth, coarse = self.refine_depth(gray, r)
        finally:
            self.train(was)
        faces = self.faces(r, size)
        stack = torch.stack(its, 1).cpu()
        out = []
        for b, (sid, f) in enumerate(zip(sample_ids(batch), faces)):
            f.depth = depth[b].cpu()
            out.append(Reconstruction(sid, [f], extras={"iterates": stack[b], "coarse_depth": coarse[b].cpu()}))
        return out

    # ------------------------------------------------------------------ training (FineNet only)
    def training_step(self, batch: Sample, batch_idx: int) -> Tensor:
        if self.hparams.refine != "network":
            raise ValueError(f"coarsefine: refine={self.hparams.refine!r} has nothing to train")
        gray_net = self.network_gray(batch.image)
        r = self.iterate(batch.image)[-1]
        p, _ = self.problem(gray_net, r)
        z = self.finenet(gray_net, p.z0, p.mask)
        terms = sfs_energy(z, p, self.weights)
        if not torch.isfinite(terms["total"]):
            raise FloatingPointError(f"coarsefine: non-finite loss at step {self.global_step}")
        for name, v in terms.items():
            self.log(f"train/{name}", v.detach(), prog_bar=name == "total", batch_size=z.shape[0])
        return terms["total"]

    def validation_step(self, batch: Sample, batch_idx: int) -> None:
        pass

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.finenet.parameters(), lr=self.hparams.fine_lr)
