"""Differentiable interpolation: gradcheck w.r.t. vertex positions and attributes."""

from __future__ import annotations

import pytest
import torch

from benchmark3dface.render import interpolate, pixel_barycentrics, rasterize


def _small_mesh():
    # two triangles of a tilted quad + one overlapping triangle of a second mesh, in a 10x12 image
    verts = torch.tensor(
        [[[1.3, 1.2, 4.0], [10.6, 1.7, 5.0], [10.2, 8.4, 6.5], [1.1, 8.9, 4.5]],
         [[3.2, 2.1, 3.0], [9.1, 3.3, 2.5], [6.4, 9.6, 3.5], [2.0, 7.5, 3.2]]],
        dtype=torch.float64)
    faces = torch.tensor([[0, 3, 1], [1, 3, 2]])
    return verts, faces


@pytest.mark.parametrize("orthographic", [False, True])
def test_gradcheck_interpolation_positions_and_attributes(orthographic):
    verts, faces = _small_mesh()
    g = torch.Generator().manual_seed(1)
    attrs = torch.rand(2, 4, 2, generator=g, dtype=torch.float64)
    frags = rasterize(verts, faces, (10, 12), mesh_to_image=torch.tensor([0, 0]),
                      orthographic=orthographic)
    assert frags.mask.sum() > 40 and set(frags.mesh_index().unique().tolist()) == {-1, 0, 1}

    def fn(v, a):
        return interpolate(a, v, faces, frags)

    v = verts.clone().requires_grad_(True)
    a = attrs.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(fn, (v, a), eps=1e-6, atol=1e-6)


def test_gradcheck_depth_and_shared_attributes():
    verts, faces = _small_mesh()
    frags = rasterize(verts, faces, (10, 12), mesh_to_image=torch.tensor([0, 1]))
    shared = torch.rand(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def fn(v, a):
        surf = pixel_barycentrics(v, faces, frags)
        return surf.interpolate(a), surf.depth

    assert torch.autograd.gradcheck(fn, (verts.clone().requires_grad_(True),
                                         shared.clone().requires_grad_(True)), eps=1e-6, atol=1e-6)


def test_interpolated_depth_equals_fragment_depth_and_bary():
    verts, faces = _small_mesh()
    frags = rasterize(verts.float(), faces, (10, 12), mesh_to_image=torch.tensor([0, 0]))
    # requires_grad: the barycentrics are recomputed (not copied from the fragments)
    surf = pixel_barycentrics(verts.float().requires_grad_(True), faces, frags)
    assert surf.bary.requires_grad
    m = frags.mask.view(-1)
    torch.testing.assert_close(surf.depth.detach(), frags.depth.view(-1)[m])
    torch.testing.assert_close(surf.bary.detach(), frags.bary.view(-1, 3)[m])
    # without grad the fragments' values are reused
    plain = pixel_barycentrics(verts.float(), faces, frags)
    assert not plain.bary.requires_grad and torch.equal(plain.bary, frags.bary.view(-1, 3)[m])
    # interpolating the z coordinate with perspective-correct barycentrics gives the depth
    z = interpolate(verts.float()[..., 2:], verts.float(), faces, frags)[..., 0]
    torch.testing.assert_close(z[frags.mask], frags.depth[frags.mask])
    assert (z[~frags.mask] == 0).all()


@pytest.mark.parametrize("orthographic", [False, True])
def test_gradient_signs(orthographic):
    # one triangle with a red vertex on the right; the red value at a fixed pixel falls when
    # the red vertex moves right (away from the pixel)
    verts = torch.tensor([[[2.0, 2.0, 5.0], [2.0, 18.0, 5.0], [18.0, 10.0, 5.0]]],
                         requires_grad=True)
    faces = torch.tensor([[0, 1, 2]])
    red = torch.tensor([[0.0], [0.0], [1.0]])
    frags = rasterize(verts, faces, 20, orthographic=orthographic)
    img = interpolate(red, verts, faces, frags)
    img[0, 10, 10, 0].backward()
    assert verts.grad[0, 2, 0] < 0
    if orthographic:  # affine barycentrics do not depend on depth
        assert verts.grad[0, :, 2].abs().max() == 0
    else:  # perspective: a farther red vertex weighs less
        assert verts.grad[0, 2, 2] < 0 and verts.grad[0, 0, 2] > 0


def test_mismatched_fragments_raise():
    verts, faces = _small_mesh()
    frags = rasterize(verts, faces, 8)
    with pytest.raises(ValueError, match="rasterized from 2 meshes"):
        interpolate(torch.zeros(4, 1, dtype=torch.float64), verts[:1], faces, frags)
    with pytest.raises(ValueError, match="vertex attributes"):
        interpolate(torch.zeros(5, 1, dtype=torch.float64), verts, faces, frags)


@pytest.mark.parametrize("orthographic", [False, True])
def test_analytic_barycentric_backward_matches_autograd(orthographic):
    from benchmark3dface.render.rasterize import barycentrics_at, barycentrics_autograd

    g = torch.Generator().manual_seed(3)
    tri = torch.rand(3, 3, 50, generator=g, dtype=torch.float64) * 20  # planar corners
    tri[2] += 2.0
    px = torch.rand(50, generator=g, dtype=torch.float64) * 20
    py = torch.rand(50, generator=g, dtype=torch.float64) * 20
    gb = torch.randn(50, 3, generator=g, dtype=torch.float64)
    gd = torch.randn(50, generator=g, dtype=torch.float64)
    grads = []
    for fn in (barycentrics_at, barycentrics_autograd):
        t = tri.clone().requires_grad_(True)
        b, d = fn(t, px, py, orthographic)
        ((b * gb).sum() + (d * gd).sum()).backward()
        grads.append((b.detach(), d.detach(), t.grad))
    for a, r in zip(grads[0], grads[1]):
        torch.testing.assert_close(a, r)
    # only one output used (the other gradient is None)
    t = tri.clone().requires_grad_(True)
    barycentrics_at(t, px, py, orthographic)[1].sum().backward()
    assert torch.isfinite(t.grad).all()
