import math

import pytest
import torch

from benchmark3dface.losses import (
    basis_gram,
    depth_fidelity_loss,
    depth_laplacian,
    depth_smoothness_loss,
    depth_to_points,
    gmse_loss,
    normals_from_depth,
    pairwise_shape_loss,
    pose_mse_loss,
    shape_l1_loss,
)


def test_gmse_matches_explicit_vertices_all_layouts():
    g = torch.Generator().manual_seed(0)
    n, k = 7, 4
    basis_knc = torch.randn(k, n, 3, generator=g, dtype=torch.float64)
    basis_mat = basis_knc.reshape(k, 3 * n).T.contiguous()  # (3N, K), rows x0 y0 z0 x1 ...
    a_hat = torch.randn(3, k, generator=g, dtype=torch.float64)
    a = torch.randn(3, k, generator=g, dtype=torch.float64)
    verts_hat = torch.einsum("bk,knc->bnc", a_hat, basis_knc)
    verts = torch.einsum("bk,knc->bnc", a, basis_knc)
    expected = ((verts_hat - verts) ** 2).sum((1, 2)).mean()
    assert torch.allclose(gmse_loss(a_hat, a, basis=basis_knc), expected)
    assert torch.allclose(gmse_loss(a_hat, a, basis=basis_mat), expected)
    assert torch.allclose(gmse_loss(a_hat, a, gram=basis_gram(basis_mat)), expected)
    assert torch.allclose(basis_gram(basis_knc), basis_gram(basis_mat))
    x = a_hat.clone().requires_grad_(True)
    gmse_loss(x, a, gram=basis_gram(basis_knc)).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        gmse_loss(a_hat, a)
    with pytest.raises(ValueError, match="components"):
        gmse_loss(a_hat[:, :3], a[:, :3], basis=basis_knc)


def test_pose_mse():
    p = torch.tensor([[0.1, 0.2, 1.0]])
    q = torch.tensor([[0.0, 0.0, 0.0]])
    assert pose_mse_loss(p, q).item() == pytest.approx((0.01 + 0.04 + 1.0) / 3)
    assert pose_mse_loss(p, q, torch.tensor([1.0, 1.0, 0.0])).item() == pytest.approx(0.05 / 3)


def test_shape_l1_labelled_only_and_index():
    target = torch.zeros(3, 5, 3)
    pred = torch.zeros(3, 4, 3)
    pred[0] += 1.0
    pred[2] += 10.0  # unlabelled: ignored
    index = torch.tensor([0, 1, 2, 4])
    lab = torch.tensor([True, True, False])
    assert shape_l1_loss(pred, target, lab, index).item() == pytest.approx(0.5)
    assert pairwise_shape_loss(pred, target, lab, index).item() == pytest.approx(0.5)
    x = pred.clone().requires_grad_(True)
    val = shape_l1_loss(x, target, torch.zeros(3, dtype=torch.bool), index)
    val.backward()
    assert val.item() == 0.0 and x.grad is not None and (x.grad == 0).all()
    with pytest.raises(ValueError):
        shape_l1_loss(pred, target)  # 4 vs 5 vertices without an index


def test_depth_laplacian_of_plane_is_zero():
    i, j = torch.meshgrid(torch.arange(6.0), torch.arange(8.0), indexing="ij")
    plane = (500 + 2.0 * i - 3.0 * j)[None]
    lap, interior = depth_laplacian(plane)
    assert lap[interior].abs().max() < 1e-4
    assert depth_smoothness_loss(plane).item() < 1e-4
    bowl = plane + 0.5 * (i ** 2)[None]  # d2/di2 = 1 everywhere
    lap2, _ = depth_laplacian(bowl)
    assert torch.allclose(lap2[interior], torch.ones_like(lap2[interior]))
    assert depth_smoothness_loss(bowl).item() == pytest.approx(1.0, rel=1e-5)


