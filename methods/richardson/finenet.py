"""Richardson'17 FineNet (Sec. 4.2-4.4): a hypercolumn network refining the coarse depth map,
trained without labels by the shape-from-shading energy of Eq. 14

    E = lambda_sh E_sh + lambda_f E_f + lambda_sm E_sm,

E_sh = ||rho <l, Y(n(z))> - I||^2 (Eq. 8; first-order SH lighting ``l`` solved per image by least
squares with the mean albedo on the coarse depth's normals, Eq. 11; albedo from the model's first
10 albedo components by least squares, Eq. 12), E_f = ||z - z0||^2 (Eq. 13) and
E_sm = ||Laplacian z||_1. Plus ``sfs_optimize``: the same energy minimised per image over the
depth map itself (no network), the training-free reference.

Units: intensities in [0, 255] (``intensity_scale``), depth in mm (weak-perspective ``-z_world``),
pixel size 1 / scale mm; with them the paper's weights (1, 5e-3, 1) are used as given.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark3dface.losses.depth import depth_fidelity_loss, depth_smoothness_loss, erode_mask4, normals_from_depth
from benchmark3dface.losses.shading import sfs_loss, sh1_shading, solve_albedo_linear, solve_sh_lighting

PAPER_WEIGHTS = {"sh": 1.0, "f": 5e-3, "sm": 1.0}


@dataclass
class ShadingProblem:
    """Everything Eq. 14 needs for a batch, from the coarse estimate (no gradients)."""

    image: Tensor  # (B,1,H,W) intensities (x intensity_scale)
    z0: Tensor  # (B,H,W) coarse depth, filled (finite everywhere)
    mask: Tensor  # (B,H,W) bool, eroded coarse face region
    pixel_size: Tensor  # (B,) mm per pixel
    albedo: Tensor  # (B,1,H,W)
    light: Tensor  # (B,1,4)


def masked_median(x: Tensor, mask: Tensor) -> Tensor:
    """(B, H, W) values, (B, H, W) bool -> (B,) median of each image's masked values (the lower
    middle value, as ``Tensor.median``); 0 for an image with an empty mask."""
    med = torch.where(mask, x, x.new_tensor(float("nan"))).flatten(1).nanmedian(1).values
    return torch.nan_to_num(med, nan=0.0)


def fill_depth(depth: Tensor) -> Tensor:
    """(B,H,W) depth, NaN off the mesh -> finite: the pixels off the mesh get the per-image
    median of the mesh's depth (they only enter normals next to the silhouette, which the
    eroded masks leave out)."""
    ok = depth.isfinite()
    med = masked_median(depth, ok)
    return torch.where(ok, depth, med[:, None, None].expand_as(depth))


def normals(z: Tensor, pixel_size: Tensor) -> Tensor:
    """Per-image orthographic normals (pixel sizes differ across the batch)."""
    return torch.cat([normals_from_depth(z[i:i + 1], pixel_size=float(pixel_size[i])) for i in range(z.shape[0])])


def shading_problem(gray: Tensor, depth: Tensor, mask: Tensor, scale: Tensor, mean_albedo: Tensor,
                    albedo_basis: Tensor | None, intensity_scale: float = 255.0) -> ShadingProblem:
    """Set up Eq. 14 from the coarse depth (B,1,H,W; NaN off the mesh), its mask, the scale
    (B,) px/mm and the albedo maps rendered from the coarse mesh (mean (B,1,H,W), basis
    (B,K,1,H,W); None: the mean albedo is the albedo). The light is solved with the mean albedo on the coarse normals (Eq. 11), the
    albedo coefficients with that light (Eq. 12)."""
    with torch.no_grad():
        m = erode_mask4(erode_mask4(mask[:, 0] > 0))
        z0 = fill_depth(depth[:, 0])
        px = 1.0 / scale.reshape(-1).to(z0)
        img = gray * intensity_scale
        n0 = normals(z0, px)
        light = solve_sh_lighting(img, mean_albedo, n0, m, ridge=1e-4)
        shade = sh1_shading(n0, light, 1)
        if albedo_basis is None or albedo_basis.shape[1] == 0:
            albedo = mean_albedo.expand_as(img)
        else:
            albedo, _ = solve_albedo_linear(img, shade, mean_albedo, albedo_basis, m, ridge=1e-3)
    return ShadingProblem(img, z0, m, px, albedo, light)


def sfs_energy(z: Tensor, p: ShadingProblem, weights: dict[str, float] = PAPER_WEIGHTS) -> dict[str, Tensor]:
    """Eq. 14 terms for the depth ``z`` (B,H,W) and their weighted ``total``."""
    n = normals(z, p.pixel_size)
    e_sh = sfs_loss(p.image, p.albedo, n, p.light, p.mask)
    e_f = depth_fidelity_loss(z, p.z0, p.mask)
    e_sm = depth_smoothness_loss(z, p.mask)
    total = weights["sh"] * e_sh + weights["f"] * e_f + weights["sm"] * e_sm
    return {"sh": e_sh, "f": e_f, "sm": e_sm, "total": total}


def sfs_optimize(p: ShadingProblem, steps: int = 60, lr: float = 0.05,
                 weights: dict[str, float] = PAPER_WEIGHTS) -> Tensor:
    """The per-image Eq. 14 optimisation over the depth map itself (Adam on z, from z0):
    the training-free reference. Returns the refined (B,H,W) depth (z0 off the mask)."""
    dz = torch.zeros_like(p.z0, requires_grad=True)
    opt = torch.optim.Adam([dz], lr=lr)
    for _ in range(int(steps)):
        opt.zero_grad()
        z = p.z0 + dz * p.mask  # only the (eroded) face region moves
        e = sfs_energy(z, p, weights)
        # per-image energies are means; the batch sum keeps each image's step size independent
        (e["total"] * z.shape[0]).backward()
        opt.step()
    return (p.z0 + dz * p.mask).detach()


class FineNet(nn.Module):
    """Hypercolumn refinement network (VGG-style, truncated before the third pooling as in the
    paper, which uses VGG-Face): conv stages at 1, 1/2 and 1/4 resolution; every stage's
    features are brought back to full resolution by 2x2 stride-2 up-convolutions and
    concatenated with the input (the hypercolumn), then 1x1 convs predict the depth
    refinement (mm). Input channels: grayscale image, normalised coarse depth, coarse mask."""

    def __init__(self, width: int = 16, hyper: int = 64, out_scale_mm: float = 2.0):
        super().__init__()
        w = width

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True),
                                 nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True))

        self.s1, self.s2, self.s3 = block(3, w), block(w, 2 * w), block(2 * w, 4 * w)
        self.up2 = nn.ConvTranspose2d(2 * w, 2 * w, 2, stride=2)
        self.up3 = nn.Sequential(nn.ConvTranspose2d(4 * w, 4 * w, 2, stride=2), nn.ReLU(inplace=True),
                                 nn.ConvTranspose2d(4 * w, 4 * w, 2, stride=2))
        self.head = nn.Sequential(nn.Conv2d(3 + w + 2 * w + 4 * w, hyper, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(hyper, hyper // 2, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(hyper // 2, 1, 1))
        nn.init.zeros_(self.head[-1].weight)  # starts as the identity refinement (z = z0)
        nn.init.zeros_(self.head[-1].bias)
        self.out_scale_mm = out_scale_mm

    def forward(self, gray: Tensor, z0: Tensor, mask: Tensor) -> Tensor:
        """gray (B,1,H,W) in [0,1]; z0 (B,H,W) mm; mask (B,H,W) bool -> refined depth (B,H,W)."""
        h, w = gray.shape[-2:]
        ph, pw = (-h) % 4, (-w) % 4
        mf = mask.to(gray.dtype)[:, None]
        med = masked_median(z0, mask)
        zn = (z0 - med[:, None, None])[:, None] / 30.0 * mf
        x = F.pad(torch.cat([gray * 2 - 1, zn, mf], 1), (0, pw, 0, ph), mode="replicate")
        f1 = self.s1(x)
        f2 = self.s2(F.max_pool2d(f1, 2))
        f3 = self.s3(F.max_pool2d(f2, 2))
        hc = torch.cat([x, f1, self.up2(f2), self.up3(f3)], 1)
        dz = self.head(hc)[:, 0, :h, :w] * self.out_scale_mm
        return z0 + dz * mask.to(dz.dtype)
