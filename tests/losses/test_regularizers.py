import pytest
import torch

from benchmark3dface.geometry.mesh import uniform_laplacian
from benchmark3dface.losses import (
    albedo_symmetry_loss,
    coefficient_regularization,
    feature_l2_loss,
    gamma_loss,
    identity_perceptual_loss,
    row_normalized_laplacian,
    template_laplacian_loss,
    texture_flatness_loss,
    texture_variance_loss,
)


def test_identity_perceptual_loss_values():
    f = torch.randn(4, 16)
    assert identity_perceptual_loss(f, 3.0 * f).item() == pytest.approx(0.0, abs=1e-6)
    assert identity_perceptual_loss(f, -f).item() == pytest.approx(2.0, abs=1e-6)
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[0.0, 2.0], [1.0, 1.0]])  # orthogonal, 45 degrees
    expected = ((1 - 0.0) + (1 - 2 ** -0.5)) / 2
    assert identity_perceptual_loss(a, b).item() == pytest.approx(expected, rel=1e-6)
    x = torch.randn(3, 8, requires_grad=True)
    identity_perceptual_loss(x, torch.randn(3, 8)).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_feature_l2_loss():
    a, b = torch.zeros(2, 3), torch.tensor([[1.0, 2.0, 2.0], [0.0, 0.0, 0.0]])
    assert feature_l2_loss(a + b, a).item() == pytest.approx(9.0 / 2)
    f = torch.randn(5, 7)
    assert feature_l2_loss(f, -f, normalize=True).item() == pytest.approx(4.0, rel=1e-5)


def test_coefficient_regularization_weights_and_batch_mean():
    idc = torch.tensor([[1.0, 2.0], [0.0, 0.0]])  # sums 5, 0
    exc = torch.tensor([[1.0], [3.0]])  # 1, 9
    tex = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # 4, 0
    val = coefficient_regularization(idc, exc, tex, w_id=1.0, w_exp=0.8, w_tex=1.7e-3)
    assert val.item() == pytest.approx((5 + 0) / 2 * 1.0 + (1 + 9) / 2 * 0.8 + 4 / 2 * 1.7e-3, rel=1e-6)
    assert coefficient_regularization(idc, None, None).item() == pytest.approx(2.5)
    with pytest.raises(ValueError):
        coefficient_regularization(None, None, None)


def test_gamma_loss_white_light_zero_and_hand_value():
    white = torch.randn(3, 9).repeat(1, 3)  # same 9 coefficients for r, g, b
    assert gamma_loss(white).item() == pytest.approx(0.0, abs=1e-7)
    g = torch.zeros(1, 27)
    g[0, 0] = 3.0  # red DC only: channel mean 1 -> deviations (2, -1, -1)
    assert gamma_loss(g).item() == pytest.approx((4 + 1 + 1) / 27, rel=1e-6)
    with pytest.raises(ValueError):
        gamma_loss(torch.zeros(2, 9))


def test_texture_flatness_constant_is_zero_and_hand_value():
    skin = torch.tensor([True, True, False, True])
    alb = torch.full((2, 4, 3), 0.6)
    alb[:, 2] = torch.tensor([0.1, 0.9, 0.3])  # non-skin vertex: ignored
    assert texture_flatness_loss(alb, skin).item() == pytest.approx(0.0, abs=1e-7)
    alb2 = alb.clone()
    alb2[0, 0, 0] = 0.9  # red on skin: values (0.9, .6, .6) mean .7 -> var (0.04+.01+.01)/3
    expected = ((0.04 + 0.01 + 0.01) / 3) / 2  # image 0 only, averaged over the batch
    assert texture_flatness_loss(alb2, skin).item() == pytest.approx(expected, rel=1e-5)
    # float weights: weighted variance
    assert texture_flatness_loss(alb2, skin.float()).item() == pytest.approx(expected, rel=1e-5)


