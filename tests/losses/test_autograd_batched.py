"""Every differentiable term on a batch, on every available device: finite, non-zero
gradients for the first input, and (for terms that average over samples) a batch value equal
to the mean of the per-sample values."""

from __future__ import annotations

import pytest
import torch

from benchmark3dface.geometry.mesh import uniform_laplacian
from benchmark3dface.losses import (
    CenterLoss,
    albedo_symmetry_loss,
    aligned_landmark3d_loss,
    coefficient_regularization,
    depth_fidelity_loss,
    depth_smoothness_loss,
    draw_gaussian_heatmap,
    feature_l2_loss,
    focal_heatmap_loss,
    gamma_loss,
    gmse_loss,
    gradient_difference_loss,
    identity_perceptual_loss,
    landmark_gdl_loss,
    landmark_loss,
    landmark_weights,
    normals_from_depth,
    parse_cross_entropy,
    photometric_loss,
    pose_mse_loss,
    sfs_loss,
    shape_l1_loss,
    solve_sh_lighting,
    template_laplacian_loss,
    texture_flatness_loss,
    texture_variance_loss,
    wgan_div_gradient_penalty,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
B = 3
CASE_NAMES = [
    "photometric", "gdl", "parse_ce", "landmark", "landmark_gdl", "landmark3d", "perceptual",
    "feature_l2", "coeff_reg", "gamma", "flatness", "variance", "symmetry", "laplacian", "gmse",
    "pose", "shape_l1", "depth_smooth", "depth_fid", "sfs", "sfs_light", "focal", "center", "wgan_div",
]


def _case(name: str, dev: str):
    """-> (batched inputs, fn(*inputs) -> scalar, averages over samples?)."""
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.rand(*shape, generator=g).to(dev)

    img = r(B, 3, 8, 8)
    depth0 = 500 + r(B, 10, 10)
    if name == "photometric":
        return (r(B, 3, 8, 8), img, r(B, 8, 8) + 0.1), lambda x, y, w: photometric_loss(x, y, w, reduction="per_image"), True
    if name == "gdl":
        return (r(B, 3, 8, 8), img), lambda x, y: gradient_difference_loss(x, y, alpha=2.0), True
    if name == "parse_ce":
        return (r(B, 4, 8, 8), (img[:, 0] * 4).long().clamp_max(3)), parse_cross_entropy, True
    if name == "landmark":
        w68 = landmark_weights(device=dev)
        return (r(B, 68, 2) * 224, r(B, 68, 2) * 224), lambda x, y: landmark_loss(x, y, w68), True
    if name == "landmark_gdl":
        return (r(B, 68, 2) * 224, r(B, 68, 2) * 224), landmark_gdl_loss, True
    if name == "landmark3d":
        x = r(B, 10, 3) * 50
        y = x * 1.1 + 2 + r(B, 10, 3)
        return (x, y), lambda a, b: aligned_landmark3d_loss(a, b, align_indices=(0, 1, 2, 3, 4, 5, 6)), True
    if name == "perceptual":
        return (r(B, 16) - 0.5, r(B, 16) - 0.5), identity_perceptual_loss, True
    if name == "feature_l2":
        return (r(B, 16), r(B, 16)), feature_l2_loss, True
    if name == "coeff_reg":
        return (r(B, 10),), lambda x: coefficient_regularization(x[:, :5], x[:, 5:8], x[:, 8:]), True
    if name == "gamma":
        return (r(B, 27),), gamma_loss, True
    if name == "flatness":
        skin = torch.tensor([1, 1, 1, 0, 1, 1.0], device=dev)
        return (r(B, 6, 3),), lambda x: texture_flatness_loss(x, skin), True
    if name == "variance":
        labels = torch.tensor([1, 1, 2, 2, 3, 3], device=dev)
        return (r(B, 6, 3),), lambda x: texture_variance_loss(x, labels, regions=[1, 2, 3]), True
    if name == "symmetry":
        sym = torch.tensor([1, 0, 3, 2, 5, 4], device=dev)
        return (r(B, 6, 3),), lambda x: albedo_symmetry_loss(x, sym), True
    if name == "laplacian":
        tris = torch.tensor([[0, 1, 2], [0, 2, 3], [1, 4, 2], [2, 4, 5], [2, 5, 3]])
        lap = uniform_laplacian(tris, 6)
        template = r(6, 3)
        return (r(B, 6, 3),), lambda x: template_laplacian_loss(x, template, lap), True
    if name == "gmse":
        basis = r(5, 6, 3)
        return (r(B, 5), r(B, 5)), lambda x, y: gmse_loss(x, y, basis=basis), True
    if name == "pose":
        return (r(B, 6), r(B, 6)), pose_mse_loss, True
    if name == "shape_l1":
        return (r(B, 6, 3), r(B, 6, 3)), shape_l1_loss, True
    if name == "depth_smooth":
        return (depth0 + r(B, 10, 10), r(B, 10, 10) > 0.2), depth_smoothness_loss, False
    if name == "depth_fid":
        return (depth0 + r(B, 10, 10), depth0), depth_fidelity_loss, True
    if name == "sfs":
        light = torch.tensor([[0.3, 0.1, 0.2, 0.5]], device=dev).repeat(B, 1)
        return ((depth0 + 3 * r(B, 10, 10)), r(B, 1, 10, 10), light), \
            lambda z, im, l: sfs_loss(im, torch.full_like(im, 0.8), normals_from_depth(z), l), True
    if name == "sfs_light":
        return (r(B, 1, 6, 6), depth0[:, :6, :6] + 5 * r(B, 6, 6)), \
            lambda im, z: solve_sh_lighting(im, torch.ones_like(im), normals_from_depth(z)).pow(2).sum(), False
    if name == "focal":
        heat = draw_gaussian_heatmap(torch.tensor([[2.5, 3.5], [5.5, 5.5], [1.5, 6.5]], device=dev),
                                     torch.tensor([1.0, 2.0, 1.0], device=dev), torch.arange(B, device=dev), B, 8, 8)
        return (r(B, 1, 8, 8) * 6 - 3, heat), lambda x, y: focal_heatmap_loss(x, y, logits=True), True
    if name == "center":
        torch.manual_seed(0)
        center = CenterLoss(4, 5).to(dev)
        return (r(B, 5), torch.tensor([0, 2, 3], device=dev)), center, True
    if name == "wgan_div":
        real, fake = r(B, 4), r(B, 4)
        return (r(4),), lambda c: wgan_div_gradient_penalty(lambda s: (c * s ** 2).sum(1), real, fake), False
    raise KeyError(name)


@pytest.mark.parametrize("dev", DEVICES)
@pytest.mark.parametrize("name", CASE_NAMES)
def test_gradients_finite_and_batch_mean(name, dev):
    inputs, fn, per_sample = _case(name, dev)
    x = inputs[0].clone().requires_grad_(True)
    val = fn(x, *inputs[1:])
    assert val.dim() == 0 and torch.isfinite(val)
    val.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0
    if per_sample:
        with torch.no_grad():
            singles = torch.stack([fn(*(t[b:b + 1] for t in inputs)) for b in range(B)])
        assert torch.allclose(val.detach(), singles.mean(), rtol=1e-4, atol=1e-6)
