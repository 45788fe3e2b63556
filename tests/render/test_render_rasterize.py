"""Rasterizer: exact coverage, edge rule, z-buffer, multi-mesh images, culling, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark3dface.render import rasterize
from benchmark3dface.render.testmesh import grid_faces, project_pinhole


def _quad(x0, y0, x1, y1, z=5.0, dtype=torch.float64):
    """Axis-aligned square in screen space as two triangles sharing the diagonal."""
    v = torch.tensor([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], dtype=dtype)
    f = torch.tensor([[0, 3, 1], [1, 3, 2]])  # CCW seen by the viewer (negative uv area)
    return v, f


def _per_triangle_coverage(verts, faces, size):
    """(F, H, W) coverage of each triangle rasterized alone, with the same vertex ids."""
    return torch.stack([rasterize(verts[None], faces[k:k + 1], size).mask[0]
                        for k in range(faces.shape[0])])


def _centres_in(lo, hi, n):
    """Number of pixel centres c = i + 0.5 (i in [0, n)) with lo <= c < hi (top-left rule)."""
    c = np.arange(n) + 0.5
    return int(((c >= lo) & (c < hi)).sum())


@pytest.mark.parametrize("box", [(2, 3, 9, 7), (2.5, 3.5, 9.5, 7.5), (0.25, 1.7, 11.3, 8.9)])
def test_square_exact_coverage_no_double(box):
    h, w = 12, 14
    v, f = _quad(*box)
    per = _per_triangle_coverage(v, f, (h, w))
    total = per.sum(0)
    assert int(total.max()) <= 1, "a pixel centre is covered by both triangles of the square"
    x0, y0, x1, y1 = box
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    expected = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)  # top-left rule on a box
    assert torch.equal(total.bool(), expected)
    assert int(total.sum()) == _centres_in(x0, x1, w) * _centres_in(y0, y1, h)
    # the two-triangle mesh rasterized at once covers the same pixels
    assert torch.equal(rasterize(v[None], f, (h, w)).mask[0], expected)


def test_right_triangle_analytic_count():
    # vertices (1,1), (21,1), (1,11): centre (j+.5, i+.5) is inside iff j >= 1, i >= 1 and
    # (j - 0.5) / 20 + (i - 0.5) / 10 < 1, i.e. j <= 21 - 2 i: row i holds 21 - 2 i centres.
    v = torch.tensor([[[1.0, 1.0, 3.0], [21.0, 1.0, 3.0], [1.0, 11.0, 3.0]]])
    fr = rasterize(v, torch.tensor([[0, 1, 2]]), (16, 24))
    rows = fr.mask[0].sum(1)
    expected = torch.tensor([max(0, 21 - 2 * i) if i >= 1 else 0 for i in range(16)])
    assert torch.equal(rows, expected)
    assert int(fr.mask.sum()) == sum(21 - 2 * i for i in range(1, 11)) == 100


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_random_triangles_match_bruteforce(dtype):
    g = torch.Generator().manual_seed(0)
    h, w = 20, 24
    v = torch.rand(30, 3, 3, generator=g, dtype=torch.float64)
    v[..., 0] = v[..., 0] * 30 - 3
    v[..., 1] = v[..., 1] * 26 - 3
    v[..., 2] += 1.0
    fr = rasterize(v.to(dtype), torch.tensor([[0, 1, 2]]), (h, w))
    ys, xs = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    for k in range(v.shape[0]):
        p = v[k].numpy()
        e = [(p[b, 0] - p[a, 0]) * (ys - p[a, 1]) - (p[b, 1] - p[a, 1]) * (xs - p[a, 0])
             for a, b in ((1, 2), (2, 0), (0, 1))]
        inside = (np.stack(e) > 0).all(0) | (np.stack(e) < 0).all(0)
        margin = np.min(np.abs(np.stack(e)), 0) > 1e-3  # skip centres (numerically) on edges
        got = fr.mask[k].numpy()
        assert np.array_equal(got[margin], inside[margin]), f"triangle {k}"


@pytest.mark.parametrize("offset", [0.0, 0.5])
def test_grid_with_vertices_on_pixel_centres_tiles_exactly(offset):
    # a 5x4-cell grid whose vertices sit exactly on pixel centres (offset .5) or corners:
    # many centres lie on shared edges and vertices; each must be covered exactly once.
    rows, cols, cell = 5, 6, 2.0
    r, c = torch.meshgrid(torch.arange(rows, dtype=torch.float64),
                          torch.arange(cols, dtype=torch.float64), indexing="ij")
    x0, y0 = 1.0 + offset, 2.0 + offset
    v = torch.stack([x0 + c * cell, y0 + r * cell, 2.0 + 0 * r], -1).reshape(-1, 3)
    f = grid_faces(rows, cols)
    # grid_faces is CCW with y up; here rows go down the image (v down) -> fine for coverage
    h, w = 14, 15
    total = _per_triangle_coverage(v, f, (h, w)).sum(0)
    assert int(total.max()) <= 1
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    x1, y1 = x0 + (cols - 1) * cell, y0 + (rows - 1) * cell
    expected = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
    assert torch.equal(total.bool(), expected)


def test_fan_no_holes_no_double_coverage():
    # convex polygon fan with float32 irrational-ish vertices: shared edges must not leak.
    n = 11
    ang = torch.linspace(0, 2 * np.pi, n + 1, dtype=torch.float64)[:-1] + 0.123
    rad = 9.0 + torch.sin(5 * ang)
    ring = torch.stack([12.31 + rad * torch.cos(ang), 11.87 + rad * torch.sin(ang)], -1)
    centre = torch.tensor([[12.3, 11.9]], dtype=torch.float64)
    xy = torch.cat([centre, ring]).to(torch.float32)
    v = torch.cat([xy, torch.full((n + 1, 1), 4.0)], 1)
    f = torch.tensor([[0, 1 + (k + 1) % n, 1 + k] for k in range(n)])
    per = _per_triangle_coverage(v, f, (24, 25))
    total = per.sum(0)
    assert int(total.max()) <= 1
    # every centre strictly inside the (star-shaped) polygon is covered
    ys, xs = np.meshgrid(np.arange(24) + 0.5, np.arange(25) + 0.5, indexing="ij")
    p = np.stack([xs, ys], -1).astype(np.float64)
    c = xy[0].double().numpy()
    inside_any = np.zeros(xs.shape, bool)
    for k in range(n):
        a, b = xy[1 + k].double().numpy(), xy[1 + (k + 1) % n].double().numpy()
        e = [(q1[0] - q0[0]) * (p[..., 1] - q0[1]) - (q1[1] - q0[1]) * (p[..., 0] - q0[0])
             for q0, q1 in ((c, a), (a, b), (b, c))]
        e = np.stack(e)
        inside_any |= (e > 1e-4).all(0) | (e < -1e-4).all(0)
    assert total.numpy()[inside_any].min() == 1
    assert rasterize(v[None], f, (24, 25)).mask[0].sum() == total.sum()


def test_zbuffer_nearer_mesh_wins_and_mesh_index():
    v, f = _quad(2, 2, 10, 10, dtype=torch.float32)
    near, far = v.clone(), v.clone()
    near[:, 2], far[:, 2] = 3.0, 7.0
    far[:, :2] += 3.0  # partial overlap
    for order in ((near, far), (far, near)):
        verts = torch.stack(order)
        fr = rasterize(verts, f, 16, mesh_to_image=torch.tensor([0, 0]))
        assert fr.pix_to_face.shape == (1, 16, 16)
        near_idx = 0 if order[0] is near else 1
        mid = fr.mesh_index()[0, 6, 6]  # inside both squares
        assert int(mid) == near_idx
        assert float(fr.depth[0, 6, 6]) == pytest.approx(3.0)
        assert int(fr.mesh_index()[0, 11, 11]) == 1 - near_idx  # far square only
        assert float(fr.depth[0, 11, 11]) == pytest.approx(7.0)
        assert int(fr.pix_to_face[0, 0, 0]) == -1 and int(fr.mesh_index()[0, 0, 0]) == -1
        assert torch.isinf(fr.depth[0, 0, 0])
        fi = fr.face_index()[0, 6, 6]
        assert int(fr.pix_to_face[0, 6, 6]) == near_idx * 2 + int(fi)


def test_multiple_meshes_per_image_mapping():
    v, f = _quad(1, 1, 5, 5, dtype=torch.float32)
    m0, m1, m2 = v.clone(), v.clone(), v.clone()
    m1[:, 0] += 6
    m2[:, 1] += 6
    fr = rasterize(torch.stack([m0, m1, m2]), f, (12, 12), mesh_to_image=torch.tensor([0, 1, 0]))
    assert fr.pix_to_face.shape == (2, 12, 12)
    mi = fr.mesh_index()
    assert set(mi[0].unique().tolist()) == {-1, 0, 2}
    assert set(mi[1].unique().tolist()) == {-1, 1}
    assert int((mi[0] == 0).sum()) == int((mi[0] == 2).sum()) == int((mi[1] == 1).sum()) == 16
    # explicit num_images adds empty images
    fr3 = rasterize(torch.stack([m0, m1, m2]), f, (12, 12), mesh_to_image=torch.tensor([0, 1, 0]),
                    num_images=3)
    assert fr3.pix_to_face.shape == (3, 12, 12) and not fr3.mask[2].any()
    assert torch.equal(fr3.pix_to_face[:2], fr.pix_to_face)


def test_backface_culling_uses_viewer_ccw_as_front():
    world = torch.tensor([[-20.0, -20.0, 0.0], [20.0, -20.0, 0.0], [0.0, 20.0, 0.0]])
    sv = project_pinhole(world)  # CCW seen from the camera at +z: front-facing
    front = torch.tensor([[0, 1, 2]])
    back = torch.tensor([[0, 2, 1]])
    for faces, visible in ((front, True), (back, False)):
        assert rasterize(sv[None], faces, 224).mask.any()
        assert bool(rasterize(sv[None], faces, 224, cull_backfaces=True).mask.any()) == visible


def test_chunked_pairs_equal_single_pass():
    verts = torch.tensor([[[0.0, 0.0, 2.0], [40.0, 3.0, 3.0], [5.0, 37.0, 4.0], [38.0, 39.0, 2.5]]])
    f = torch.tensor([[0, 2, 1], [1, 2, 3]])
    a = rasterize(verts, f, 40)
    b = rasterize(verts, f, 40, max_pairs=97)
    assert torch.equal(a.pix_to_face, b.pix_to_face)
    assert torch.equal(a.depth, b.depth)


def test_orthographic_plane_depth_is_linear_and_allows_negative_depth():
    # plane depth = 0.3 u - 0.2 v - 4 (negative values are fine for weak perspective)
    def plane(x, y):
        return 0.3 * x - 0.2 * y - 4.0
    xy = torch.tensor([[1.0, 1.0], [30.0, 2.0], [3.0, 28.0]], dtype=torch.float64)
    v = torch.cat([xy, plane(xy[:, 0], xy[:, 1])[:, None]], 1)[None]
    fr = rasterize(v, torch.tensor([[0, 1, 2]]), 32, orthographic=True)
    ys, xs = torch.meshgrid(torch.arange(32.0) + 0.5, torch.arange(32.0) + 0.5, indexing="ij")
    m = fr.mask[0]
    assert m.sum() > 100
    torch.testing.assert_close(fr.depth[0][m], plane(xs.double(), ys.double())[m])
    # perspective rejects triangles behind the camera
    assert not rasterize(v, torch.tensor([[0, 1, 2]]), 32).mask.any()


def test_perspective_barycentrics_recover_world_points():
    # a tilted world triangle: perspective-correct barycentrics interpolate world xyz exactly
    world = torch.tensor([[-60.0, -50.0, -80.0], [70.0, -40.0, 60.0], [-10.0, 80.0, 0.0]],
                         dtype=torch.float64)
    sv = project_pinhole(world)
    fr = rasterize(sv[None], torch.tensor([[0, 1, 2]]), 224)
    m = fr.mask[0]
    pts = (fr.bary[0][m][:, :, None] * world[None]).sum(1)
    ys, xs = torch.meshgrid(torch.arange(224.0) + 0.5, torch.arange(224.0) + 0.5, indexing="ij")
    d = fr.depth[0][m]
    expect = torch.stack([(xs[m] - 112) * d / 1015, -(ys[m] - 112) * d / 1015, 1000 - d], -1)
    torch.testing.assert_close(pts, expect.double(), rtol=1e-9, atol=1e-7)
    assert torch.allclose(fr.bary[0][m].sum(-1), torch.ones(()).double())
    # affine (orthographic) barycentrics differ for this tilted triangle
    fo = rasterize(sv[None], torch.tensor([[0, 1, 2]]), 224, orthographic=True)
    assert (fo.bary[0][m] - fr.bary[0][m]).abs().max() > 1e-3


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        ({"verts": torch.full((1, 3, 3), float("nan"))}, "NaN"),
        ({"verts": torch.zeros(3, 3)}, "(M, N, 3)"),
        ({"faces": torch.tensor([[0, 1, 5]])}, "N=3"),
        ({"faces": torch.tensor([[0.0, 1.0, 2.0]])}, "int64"),
        ({"image_size": (0, 4)}, "positive"),
        ({"mesh_to_image": torch.tensor([0, 1])}, "mesh_to_image"),
        ({"backend": "opengl"}, "unknown renderer backend"),
    ],
)
def test_bad_input_raises_clear_errors(kwargs, msg):
    args = {"verts": torch.rand(1, 3, 3) + 1, "faces": torch.tensor([[0, 1, 2]]), "image_size": 8}
    args.update(kwargs)
    with pytest.raises(ValueError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        rasterize(args.pop("verts"), args.pop("faces"), args.pop("image_size"), **args)
