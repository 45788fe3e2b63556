"""``gcnsemi``: Gao et al., semi-supervised 3D face representation learning from unconstrained
photo collections (seed paper 003): ResNet encoder -> identity / expression / pose / SH codes,
GCN shape and albedo decoders on the face model's own topology, WGAN-div GCN critic, trained on
labelled + unlabelled batches with a manual-optimisation GAN loop."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from benchmark3dface.data.datamodules import fill_partial
from benchmark3dface.data.sample import Sample
from benchmark3dface.geometry.camera import PerspectiveCamera
from benchmark3dface.geometry.lighting import sh_color
from benchmark3dface.geometry.mesh import uniform_laplacian, vertex_normals
from benchmark3dface.geometry.rotation import euler_to_matrix, rotate
from benchmark3dface.losses import (
    CenterLoss,
    albedo_symmetry_loss,
    gradient_difference_loss,
    landmark_gdl_loss,
    landmark_loss,
    recognition_loss,
    shape_l1_loss,
    template_laplacian_loss,
    wgan_div_critic_loss,
    wgan_generator_loss,
)
from benchmark3dface.methods import MethodSpec, Reconstruction, ReconstructionMethod
from benchmark3dface.methods.reconstruction import FaceReconstruction
from benchmark3dface.render import render_passes

from .graph import GCNCritic, GCNDecoder, GraphStack, mesh_hierarchy

CONFIGS = {"quick": "configs/quick.yaml", "paper": "configs/paper.yaml"}

#: term -> default weight (not in the paper; see docs/methods/gcnsemi.md for how they were chosen)
DEFAULT_WEIGHTS: dict[str, float] = {
    "photo": 1.0,        # masked squared colour error (Eq. 5), [0,1]^2 units
    "photo_gdl": 1.0,    # image gradient-difference loss (Eq. 5)
    "landmark": 1.6e-3,  # 68 landmarks, px^2 at 224 px (Deng's weight; Eq. 6)
    "landmark_gdl": 1.6e-3,
    "recognition": 0.1,  # softmax + centre loss (Eq. 4)
    "shape": 1.0,        # L1 mm, labelled only (Eq. 7)
    "pair": 1.0,         # swapped-expression L1 mm, labelled pairs (Eq. 8)
    "neutral": 1.0,      # [c_id, 0] -> identity-only shape, labelled (not in the paper, see docs)
    "laplacian": 1.0,    # template-relative Laplacian, mm (Eq. 9)
    "symmetry": 1.0,     # albedo symmetry L1 (Eq. 10)
    "adversarial": 1e-3,  # -D(s_hat) (Eq. 11)
}
#: terms that apply to unlabelled images (every term but the labelled shape terms)
UNLABELLED_TERMS = ("photo", "photo_gdl", "landmark", "landmark_gdl", "recognition", "laplacian", "symmetry",
                    "adversarial")


def _ids(batch: Sample) -> list[str]:
    return list(batch.sample_id) if isinstance(batch.sample_id, list) else [batch.sample_id]


class Encoder(nn.Module):
    """timm ResNet -> identity (128), expression (64), pose (6: Euler angles rad, translation in
    ``trans_unit`` mm) and SH lighting (27) codes. Pose and SH heads start at zero (frontal,
    centred, ambient light)."""

    def __init__(self, backbone: str, id_dim: int = 128, exp_dim: int = 64, trans_unit: float = 100.0) -> None:
        super().__init__()
        import timm

        self.net = timm.create_model(backbone, pretrained=False, num_classes=0)
        f = self.net.num_features
        self.id = nn.Linear(f, id_dim)
        self.exp = nn.Linear(f, exp_dim)
        self.pose = nn.Linear(f, 6)
        self.sh = nn.Linear(f, 27)
        for head in (self.pose, self.sh):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.trans_unit = float(trans_unit)

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        h = self.net(image)
        pose = self.pose(h)
        return {"id": self.id(h), "exp": self.exp(h), "angles": pose[:, :3],
                "trans": pose[:, 3:] * self.trans_unit, "sh": self.sh(h)}


class GCNSemi(ReconstructionMethod):
    """Gao et al. semi-supervised GCN encoder-decoder (docs/methods/gcnsemi.md).

    Args:
        facemodel / facemodel_path / image_size: as every method (the decoders work on the
            model's topology; its mean shape / albedo are the templates).
        backbone: timm encoder (``resnet50`` paper, ``resnet18`` quick).
        id_dim / exp_dim: code sizes (128 / 64 paper).
        factors: mesh down-sampling factors, finest first (paper: ``(2, 4, 4, 4, 4)`` read as
            COMA's hierarchy: US(2) first, then four US(4)).
        decoder_widths: GC widths from the coarsest level (paper ``(256, 256, 128, 64, 32, 16)``).
        critic_widths: critic GC widths, finest first.
        cheb_k: Chebyshev order K (6 paper).
        num_identities: identity classes of the recognition loss (training data's people).
        center_weight: lambda_center of Eq. 4.
        loss_weights: overrides of ``DEFAULT_WEIGHTS`` (every term; 0 switches it off).
        lr / critic_lr: Adam (encoder-decoder) and RMSprop (critic) learning rates (1e-4 / 5e-5).
        critic_steps: critic updates per generator update.
        wgan_k / wgan_p / wgan_sampling: WGAN-div penalty (Wu et al.: 2 / 6 / real_fake).
        critic_real: ``prior`` (shapes sampled from the linear model, Gao) or ``labelled``
            (the batch's labelled GT shapes; falls back to the prior without any).
        critic_level: mesh level the critic starts at (0 = full resolution, the paper; 1 = after
            one down-sampling, the quick profile's cheaper critic).
        image_terms_subset: render the photometric terms on the first k images only (None: all).
        shape_scale / albedo_scale: decoder output units (mm / albedo units per unit output).
        seed: seed of the per-step prior samples (exactly reproducible on resume).
    """

    spec = MethodSpec(
        name="gcnsemi", input_kind="single", requires=("lm68",), inputs=("image",),
        outputs=("mesh", "landmarks2d", "albedo"), configs=CONFIGS, eval_kinds=("single", "set", "multiview"),
        description="Gao et al.: semi-supervised GCN encoder-decoder, centre loss, WGAN-div critic",
        paper="Gao et al., Semi-supervised 3D Face Representation Learning from Unconstrained Photo Collections, CVPRW 2020")

    def __init__(self, facemodel: str = "procedural", facemodel_path: str | None = None, image_size: int = 224,
                 backbone: str = "resnet50", id_dim: int = 128, exp_dim: int = 64,
                 factors: tuple[int, ...] = (2, 4, 4, 4, 4), decoder_widths: tuple[int, ...] = (256, 256, 128, 64, 32, 16),
                 albedo_widths: tuple[int, ...] | None = None, critic_widths: tuple[int, ...] = (16, 32, 64, 64, 64),
                 cheb_k: int = 6, num_identities: int = 1000, center_weight: float = 0.01,
                 loss_weights: Mapping[str, float] | None = None, lr: float = 1e-4, critic_lr: float = 5e-5,
                 critic_steps: int = 1, wgan_k: float = 2.0, wgan_p: float = 6.0, wgan_sampling: str = "real_fake",
                 critic_real: str = "prior", critic_level: int = 0, image_terms_subset: int | None = None, shape_scale: float = 10.0,
                 albedo_scale: float = 0.1, trans_unit_mm: float = 100.0, seed: int = 0):
        super().__init__(facemodel=facemodel, facemodel_path=facemodel_path, image_size=image_size)
        self.save_hyperparameters()
        self.automatic_optimization = False
        unknown = set(loss_weights or {}) - set(DEFAULT_WEIGHTS)
        if unknown:
            raise ValueError(f"gcnsemi: unknown loss terms {sorted(unknown)}; known: {sorted(DEFAULT_WEIGHTS)}")
        self.weights = {**DEFAULT_WEIGHTS, **{k: float(v) for k, v in (loss_weights or {}).items()}}
        if critic_real not in ("prior", "labelled"):
            raise ValueError(f"critic_real must be 'prior' or 'labelled', got {critic_real!r}")
        fm = self.facemodel
        hier = mesh_hierarchy(fm.mean_shape.detach().cpu().numpy(), fm.triangles.cpu().numpy(), tuple(factors))
        self.graphs = GraphStack(hier)
        self.encoder = Encoder(backbone, id_dim, exp_dim, trans_unit_mm)
        self.shape_decoder = GCNDecoder(self.graphs, id_dim + exp_dim, tuple(decoder_widths), 3, cheb_k, shape_scale)
        self.albedo_decoder = GCNDecoder(self.graphs, id_dim, tuple(albedo_widths or decoder_widths), 3, cheb_k,
                                         albedo_scale)
        self.critic = GCNCritic(self.graphs, tuple(critic_widths), cheb_k, start_level=critic_level)
        self.classifier = nn.Linear(id_dim, num_identities)
        self.center = CenterLoss(num_identities, id_dim)
        self.register_buffer("laplacian", uniform_laplacian(fm.triangles, fm.num_vertices).coalesce(), persistent=False)

    # ------------------------------------------------------------------ model
    @property
    def template(self) -> Tensor:
        return self.facemodel.mean_shape

    def encode(self, image: Tensor) -> dict[str, Tensor]:
        return self.encoder(image)

    def decode_shape(self, id_code: Tensor, exp_code: Tensor) -> Tensor:
        """(B, id), (B, exp) -> (B, N, 3) model-frame vertices (mm)."""
        return self.template + self.shape_decoder(torch.cat([id_code, exp_code], -1))

    def decode_albedo(self, id_code: Tensor) -> Tensor:
        return (self.facemodel.mean_albedo + self.albedo_decoder(id_code)).clamp(0.0, 1.0)

    def pose_and_project(self, verts: Tensor, codes: dict[str, Tensor], size: int):
        rot = euler_to_matrix(codes["angles"])
        world = rotate(verts, rot, codes["trans"])
        proj = PerspectiveCamera.deng(int(size)).project(world)
        return rot, world, proj

    def prior_shapes(self, n: int, step: int) -> Tensor:
        """``n`` shapes from the linear model's prior (identity and expression ~ N(0, 1)); the
        draw depends only on ``(seed, step)``."""
        g = torch.Generator().manual_seed(int(self.hparams.seed) * 1_000_003 + int(step))
        c = self.facemodel.sample_coeffs(n, generator=g)
        return self.facemodel.shape(c["id"].to(self.template), c["exp"].to(self.template))

    # ------------------------------------------------------------------ reconstruction
    def _faces(self, verts: Tensor, albedo: Tensor, codes: dict[str, Tensor], size: int) -> list[FaceReconstruction]:
        rot, world, proj = self.pose_and_project(verts, codes, size)
        cam = PerspectiveCamera.deng(int(size))
        camd = {"kind": "perspective", "focal": cam.focal, "principal": (cam.cx, cam.cy), "distance": cam.distance}
        tri, lmi = self.facemodel.triangles.cpu(), self.facemodel.landmarks68.cpu()
        lm2d = proj[:, self.facemodel.landmarks68, :2]
        return [FaceReconstruction(vertices=verts[b].float().cpu(), triangles=tri, landmark_indices=lmi,
                                   landmarks2d=lm2d[b].float().cpu(), rotation=rot[b].float().cpu(),
                                   translation=codes["trans"][b].float().cpu(), camera=camd,
                                   albedo=albedo[b].float().cpu()) for b in range(verts.shape[0])]

    @torch.no_grad()
    def reconstruct(self, batch: Sample) -> list[Reconstruction]:
        """Single images: one face each. Sets / multi-view triplets ``(B, V, 3, H, W)``: per-view
        faces plus the aggregated face = the decoder on the *averaged identity code* with a
        *neutral* (zero) expression code, posed like the middle view (the frontal one of a
        multi-view triplet)."""
        img = batch.image
        if img is None:
            raise ValueError("gcnsemi needs images in the batch")
        if img.dim() == 3:
            img = img[None]
        was = self.training
        self.eval()
        try:
            size = int(img.shape[-1])
            flat = img.reshape(-1, *img.shape[-3:]).float()
            codes = self.encode(self.network_input(flat))
            verts = self.decode_shape(codes["id"], codes["exp"])
            albedo = self.decode_albedo(codes["id"])
            faces = self._faces(verts, albedo, codes, size)
            ids = _ids(batch)
            if img.dim() == 4:
                return [Reconstruction(sid, [f]) for sid, f in zip(ids, faces)]
            b, v = img.shape[:2]
            agg = self.aggregate_codes({k: c.view(b, v, -1) for k, c in codes.items()})
            agg_verts = self.decode_shape(agg["id"], agg["exp"])
            agg_faces = self._faces(agg_verts, self.decode_albedo(agg["id"]), agg, size)
            return [Reconstruction(sid, [agg_faces[i]], per_view=faces[i * v:(i + 1) * v],
                                   extras={"aggregation": "mean_identity_code"}) for i, sid in enumerate(ids)]
        finally:
            self.train(was)

    @staticmethod
    def aggregate_codes(codes: dict[str, Tensor]) -> dict[str, Tensor]:
        """(B, V, d) per-view codes -> (B, d): mean identity code, zero (neutral) expression
        code, pose / light of the middle view."""
        v = codes["id"].shape[1]
        mid = v // 2
        out = {k: c[:, mid] for k, c in codes.items()}
        out["id"] = codes["id"].mean(1)
        out["exp"] = torch.zeros_like(codes["exp"][:, 0])
        return out

    # ------------------------------------------------------------------ training
    def _flatten(self, batch: Sample) -> dict[str, Any]:
        if any(isinstance(getattr(batch, f, None), list) for f in ("vertices", "coeffs", "identity", "labelled")):
            batch = fill_partial(batch)  # partially labelled batches: NaN / -1 filled
        img = batch.image
        if img is None or batch.lm68 is None:
            raise ValueError("gcnsemi training needs images and 68 landmarks (lm68)")
        single = img.dim() == 4
        b = img.shape[0]
        v = 1 if single else img.shape[1]

        def per_image(x: Tensor | None, dims: int) -> Tensor | None:
            if x is None:
                return None
            return x if single else x.reshape(b * v, *x.shape[2:]) if x.dim() == dims + 2 else x

        def per_item(x: Any, default: Any) -> Tensor:
            t = torch.as_tensor(default if x is None else x, device=img.device)
            t = t.reshape(-1) if t.dim() else t.expand(b)
            return t.repeat_interleave(v)

        labelled = per_item(batch.labelled, True).bool()
        ident = per_item(batch.identity, -1).long()
        ident = torch.where(ident < self.hparams.num_identities, ident, torch.full_like(ident, -1))
        verts = per_image(batch.vertices, 2)
        coeffs = per_image(batch.coeffs, 1)
        if verts is not None:
            labelled = labelled & torch.isfinite(verts.flatten(1)).all(1)
        else:
            labelled = torch.zeros_like(labelled)
        return {"image": img.reshape(b * v, *img.shape[-3:]).float(), "lm68": per_image(batch.lm68, 2).float(),
                "labelled": labelled, "identity": ident,
                "vertices": None if verts is None else torch.nan_to_num(verts.float()),
                "coeffs": None if coeffs is None else torch.nan_to_num(coeffs.float())}

    def _on(self, name: str) -> bool:
        return self.weights.get(name, 0.0) != 0.0

    def generator_terms(self, data: dict[str, Any], codes: dict[str, Tensor], verts: Tensor) -> dict[str, Tensor]:
        img, lm68, lab = data["image"], data["lm68"], data["labelled"]
        n, _, size, _ = img.shape
        terms: dict[str, Tensor] = {}
        albedo = None
        if self._on("photo") or self._on("photo_gdl") or self._on("symmetry"):
            albedo = self.decode_albedo(codes["id"])
        if self._on("photo") or self._on("photo_gdl"):
            k = n if self.hparams.image_terms_subset is None else max(1, min(n, int(self.hparams.image_terms_subset)))
            sub = {key: c[:k] for key, c in codes.items()}
            _, world, proj = self.pose_and_project(verts[:k], sub, size)
            colors = sh_color(albedo[:k], vertex_normals(world, self.facemodel.triangles), sub["sh"])
            out = render_passes(proj, self.facemodel.triangles, size, ("rgb", "mask"), vertex_colors=colors,
                                cull_backfaces=True)
            mask = out["mask"]  # (k, 1, S, S)
            if self._on("photo"):
                err = ((out["rgb"] - img[:k]) ** 2).sum(1, keepdim=True)
                terms["photo"] = (err * mask).sum() / mask.sum().clamp_min(1.0)
            if self._on("photo_gdl"):
                terms["photo_gdl"] = gradient_difference_loss(out["rgb"], img[:k], mask)
        if self._on("landmark") or self._on("landmark_gdl"):
            _, _, proj_lm = self.pose_and_project(verts[:, self.facemodel.landmarks68], codes, size)
            unit = 224.0 / size
            pred, tgt = proj_lm[..., :2] * unit, lm68 * unit
            if self._on("landmark"):
                terms["landmark"] = landmark_loss(pred, tgt)
            if self._on("landmark_gdl"):
                terms["landmark_gdl"] = landmark_gdl_loss(pred, tgt)
        if self._on("recognition"):
            terms["recognition"] = recognition_loss(self.classifier(codes["id"]), data["identity"], codes["id"],
                                                    self.center, self.hparams.center_weight)
        if data["vertices"] is not None and self._on("shape"):
            terms["shape"] = shape_l1_loss(verts, data["vertices"], lab)
        lab_idx = torch.nonzero(lab).reshape(-1)
        if data["coeffs"] is not None and len(lab_idx) > 0 and (self._on("pair") or self._on("neutral")):
            lay = self.facemodel.layout
            c = data["coeffs"][lab_idx]
            a_id, a_exp = c[:, lay.slice("id")], c[:, lay.slice("exp")]
            zid, zexp = codes["id"][lab_idx], codes["exp"][lab_idx]
            m = len(lab_idx)
            ids, exps, targets, names = [], [], [], []
            if self._on("pair") and m > 1:  # A's identity code with B's expression code (B = next one)
                perm = torch.roll(torch.arange(m, device=c.device), 1)
                ids.append(zid), exps.append(zexp[perm]), names.append("pair")
                targets.append(self.facemodel.shape(a_id, a_exp[perm]))
            if self._on("neutral"):
                ids.append(zid), exps.append(torch.zeros_like(zexp)), names.append("neutral")
                targets.append(self.facemodel.shape(a_id, torch.zeros_like(a_exp)))
            if names:  # one decoder pass for both terms
                pred = self.decode_shape(torch.cat(ids), torch.cat(exps))
                for j, name in enumerate(names):
                    terms[name] = shape_l1_loss(pred[j * m:(j + 1) * m], targets[j])
        if self._on("laplacian"):
            terms["laplacian"] = template_laplacian_loss(verts, self.template, self.laplacian)
        if self._on("symmetry"):
            terms["symmetry"] = albedo_symmetry_loss(albedo, self.facemodel.symmetry)
        if self._on("adversarial"):
            terms["adversarial"] = wgan_generator_loss(self.critic(verts - self.template))
        return terms

    def critic_real(self, data: dict[str, Any], n: int, step: int) -> Tensor:
        if self.hparams.critic_real == "labelled" and data["vertices"] is not None and bool(data["labelled"].any()):
            return data["vertices"][data["labelled"]]
        return self.prior_shapes(n, step)

    def critic_step(self, real: Tensor, fake: Tensor):
        """One WGAN-div critic objective on template-relative shapes (fake detached)."""
        t = self.template
        return wgan_div_critic_loss(self.critic, real - t, fake.detach() - t, self.hparams.wgan_k,
                                    self.hparams.wgan_p, self.hparams.wgan_sampling)

    def training_step(self, batch: Sample, batch_idx: int) -> Tensor:
        opt_g, opt_d = self.optimizers()
        data = self._flatten(batch)
        n = data["image"].shape[0]
        step = int(self.global_step)
        codes = self.encode(data["image"])
        verts = self.decode_shape(codes["id"], codes["exp"])
        if self._on("adversarial"):
            for i in range(int(self.hparams.critic_steps)):
                real = self.critic_real(data, n, step * 16 + i)
                closs = self.critic_step(real, verts)
                opt_d.zero_grad()
                self.manual_backward(closs.total)
                opt_d.step()
            self.log("train/critic_wasserstein", closs.wasserstein.detach(), batch_size=n)
            self.log("train/critic_penalty", closs.penalty.detach(), batch_size=n)
        terms = self.generator_terms(data, codes, verts)
        total = sum(self.weights[k] * v for k, v in terms.items())
        if not torch.isfinite(total):
            raise FloatingPointError(f"gcnsemi: non-finite loss at step {step}: "
                                     f"{ {k: float(v) for k, v in terms.items()} }")
        opt_g.zero_grad()
        self.manual_backward(total)
        opt_g.step()
        opt_d.zero_grad(set_to_none=True)  # the generator pass left gradients on the critic
        self.log("train/loss", total.detach(), prog_bar=True, batch_size=n)
        for k, v in terms.items():
            self.log(f"train/{k}", v.detach(), batch_size=n)
        self.log("train/labelled_fraction", data["labelled"].float().mean(), batch_size=n)
        return total.detach()

    def validation_step(self, batch: Sample, batch_idx: int) -> None:
        data = self._flatten(batch)
        codes = self.encode(data["image"])
        verts = self.decode_shape(codes["id"], codes["exp"])
        if data["vertices"] is not None and bool(data["labelled"].any()):
            err = (verts - data["vertices"]).norm(dim=-1).mean(-1)[data["labelled"]]
            self.log("val/vertex_error_mm", err.mean(), prog_bar=True, batch_size=len(err))

    def configure_optimizers(self) -> Any:
        gen = [p for name, p in self.named_parameters() if not name.startswith("critic.")]
        opt_g = torch.optim.Adam(gen, lr=self.hparams.lr)
        opt_d = torch.optim.RMSprop(self.critic.parameters(), lr=self.hparams.critic_lr)
        return [opt_g, opt_d]