def test_depth_smoothness_mask_and_fidelity():
    z = torch.zeros(1, 5, 5)
    z[0, 2, 2] = 4.0  # spike: |lap| = 16 at centre, 4 at its 4 neighbours
    assert depth_smoothness_loss(z).item() == pytest.approx((16 + 4 * 4) / 9)
    mask = torch.zeros(1, 5, 5, dtype=torch.bool)
    mask[0, 1:4, 1:4] = True  # only the centre pixel has its full stencil inside
    assert depth_smoothness_loss(z, mask).item() == pytest.approx(16.0)
    z0 = torch.zeros(1, 1, 5, 5)
    assert depth_fidelity_loss(z, z0).item() == pytest.approx(16.0 / 25)
    assert depth_fidelity_loss(z, z0, mask).item() == pytest.approx(16.0 / 9)
    zz = z.clone().requires_grad_(True)
    (depth_smoothness_loss(zz, mask) + depth_fidelity_loss(zz, z0, mask)).backward()
    assert torch.isfinite(zz.grad).all() and zz.grad[0, 2, 2] > 0


def test_normals_from_depth_plane_orthographic_and_perspective():
    flat = torch.full((1, 6, 7), 800.0)
    n = normals_from_depth(flat)
    assert torch.allclose(n, torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1).expand_as(n), atol=1e-6)
    n = normals_from_depth(flat, focal=1015.0)
    assert torch.allclose(n, torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1).expand_as(n), atol=1e-6)
    # depth increasing to the right (surface recedes toward +x) -> normal tilts to +x
    i, j = torch.meshgrid(torch.arange(6.0), torch.arange(7.0), indexing="ij")
    ramp = (800 + 1.0 * j)[None]
    n = normals_from_depth(ramp)
    expected = torch.tensor([1.0, 0.0, 1.0]) / math.sqrt(2)
    assert torch.allclose(n[0, :, 3, 3], expected, atol=1e-6)
    # depth increasing downward in the image (v) -> the surface recedes toward -y -> normal tilts to -y
    n = normals_from_depth((800 + 1.0 * i)[None])
    assert torch.allclose(n[0, :, 3, 3], torch.tensor([0.0, -1.0, 1.0]) / math.sqrt(2), atol=1e-6)


def test_normals_from_depth_sphere_perspective():
    # a sphere of radius 60 mm centred on the optical axis at depth 1000 mm, seen by Deng's camera
    h = w = 64
    f, c, rad, dc = 1015.0 * 64 / 224, 32.0, 60.0, 1000.0
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float64) + 0.5, torch.arange(w, dtype=torch.float64) + 0.5, indexing="ij")
    ray = torch.stack([(u - c) / f, -(v - c) / f, -torch.ones_like(u)], 0)  # direction with z = -1 per unit depth
    # point = d * ray (camera at origin), |d*ray - C|^2 = r^2 with C = (0, 0, -dc)
    a = (ray ** 2).sum(0)
    b = -2 * (ray * torch.tensor([0, 0, -dc], dtype=torch.float64).view(3, 1, 1)).sum(0)
    disc = b * b - 4 * a * (dc ** 2 - rad ** 2)
    hit = disc > 0
    d = (-b - torch.sqrt(disc.clamp_min(0))) / (2 * a)
    depth = torch.where(hit, d, torch.full_like(d, dc))[None]
    n = normals_from_depth(depth, focal=f)
    pts = depth_to_points(depth, focal=f)[0]
    true_n = (pts - torch.tensor([0, 0, -dc], dtype=torch.float64).view(3, 1, 1)) / rad
    inner = hit & (true_n[2] > 0.5)  # away from the grazing rim, where differences straddle the edge
    assert inner.sum() > 300
    err = torch.rad2deg(torch.acos((n[0] * true_n).sum(0).clamp(-1, 1)))[inner]
    assert err.max() < 3.0 and err.mean() < 1.0
