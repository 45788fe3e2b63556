"""Richardson'17 Eq. 7: the z-buffered depth's fixed-barycentric gradient."""

from __future__ import annotations

import torch

from benchmark3dface.render.depthmap import mesh_depth_map
from benchmark3dface.render.rasterize import rasterize
from benchmark3dface.render.testmesh import grid_faces
from benchmark3dface.render.zbuffer_grad import zbuffer_depth


def _surface(side: int = 6, size: int = 16, dtype=torch.float64):
    """A bumpy height field on a side x side grid covering most of a size x size image."""
    g = torch.Generator().manual_seed(0)
    t = torch.linspace(1.5, size - 1.5, side, dtype=dtype)
    v, u = torch.meshgrid(t, t, indexing="ij")
    z = 5.0 + torch.rand(side, side, generator=g, dtype=dtype)
    verts = torch.stack([u + 0.13, v + 0.07, z], -1).reshape(1, -1, 3)
    return verts, grid_faces(side, side)


def test_forward_is_the_rasterizers_depth_map():
    verts, faces = _surface()
    d = zbuffer_depth(verts, faces, 16, cull_backfaces=False)
    ref = mesh_depth_map(verts, faces, 16, orthographic=True, cull_backfaces=False)
    both = ref.isfinite()
    assert both.any() and torch.equal(d.isfinite(), both)
    assert torch.allclose(d[both], ref[both].to(d.dtype), atol=1e-5)


def test_gradcheck_of_the_fixed_barycentric_depth():
    verts, faces = _surface()
    frags = rasterize(verts, faces, 16, orthographic=True)
    xy = verts[..., :2]

    def f(z):
        return zbuffer_depth(torch.cat([xy, z[..., None]], -1), faces, 16, fragments=frags,
                             background=0.0)

    z = verts[..., 2].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(f, (z,), eps=1e-6, atol=1e-6)


def test_gradient_is_eq7_barycentrics_and_none_in_the_image_plane():
    verts, faces = _surface()
    verts = verts.clone().requires_grad_(True)
    frags = rasterize(verts.detach(), faces, 16, orthographic=True)
    d = zbuffer_depth(verts, faces, 16, fragments=frags, background=0.0)
    i, j = 7, 9
    assert bool(frags.mask[0, i, j])
    d[0, i, j].backward()
    tri = faces[frags.pix_to_face[0, i, j]]
    expected = torch.zeros(verts.shape[1], dtype=verts.dtype)
    expected[tri] = frags.bary[0, i, j].to(verts.dtype)
    assert torch.allclose(verts.grad[0, :, 2], expected)
    assert float(verts.grad[0, :, :2].abs().max()) == 0.0
    assert abs(float(expected.sum()) - 1.0) < 1e-6  # barycentrics of one pixel sum to 1
