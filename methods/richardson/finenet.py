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
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark3dface.losses.depth import depth_fidelity_loss, depth_smoothness_loss, erode_mask4, normals_from_depth
from benchmark3dface.losses.shading import sfs_loss, sh1_shading, solve_albedo_linear, solve_sh_lighting
from benchmark3dface.training.weights import load_weights_file

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


# --------------------------------------------------------------------------- VGG-Face initialisation
# The widely used PyTorch conversion of VGG-Face (Parkhi et al. 2015; MatConvNet "vgg_face_dag"):
# a state dict with conv1_1.weight/bias ... conv5_3.*, fc6.*, fc7.*, fc8.*. Its input convention:
# RGB, 0-255, minus the per-channel mean pixel below (std 1).
VGG_FACE_MEAN_RGB = (129.186279296875, 104.76238250732422, 93.59396362304688)
# the layers FineNet uses (VGG-16 truncated before the third pooling): name -> (out, in) channels
VGG_FACE_LAYERS = {"conv1_1": (64, 3), "conv1_2": (64, 64), "conv2_1": (128, 64), "conv2_2": (128, 128),
                   "conv3_1": (256, 128), "conv3_2": (256, 256), "conv3_3": (256, 256)}
VGG_FACE_HOW_TO_GET = ("pass the PyTorch conversion of VGG-Face (vgg_face_dag.pth: a state dict with conv1_1.weight "
                       "... conv5_3, fc6-fc8) or set vgg_weights=None to train FineNet from scratch")
ARCHS = ("small", "vgg16")


def vgg_face_input(gray: Tensor) -> Tensor:
    """(B,1,H,W) grayscale in [0, 1] -> (B,3,H,W) in VGG-Face's input convention: the gray level
    replicated to R, G and B, scaled to 0-255, minus the RGB mean pixel."""
    mean = gray.new_tensor(VGG_FACE_MEAN_RGB)[None, :, None, None]
    return gray.expand(-1, 3, -1, -1) * 255.0 - mean


def read_vgg_face(path: str) -> dict[str, Tensor]:
    """The conv1_1..conv3_3 weights and biases of a VGG-Face state dict file (other keys are
    ignored). A missing file, one that is not a state dict of tensors, or one lacking a needed key
    (or with a wrong shape / non-finite values) is refused with one line naming the file, the
    first bad key and the count of bad keys."""
    what = "a VGG-Face state dict"
    p = Path(path).expanduser()
    blob = load_weights_file(p, what, VGG_FACE_HOW_TO_GET)
    if not isinstance(blob, dict):
        raise ValueError(f"{p}: expected {what} (a dict of tensors: conv1_1.weight, ...), got {type(blob).__name__}")
    out: dict[str, Tensor] = {}
    bad: list[str] = []
    for layer, (cout, cin) in VGG_FACE_LAYERS.items():
        for kind, shape in (("weight", (cout, cin, 3, 3)), ("bias", (cout,))):
            key = f"{layer}.{kind}"
            t = blob.get(key)
            if not isinstance(t, Tensor):
                bad.append(f"{key} ({'missing' if t is None else 'not a tensor'})")
            elif tuple(t.shape) != shape:
                bad.append(f"{key} (shape {tuple(t.shape)}, expected {shape})")
            elif not t.is_floating_point() or not bool(t.isfinite().all()):
                bad.append(f"{key} (not finite floats)")
            else:
                out[key] = t.detach().float()
    if bad:
        n = 2 * len(VGG_FACE_LAYERS)
        none = not any(f"{layer}.{k}" in blob for layer in VGG_FACE_LAYERS for k in ("weight", "bias"))
        seen = f"; its keys begin {[str(k) for k in list(blob)[:3]]}" if none else ""
        raise ValueError(f"{p}: not {what}: {len(bad)} of the {n} needed conv1_1-conv3_3 keys bad, "
                         f"first {bad[0]}{seen}")
    return out


def load_vgg_face(finenet: "FineNet", path: str) -> None:
    """Copies VGG-Face's conv1_1..conv3_3 (``read_vgg_face``) into a ``FineNet(arch="vgg16")``:
    the pretrained conv1_1 filters take the 3 VGG-convention gray channels, the 2 extra input
    channels (normalised depth, mask) get zero weights, so at step 0 the pretrained filters see
    exactly the input they were trained on. Sets ``finenet.init_source``."""
    if finenet.arch != "vgg16":
        raise ValueError(f"{path}: VGG-Face weights need FineNet(arch='vgg16'), this one is {finenet.arch!r}")
    state = read_vgg_face(path)
    with torch.no_grad():
        for layer, conv in finenet.vgg_convs().items():
            w, b = state[f"{layer}.weight"], state[f"{layer}.bias"]
            if layer == "conv1_1":
                conv.weight.zero_()
                conv.weight[:, :3].copy_(w)
            else:
                conv.weight.copy_(w)
            conv.bias.copy_(b)
    finenet.init_source = f"vgg-face:{path}"


