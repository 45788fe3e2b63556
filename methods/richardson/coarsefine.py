"""``coarsefine``: CoarseNet followed by the FineNet depth refinement (Richardson'17 Sec. 4).

The coarse network is taken from a trained ``coarsenet`` checkpoint (``coarse_checkpoint``; the
benchmark runner trains it first, ``MethodSpec.checkpoint_args``) and kept frozen (unless
``finetune_coarse``); FineNet is
trained with the unsupervised shape-from-shading energy (Eq. 14). Output: the coarse mesh plus
the refined depth map (``FaceReconstruction.depth``, weak-perspective ``-z_world`` mm), which the
depth protocol scores. ``refine="optimize"`` replaces the network by the per-image Eq. 14
optimisation (the training-free reference); ``refine="none"`` returns the coarse depth map.

Two options (both off by default):

- ``finetune_coarse`` (Sec. 4.4, end-to-end): CoarseNet trains too. FineNet's Eq. 14 loss reaches
  it through the coarse depth map z0 rendered by the rendering layer with the paper's Eq. 7
  gradient (``render.zbuffer_grad.zbuffer_depth``: fixed barycentrics, gradient to the vertex
  depths only), the decoded mesh and the *last* iterate's parameter update (the earlier
  iterates, the light / albedo solves, the SfS mask and the pixel size are constants of the
  backward pass), plus a fidelity term: the mean squared geometric distance (GMSE + pose, mm^2,
  ``coarse_loss``) between the current CoarseNet's solution and the original one (a frozen copy
  of the network as loaded from ``coarse_checkpoint``), weighted by ``coarse_fidelity``.
- ``mesh_output="refined"``: the scan protocols score the refined geometry: every *visible*
  vertex of the coarse mesh moves along the viewing direction (the camera z axis) by
  (refined - coarse depth) sampled bilinearly at its projection, expressed in the model frame.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark3dface.data.sample import Sample
from benchmark3dface.geometry.mesh import vertex_normals
from benchmark3dface.methods import MethodSpec, Reconstruction
from benchmark3dface.render.zbuffer_grad import zbuffer_depth
from benchmark3dface.training.weights import load_submodule_from_checkpoint

from .coarsenet import CoarseNetBase, sample_ids
from .finenet import PAPER_WEIGHTS, FineNet, ShadingProblem, fill_depth, sfs_energy, sfs_optimize, shading_problem
from .geometry import grayscale

CONFIGS = {"quick": "configs/fine_quick.yaml", "paper": "configs/fine_paper.yaml"}
REFINE = ("network", "optimize", "none")
MESH_OUTPUT = ("coarse", "refined")
#: a (front-facing) vertex is visible unless it is behind the coarse z-buffer at the pixel it
#: projects into by more than this many pixel sizes; 1 px = 1 / scale mm (~2 mm at 96 px)
VISIBLE_TOL_PX = 1.0
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
        finetune_coarse: Sec. 4.4 end-to-end training: CoarseNet trains with FineNet (default
            off: CoarseNet frozen). coarse_fidelity: weight of the CoarseNet fidelity term
            (mm^2 of mean squared vertex distance to the original solution, against Eq. 14's
            grey-level^2 shading term). coarse_lr: CoarseNet's Adam learning rate.
        mesh_output: ``coarse`` (the CoarseNet mesh) | ``refined`` (its visible vertices moved
            to the refined depth along the view direction) -- what the scan protocols score.
        fine_arch: FineNet's layout, ``small`` (default) or ``vgg16`` (VGG-16 conv1-conv3).
        fine_vgg_weights: a local VGG-Face state dict (``vgg_face_dag.pth`` layout) that
            initialises a ``vgg16`` FineNet (None: from scratch, noted in ``config_warnings``). To
            load a checkpoint trained from it elsewhere, pass ``fine_vgg_weights=None,
            fine_arch="vgg16"`` (the weights are in the checkpoint).
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
                 optimize_steps: int = 60, optimize_lr: float = 0.05, eval_iteration: int | None = None,
                 finetune_coarse: bool = False, coarse_fidelity: float = 1.0, coarse_lr: float = 1e-4,
                 mesh_output: str = "coarse", fine_arch: str | None = None, fine_vgg_weights: str | None = None):
        super().__init__(facemodel=facemodel, facemodel_path=facemodel_path, image_size=image_size,
                         backbone=backbone, iterations=iterations, feedback=feedback, eval_iteration=eval_iteration)
        self.save_hyperparameters()
        if refine not in REFINE:
            raise ValueError(f"refine must be one of {REFINE}, got {refine!r}")
        if mesh_output not in MESH_OUTPUT:
            raise ValueError(f"mesh_output must be one of {MESH_OUTPUT}, got {mesh_output!r}")
        if coarse_fidelity < 0:
            raise ValueError(f"coarse_fidelity must be >= 0, got {coarse_fidelity}")
        self.weights = dict(PAPER_WEIGHTS, **(sfs_weights or {}))
        self.finenet = FineNet(width=fine_width, arch=fine_arch, vgg_weights=fine_vgg_weights)
        # which initialisation FineNet had (the paper: VGG-Face), in the run config's warnings
        self.config_warnings = [] if fine_vgg_weights else [
            f"FineNet ({self.finenet.arch}) from scratch: no VGG-Face file given (fine_vgg_weights)"]
        if coarse_checkpoint:
            self._load_coarse(coarse_checkpoint)
        self.coarse_orig: nn.Module | None = None
        if finetune_coarse:
            # the original solution's network (as loaded): the fidelity term's reference, frozen
            self.coarse_orig = copy.deepcopy(self.net).eval()
            for prm in self.coarse_orig.parameters():
                prm.requires_grad_(False)
        for prm in self.net.parameters():
            prm.requires_grad_(bool(finetune_coarse))
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
    def problem(self, gray: Tensor, r: Tensor, albedo: Tensor | None = None) -> tuple[ShadingProblem, Tensor]:
        """Eq. 14's set-up at the resolution of ``gray`` and the coarse depth (B,H,W, NaN off).
        ``albedo``: (B, N, 1) per-vertex albedo used as the known albedo instead of the Eq. 11-12
        estimate (a measurement aid of the claims script, never used by ``reconstruct``)."""
        extra = self.vertex_extra.expand(len(r), -1, -1)
        if albedo is not None:
            extra = torch.cat([extra, albedo.to(extra)], 2)
        rend = self.decoder.render(r, int(gray.shape[-1]), extra=extra)
        ex = rend["extra"]
        k = self.k_albedo
        mask = rend["mask"] * (ex[:, k + 1:k + 2] > 0.999)
        if albedo is None:
            mean, basis = ex[:, :1], ex[:, 1:k + 1, None]
        else:
            mean, basis = ex[:, k + 2:k + 3], None
        p = shading_problem(gray, rend["depth"], mask, rend["geo"]["scale"], mean, basis)
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

    # ------------------------------------------------------------------ the refined mesh (option)
    def refined_vertices(self, r: Tensor, depth: Tensor, coarse: Tensor) -> tuple[Tensor, Tensor]:
        """The coarse mesh of ``r`` with its *visible* vertices moved to the refined depth.

        ``depth`` / ``coarse``: (B,H,W) refined / coarse depth maps (``-z_world`` mm, NaN off the
        mesh) of the image the mesh projects into. A vertex is visible when it faces the camera
        and is not behind the coarse z-buffer at the pixel it projects into by more than
        ``VISIBLE_TOL_PX`` pixel sizes; it moves along the viewing direction (weak perspective: the camera z axis)
        by ``refined - coarse`` sampled there (bilinear; only where every tap of both maps is
        finite). Returns the model-frame vertices (B,N,3) (rotation undone; weak-perspective
        depths are mm already, the scale only enters the projection) and the moved mask (B,N)."""
        size = int(depth.shape[-1])
        geo = self.decoder.decode(r.float(), size)
        screen = geo["screen"]
        zr, ok_r = sample_maps(depth, screen[..., :2])
        zc, ok_c = sample_maps(coarse, screen[..., :2])
        # visible: front-facing (camera-frame normal towards the camera, +z) and not behind the
        # coarse z-buffer at the pixel it projects into (more than the tolerance)
        front = vertex_normals(geo["rotated"], self.facemodel.triangles.long())[..., 2] > 0
        h, w = coarse.shape[-2:]
        j, i = screen[..., 0].floor().long(), screen[..., 1].floor().long()
        inside = (j >= 0) & (j < w) & (i >= 0) & (i < h)
        flat = (i.clamp(0, h - 1) * w + j.clamp(0, w - 1))
        zpix = coarse.reshape(coarse.shape[0], -1).gather(1, flat)
        tol = VISIBLE_TOL_PX / geo["scale"][:, None]
        moved = ok_r & ok_c & front & inside & (screen[..., 2] - zpix <= tol)
        delta = torch.where(moved, zr - zc, torch.zeros_like(zr))
        # depth = -z_world: depth + delta is z_world - delta; the model frame is R^T (world)
        view = geo["rotation"][:, 2, :]  # R^T e_z: the camera z axis in the model frame
        return geo["vertices"] - delta[..., None] * view[:, None, :], moved

    @torch.no_grad()
    def reconstruct(self, batch: Sample) -> list[Reconstruction]:
        img = batch.image[None] if batch.image.dim() == 3 else batch.image
        size = int(img.shape[-1])
        was = self.training
        self.eval()
        try:
            its = self.iterate(img)
            r = self.chosen_iterate(its)
            gray = grayscale(img.float())  # FineNet is fully convolutional: the input resolution
            depth, coarse = self.refine_depth(gray, r)
        finally:
            self.train(was)
        faces = self.faces(r, size)
        mesh_output = self.hparams.get("mesh_output", "coarse")
        moved = None
        if mesh_output == "refined":
            verts, moved = self.refined_vertices(r, depth, coarse)
        stack = torch.stack(its, 1).cpu()
        out = []
        for b, (sid, f) in enumerate(zip(sample_ids(batch), faces)):
            f.depth = depth[b].cpu()
            extras = {"iterates": stack[b], "coarse_depth": coarse[b].cpu(), "mesh_output": mesh_output}
            if moved is not None:
                f.vertices = verts[b].detach().float().cpu()
                extras["refined_vertices"] = int(moved[b].sum())
            out.append(Reconstruction(sid, [f], extras=extras))
        return out

    # ------------------------------------------------------------------ training
    def coarse_solution(self, gray: Tensor, net: nn.Module | None = None) -> Tensor:
        """CoarseNet's final iterate ``r_n`` from the mean face with ``net`` (default the
        current CoarseNet), in eval mode (batch-norm running statistics, as at test time) and
        deterministic: the same value as ``iterate()[-1]``. The first ``n - 1`` iterates run
        without gradients; the last update carries them when grad mode is on (Sec. 4.4)."""
        net = self.net if net is None else net
        was = net.training
        net.eval()
        try:
            r = torch.zeros(gray.shape[0], self.decoder.layout.size, device=gray.device)
            with torch.no_grad():
                for _ in range(int(self.hparams.iterations) - 1):
                    r = r + self.update(gray, r, net)
            r = r + self.update(gray, r, net)
        finally:
            net.train(was)
        return r

    def coarse_depth(self, r: Tensor, size: int) -> Tensor:
        """The rendering layer (Sec. 4.1): ``r`` -> the z-buffered coarse depth (B,H,W; NaN off
        the mesh) whose gradient is Eq. 7's (fixed barycentrics; to the vertex depths only, so
        the in-plane pose -- translation, scale -- gets none), through the decoded mesh to ``r``."""
        geo = self.decoder.decode(r.float(), size)
        return zbuffer_depth(geo["screen"], self.facemodel.triangles, size, cull_backfaces=True, orthographic=True)

    def coarse_fidelity_loss(self, r: Tensor, r_orig: Tensor, size: int) -> Tensor:
        """The CoarseNet fidelity term: the mean squared geometric distance between the current
        solution and the original one -- CoarseNet's own loss measure (``coarse_loss``: GMSE of
        the shape, per-vertex mm^2, + the pose in mm^2-equivalents with ``pose_weight``), 0 when
        they agree."""
        return self.coarse_loss(r, torch.zeros_like(r), r_orig.detach(), size)["total"]

    def training_step(self, batch: Sample, batch_idx: int) -> Tensor:
        if self.hparams.refine != "network":
            raise ValueError(f"coarsefine: refine={self.hparams.refine!r} has nothing to train")
        gray_net = self.network_gray(batch.image)
        size = int(gray_net.shape[-1])
        e2e = bool(self.hparams.get("finetune_coarse", False))
        r = self.coarse_solution(gray_net) if e2e else self.iterate(batch.image)[-1]
        # light, albedo, SfS mask and pixel size: solved on the (detached) coarse estimate, constants
        # of the backward pass
        p, _ = self.problem(gray_net, r.detach())
        if e2e:
            # the same z0 (values equal to p.z0), now differentiable through the Eq. 7 layer: FineNet's
            # input and Eq. 13's reference
            p = dataclasses.replace(p, z0=fill_depth(self.coarse_depth(r, size)))
        z = self.finenet(gray_net, p.z0, p.mask)
        terms = sfs_energy(z, p, self.weights)
        if e2e:
            with torch.no_grad():
                r_orig = self.coarse_solution(gray_net, self.coarse_orig)
            terms["sfs"] = terms["total"]
            terms["coarse_fid"] = self.coarse_fidelity_loss(r, r_orig, size)
            terms["total"] = terms["sfs"] + float(self.hparams.coarse_fidelity) * terms["coarse_fid"]
        return self.log_terms(terms, z.shape[0])

    def validation_step(self, batch: Sample, batch_idx: int) -> None:
        pass

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # an end-to-end checkpoint loaded without finetune_coarse: the frozen reference is not needed
        if self.coarse_orig is None:
            sd = checkpoint.get("state_dict", {})
            for k in [k for k in sd if k.startswith("coarse_orig.")]:
                del sd[k]

    def configure_optimizers(self) -> Any:
        groups = [{"params": list(self.finenet.parameters()), "lr": self.hparams.fine_lr}]
        if self.hparams.get("finetune_coarse", False):
            groups.append({"params": list(self.net.parameters()), "lr": self.hparams.coarse_lr})
        return torch.optim.Adam(groups)


def sample_maps(maps: Tensor, uv: Tensor) -> tuple[Tensor, Tensor]:
    """Bilinear samples of (B,H,W) maps (NaN = no value) at (B,N,2) pixel positions (u, v)
    (pixel (i, j)'s centre at (j + 0.5, i + 0.5), the rasterizer's convention) -> values (B,N)
    and ``ok`` (B,N): every tap with weight is finite and inside the image."""
    h, w = maps.shape[-2:]
    fin = maps.isfinite()
    stack = torch.stack([torch.where(fin, maps, torch.zeros_like(maps)), fin.to(maps.dtype)], 1)
    grid = torch.stack([2 * uv[..., 0] / w - 1, 2 * uv[..., 1] / h - 1], -1)[:, None].to(maps.dtype)
    s = F.grid_sample(stack, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, :, 0]
    return s[:, 0], s[:, 1] > 1 - 1e-4
