import pytest
import torch

from benchmark3dface.losses import (
    normals_from_depth,
    sfs_loss,
    sh1_shading,
    solve_albedo_linear,
    solve_albedo_per_pixel,
    solve_sh_lighting,
)


def _scene(b=2, h=24, w=24, dtype=torch.float64):
    """A bumpy depth map (mm), its normals, a smooth albedo and a first-order SH light."""
    g = torch.Generator().manual_seed(0)
    i, j = torch.meshgrid(torch.arange(h, dtype=dtype), torch.arange(w, dtype=dtype), indexing="ij")
    depth = torch.stack([500 + 3 * torch.sin(i / 4 + k) * torch.cos(j / 5) + 0.05 * (j - 12) ** 2
                         for k in range(b)])
    normals = normals_from_depth(depth)
    albedo = (0.5 + 0.3 * torch.rand(b, 1, h, w, generator=g, dtype=dtype))
    light = torch.tensor([[0.7, 0.2, -0.1, 0.4], [0.6, -0.3, 0.1, 0.5]], dtype=dtype)[:b]
    return depth, normals, albedo, light


def test_sh1_shading_hand_value():
    n = torch.tensor([0.0, 0.6, 0.8]).view(1, 3, 1, 1)
    light = torch.tensor([[0.5, 1.0, 2.0, 3.0]])
    assert sh1_shading(n, light).item() == pytest.approx(0.5 + 1.2 + 2.4)
    light_rgb = torch.tensor([[[0.5, 1.0, 2.0, 3.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]])
    assert torch.allclose(sh1_shading(n, light_rgb).flatten(), torch.tensor([4.1, 1.0, 0.8]))


def test_sfs_loss_zero_for_exact_render_and_positive_otherwise():
    depth, normals, albedo, light = _scene()
    image = albedo * sh1_shading(normals, light)
    assert sfs_loss(image, albedo, normals, light).item() < 1e-20
    assert sfs_loss(image + 0.1, albedo, normals, light).item() == pytest.approx(0.01, rel=1e-6)
    mask = torch.zeros(2, 24, 24, dtype=torch.bool)
    mask[:, 5:10, 5:10] = True
    noisy = image.clone()
    noisy[:, :, 0, 0] += 5.0  # outside the mask
    assert sfs_loss(noisy, albedo, normals, light, mask).item() < 1e-20


def test_solve_sh_lighting_recovers_light():
    depth, normals, albedo, light = _scene()
    image = albedo * sh1_shading(normals, light)
    est = solve_sh_lighting(image, albedo, normals, ridge=0.0)
    assert est.shape == (2, 1, 4)
    assert torch.allclose(est[:, 0], light, atol=1e-10)
    # the default Tikhonov term only biases it slightly
    assert torch.allclose(solve_sh_lighting(image, albedo, normals)[:, 0], light, atol=1e-4)
    # RGB image, per-channel lights, with a mask
    light_rgb = torch.stack([light, light * 0.5, light.flip(-1)], 1)
    image_rgb = albedo * sh1_shading(normals, light_rgb)
    mask = torch.rand(2, 24, 24, generator=torch.Generator().manual_seed(1)) > 0.3
    corrupted = torch.where(mask[:, None], image_rgb, torch.full_like(image_rgb, 9.0))
    est = solve_sh_lighting(corrupted, albedo, normals, mask, ridge=0.0)
    assert torch.allclose(est, light_rgb, atol=1e-10)


def test_solve_albedo_recovers_albedo():
    depth, normals, albedo, light = _scene()
    shading = sh1_shading(normals, light)
    image = albedo * shading
    assert torch.allclose(solve_albedo_per_pixel(image, shading, eps=0.0), albedo, atol=1e-10)
    g = torch.Generator().manual_seed(3)
    mu = torch.full((1, 24, 24), 0.5, dtype=torch.float64)
    basis = torch.randn(10, 1, 24, 24, generator=g, dtype=torch.float64) * 0.02
    coeffs = torch.randn(2, 10, generator=g, dtype=torch.float64)
    rho = mu + torch.einsum("bk,kchw->bchw", coeffs, basis)
    est_rho, est_c = solve_albedo_linear(rho * shading, shading, mu, basis, ridge=0.0)
    assert torch.allclose(est_c, coeffs, atol=1e-6)
    assert torch.allclose(est_rho, rho, atol=1e-8)


def test_sfs_gradients_reach_depth():
    depth, _, albedo, light = _scene(dtype=torch.float64)
    target_img = albedo * sh1_shading(normals_from_depth(depth), light)
    z = (depth + 0.5 * torch.randn(depth.shape, generator=torch.Generator().manual_seed(4),
                                   dtype=torch.float64)).requires_grad_(True)
    n = normals_from_depth(z)
    lit = solve_sh_lighting(target_img, albedo, n.detach())
    loss = sfs_loss(target_img, albedo, n, lit)
    loss.backward()
    assert loss.item() > 0 and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    # a small step against the gradient reduces the loss
    with torch.no_grad():
        z2 = z - 1e-1 * z.grad / z.grad.abs().max()
    assert sfs_loss(target_img, albedo, normals_from_depth(z2), lit).item() < loss.item()
