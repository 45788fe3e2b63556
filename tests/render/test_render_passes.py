"""Shading passes, render_passes / MeshRenderer, backends and the CUDA path."""

from __future__ import annotations

import pytest
import torch

from benchmark3dface.render import (
    MeshRenderer,
    pixel_barycentrics,
    pncc_code,
    pytorch3d_available,
    rasterize,
    render_labels,
    render_passes,
)
from benchmark3dface.render.testmesh import face_like_surface, grid_faces, project_pinhole


def _tilted_plane(side=9, dtype=torch.float64):
    """A tilted square plane (world mm) in front of the Deng camera, CCW seen from +z."""
    s = torch.linspace(-60, 60, side, dtype=dtype)
    y, x = torch.meshgrid(s.flip(0), s, indexing="ij")
    z = 0.4 * x - 0.2 * y
    return torch.stack([x, y, z], -1).reshape(-1, 3), grid_faces(side, side)


def test_rgb_mask_depth_normal_pncc_label_passes():
    world, faces = _tilted_plane()
    sv = project_pinhole(world)[None]
    n = world.shape[0]
    colors = torch.rand(n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    normal = torch.tensor([-0.4, 0.2, 1.0], dtype=torch.float64)
    normals = (normal / normal.norm()).expand(n, 3) * 2.0  # unnormalised on purpose
    labels = torch.arange(n) % 9 + 1
    bg = torch.full((1, 3, 224, 224), 0.25, dtype=torch.float64)
    out = render_passes(sv, faces, 224, ("rgb", "mask", "depth", "normal", "pncc", "label"),
                        vertex_colors=colors, vertex_normals=normals, pncc=pncc_code(world),
                        vertex_labels=labels, background=bg, depth_background=float("nan"))
    frags = out["fragments"]
    m = frags.mask[0]
    assert out["mask"].shape == (1, 1, 224, 224) and torch.equal(out["mask"][0, 0].bool(), m)
    assert 0.2 < m.double().mean() < 0.9
    # rgb: colours in range, background composited exactly
    rgb = out["rgb"][0]
    assert rgb.shape == (3, 224, 224)
    assert (rgb[:, ~m] == 0.25).all() and rgb[:, m].min() >= 0 and rgb[:, m].max() <= 1
    # depth: fragment depth inside, NaN outside, and consistent with the plane
    dep = out["depth"][0, 0]
    torch.testing.assert_close(dep[m], frags.depth[0][m])
    assert torch.isnan(dep[~m]).all()
    # normals: the plane normal everywhere (renormalised), zero outside
    nm = out["normal"][0]
    torch.testing.assert_close(nm[:, m].T, (normal / normal.norm()).expand(int(m.sum()), 3))
    assert (nm[:, ~m] == 0).all()
    # pncc of a plane: x code grows to the right, y code grows upward (v decreasing)
    pn = out["pncc"][0]
    assert pn[:, m].min() >= 0 and pn[:, m].max() <= 1
    row = m[112].nonzero().squeeze(1)
    assert (pn[0, 112, row].diff() > 0).all()
    col = m[:, 112].nonzero().squeeze(1)
    assert (pn[1, col, 112].diff() < 0).all()
    # labels in 1..9 inside, 0 outside
    lab = out["label"][0]
    assert lab.dtype == torch.long and (lab[~m] == 0).all() and lab[m].min() >= 1


def test_pncc_code_is_normalised_per_axis():
    v, _ = face_like_surface(31)
    code = pncc_code(v)
    torch.testing.assert_close(code.amin(0), torch.zeros(3))
    torch.testing.assert_close(code.amax(0), torch.ones(3))
    # affine per axis: order of x is preserved
    assert torch.equal(code[:, 0].argsort(), v[:, 0].argsort())


def test_label_map_takes_the_vertex_with_largest_barycentric():
    verts = torch.tensor([[[1.0, 1.0, 2.0], [31.0, 1.0, 2.0], [1.0, 31.0, 2.0]]])
    faces = torch.tensor([[0, 2, 1]])
    labels = torch.tensor([3, 5, 7])
    frags = rasterize(verts, faces, 32)
    lab = render_labels(pixel_barycentrics(verts, faces, frags), labels)
    assert int(lab[0, 2, 2]) == 3 and int(lab[0, 2, 27]) == 5 and int(lab[0, 27, 2]) == 7
    assert int(lab[0, 31, 31]) == 0
    # every covered pixel: the label of argmax of the (independently computed) fragment bary
    m = frags.mask[0]
    expect = labels[faces[0][frags.bary[0][m].argmax(-1)]]  # bary follows the face order
    assert torch.equal(lab[0][m], expect)
    # per-mesh labels (M, N)
    lab2 = render_labels(pixel_barycentrics(verts, faces, frags), labels[None] + 1)
    assert torch.equal(lab2[0][m], expect + 1)


def test_rgb_gradients_reach_colours_vertices_and_background():
    v, f = face_like_surface(41, dtype=torch.float64)
    world = v[None].clone().requires_grad_(True)
    colors = torch.rand(1, v.shape[0], 3, dtype=torch.float64).requires_grad_(True)
    bg = torch.rand(1, 3, 64, 64, dtype=torch.float64).requires_grad_(True)
    sv = project_pinhole(world, focal=1015 * 64 / 224, cx=32, cy=32)
    out = render_passes(sv, f, 64, ("rgb",), vertex_colors=colors, background=bg)
    out["rgb"].square().sum().backward()
    m = out["fragments"].mask
    assert world.grad.abs().sum() > 0 and colors.grad.abs().sum() > 0
    assert (bg.grad[:, :, m[0]] == 0).all() and (bg.grad[:, :, ~m[0]] != 0).all()


def test_mesh_renderer_module_and_pass_errors():
    world, faces = _tilted_plane(dtype=torch.float32)
    sv = project_pinhole(world)[None].repeat(2, 1, 1)
    r = MeshRenderer(faces, (224, 200), cull_backfaces=True)
    out = r(sv, ("mask", "depth"), mesh_to_image=torch.tensor([0, 0]))
    assert out["mask"].shape == (1, 1, 224, 200) and out["depth"].shape == (1, 1, 224, 200)
    assert r.rasterize(sv).pix_to_face.shape == (2, 224, 200)
    with pytest.raises(ValueError, match="needs the 'vertex_colors'"):
        r(sv, ("rgb",))
    with pytest.raises(ValueError, match="unknown render pass"):
        r(sv, ("albedo",))


@pytest.mark.skipif(pytorch3d_available(), reason="pytorch3d is installed")
def test_pytorch3d_backend_missing_gives_clear_error():
    world, faces = _tilted_plane(dtype=torch.float32)
    with pytest.raises(ImportError, match="optional pytorch3d"):
        rasterize(project_pinhole(world)[None], faces, 64, backend="pytorch3d")


@pytest.mark.skipif(not pytorch3d_available(),
                    reason="pytorch3d is an optional extra and is not installed")
def test_pytorch3d_backend_matches_torch_backend():
    v, f = face_like_surface(101)
    sv = project_pinhole(torch.stack([v, v + torch.tensor([30.0, 0.0, 100.0])]))
    kw = dict(mesh_to_image=torch.tensor([0, 0]), cull_backfaces=True)
    a = rasterize(sv, f, 224, **kw)
    b = rasterize(sv, f, 224, backend="pytorch3d", **kw)
    assert (a.pix_to_face == b.pix_to_face).float().mean() > 0.995
    both = a.mask & b.mask
    torch.testing.assert_close(a.depth[both], b.depth[both], rtol=1e-4, atol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_cuda_matches_cpu():
    v, f = face_like_surface(121)
    world = torch.stack([v, v + torch.tensor([20.0, -10.0, 50.0])])
    sv = project_pinhole(world)
    colors = torch.rand(2, v.shape[0], 3)
    cpu = render_passes(sv, f, 224, ("rgb", "depth"), vertex_colors=colors,
                        mesh_to_image=torch.tensor([0, 1]))
    svc = sv.cuda().requires_grad_(True)
    gpu = render_passes(svc, f.cuda(), 224, ("rgb", "depth"), vertex_colors=colors.cuda(),
                        mesh_to_image=torch.tensor([0, 1]).cuda())
    agree = (cpu["fragments"].pix_to_face == gpu["fragments"].pix_to_face.cpu()).float().mean()
    assert agree > 0.999
    both = cpu["fragments"].mask & gpu["fragments"].mask.cpu()
    torch.testing.assert_close(gpu["depth"].cpu()[:, 0][both], cpu["depth"][:, 0][both])
    gpu["rgb"].sum().backward()
    assert torch.isfinite(svc.grad).all() and svc.grad.abs().sum() > 0