class FineNet(nn.Module):
    """Hypercolumn refinement network (VGG-style, truncated before the third pooling as in the
    paper, which uses VGG-Face): conv stages at 1, 1/2 and 1/4 resolution; every stage's
    features are brought back to full resolution by 2x2 stride-2 up-convolutions and
    concatenated with the input (the hypercolumn), then 1x1 convs predict the depth
    refinement (mm). Input channels: grayscale image, normalised coarse depth, coarse mask.

    ``arch="small"`` (default): two 3x3 convs per stage, ``width``/2x/4x channels, from scratch.
    ``arch="vgg16"``: VGG-16's own stages conv1_1-1_2 (64), conv2_1-2_2 (128), conv3_1-3_3 (256)
    (``width`` is ignored); conv1_1 takes the gray image replicated to RGB in VGG-Face's input
    convention (``vgg_face_input``) plus the normalised depth and the mask (5 channels); the
    hypercolumn concatenates the same 3 normalised input channels as the small net
    (3 + 64 + 128 + 256 = 451 channels; the paper's is 450). ``vgg_weights``: a VGG-Face state
    dict file (implies ``arch="vgg16"``; ``load_vgg_face``), None: from scratch.
    ``init_source`` records which: ``"scratch"`` or ``"vgg-face:<path>"``."""

    def __init__(self, width: int = 16, hyper: int = 64, out_scale_mm: float = 2.0, arch: str | None = None,
                 vgg_weights: str | None = None):
        super().__init__()
        arch = arch if arch is not None else ("vgg16" if vgg_weights else "small")
        if arch not in ARCHS:
            raise ValueError(f"FineNet arch must be one of {ARCHS}, got {arch!r}")
        if vgg_weights and arch != "vgg16":
            raise ValueError(f"{vgg_weights}: VGG-Face weights need FineNet arch 'vgg16', got {arch!r}")
        self.arch = arch
        self.init_source = "scratch"
        w = 64 if arch == "vgg16" else width

        def block(cin: int, cout: int, n: int = 2) -> nn.Sequential:
            layers: list[nn.Module] = []
            for i in range(n):
                layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1), nn.ReLU(inplace=True)]
            return nn.Sequential(*layers)

        if arch == "vgg16":
            self.s1, self.s2, self.s3 = block(3 + 2, w), block(w, 2 * w), block(2 * w, 4 * w, 3)
        else:
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
        if vgg_weights:
            load_vgg_face(self, vgg_weights)

    def vgg_convs(self) -> dict[str, nn.Conv2d]:
        """VGG-16 layer name -> this net's conv (``arch="vgg16"`` only)."""
        if self.arch != "vgg16":
            raise ValueError(f"FineNet arch {self.arch!r} has no VGG-16 layers")
        stages = {"1": self.s1, "2": self.s2, "3": self.s3}
        return {name: stages[name[4]][2 * (int(name[6]) - 1)] for name in VGG_FACE_LAYERS}

    def forward(self, gray: Tensor, z0: Tensor, mask: Tensor) -> Tensor:
        """gray (B,1,H,W) in [0,1]; z0 (B,H,W) mm; mask (B,H,W) bool -> refined depth (B,H,W)."""
        h, w = gray.shape[-2:]
        ph, pw = (-h) % 4, (-w) % 4
        mf = mask.to(gray.dtype)[:, None]
        med = masked_median(z0, mask)
        zn = (z0 - med[:, None, None])[:, None] / 30.0 * mf
        x = F.pad(torch.cat([gray * 2 - 1, zn, mf], 1), (0, pw, 0, ph), mode="replicate")
        if self.arch == "vgg16":  # conv1_1 sees the gray image in VGG-Face's convention (+ depth, mask)
            f1 = self.s1(F.pad(torch.cat([vgg_face_input(gray), zn, mf], 1), (0, pw, 0, ph), mode="replicate"))
        else:
            f1 = self.s1(x)
        f2 = self.s2(F.max_pool2d(f1, 2))
        f3 = self.s3(F.max_pool2d(f2, 2))
        hc = torch.cat([x, f1, self.up2(f2), self.up3(f3)], 1)
        dz = self.head(hc)[:, 0, :h, :w] * self.out_scale_mm
        return z0 + dz * mask.to(dz.dtype)