def test_texture_variance_per_region():
    labels = torch.tensor([1, 1, 2, 2, 3])
    alb = torch.zeros(1, 5, 3)
    alb[0, :, 0] = torch.tensor([0.0, 1.0, 0.5, 0.5, 0.7])  # region 1 var 0.25, region 2 var 0
    val = texture_variance_loss(alb, labels, regions=[1, 2])
    assert val.item() == pytest.approx((0.25 + 0.0) / 2, rel=1e-6)
    # one merged region = a bool mask over both
    merged = texture_variance_loss(alb, labels <= 2)
    assert merged.item() == pytest.approx(torch.tensor([0.0, 1.0, 0.5, 0.5]).var(unbiased=False).item(), rel=1e-6)
    # an empty region is ignored
    assert texture_variance_loss(alb, labels, regions=[1, 2, 7]).item() == pytest.approx(val.item())
    with pytest.raises(ValueError, match="regions"):
        texture_variance_loss(alb, labels)
    a = alb.clone().requires_grad_(True)
    texture_variance_loss(a, labels, regions=[1, 2]).backward()
    assert torch.isfinite(a.grad).all() and a.grad[0, 0, 0] < 0 < a.grad[0, 1, 0]


def test_albedo_symmetry():
    sym = torch.tensor([1, 0, 2])
    alb = torch.tensor([[[0.2, 0.2, 0.2], [0.2, 0.2, 0.2], [0.9, 0.1, 0.5]]])
    assert albedo_symmetry_loss(alb, sym).item() == 0.0
    alb2 = alb.clone()
    alb2[0, 0, 0] = 0.5  # differs from its mirror by 0.3 (counted for vertex 0 and 1)
    assert albedo_symmetry_loss(alb2, sym).item() == pytest.approx(0.6 / 9, rel=1e-5)
    img = torch.rand(2, 3, 4, 6)
    assert albedo_symmetry_loss(img + img.flip(-1)).item() == pytest.approx(0.0, abs=1e-7)
    assert albedo_symmetry_loss(img).item() > 0


def _grid_mesh(n=5):
    ys, xs = torch.meshgrid(torch.arange(n, dtype=torch.float64), torch.arange(n, dtype=torch.float64), indexing="ij")
    verts = torch.stack([xs, ys, torch.zeros_like(xs)], -1).reshape(-1, 3)
    tris = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j, (i + 1) * n + j + 1
            tris += [[a, b, d], [a, d, c]]
    return verts, torch.tensor(tris)


def test_row_normalized_laplacian_is_vertex_minus_neighbour_mean():
    verts, tris = _grid_mesh(4)
    lap = row_normalized_laplacian(uniform_laplacian(tris, verts.shape[0])).to(torch.float64)
    x = torch.randn(verts.shape[0], 1, dtype=torch.float64)
    out = torch.sparse.mm(lap, x)
    dense = uniform_laplacian(tris, verts.shape[0]).to_dense().to(torch.float64)
    adj = (dense < 0)
    mean_nb = torch.stack([x[adj[i], 0].mean() for i in range(len(x))])
    assert torch.allclose(out[:, 0], x[:, 0] - mean_nb)


def test_template_laplacian_loss():
    verts, tris = _grid_mesh(5)
    lap = uniform_laplacian(tris, verts.shape[0])
    batch = verts[None].repeat(2, 1, 1)
    # a similarity-free rigid offset and the template itself give 0
    assert template_laplacian_loss(batch + 3.0, verts, lap).item() < 1e-5
    bumped = batch.clone()
    bumped[1, 12, 2] = 1.0  # centre vertex raised by 1
    for norm in ("l2", "squared", "l1"):
        assert template_laplacian_loss(bumped, verts, lap, norm=norm).item() > 1e-3
    # squared-norm value by hand: the bumped vertex has delta z = 1, its 6 neighbours -1/deg_j
    dense = lap.to_dense().to(torch.float64)
    nbrs = torch.nonzero(dense[12] < 0).flatten()
    expected = (1.0 + sum((1.0 / dense[j, j].item()) ** 2 for j in nbrs)) / (2 * 25)
    assert template_laplacian_loss(bumped, verts, lap, norm="squared").item() == pytest.approx(expected, rel=1e-6)
    v = bumped.clone().requires_grad_(True)
    template_laplacian_loss(v, verts, lap).backward()
    assert torch.isfinite(v.grad).all() and v.grad[1, 12, 2] > 0
