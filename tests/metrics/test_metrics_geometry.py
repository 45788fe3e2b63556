"""Geometry of the protocols: Umeyama, closest points on triangles, exact cached queries."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from benchmark3dface.metrics.coherent_tri import CoherentTriangleQuery
from benchmark3dface.metrics.geometry import (
    closest_point_on_triangle,
    now_crop_sphere,
    segment_umeyama,
    similarity_from_landmarks,
    vertex_normals,
)
from benchmark3dface.metrics.reference import closest_on_triangles_np, umeyama_np, vertex_normals_np
from benchmark3dface.metrics.spatial import (ClosestQuery, CoherentVertexQuery, Primitives,
                                              closest_on_triangles_soa)
from benchmark3dface.metrics.synthetic import face_surface, random_similarity, sample_surface


def _brute_triangle(x: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Closest distance by dense sampling of the triangle (an independent, approximate check)."""
    u = np.linspace(0, 1, 121)
    uu, vv = np.meshgrid(u, u)
    keep = uu + vv <= 1
    w = np.stack([1 - uu[keep] - vv[keep], uu[keep], vv[keep]], 1)
    pts = w @ tri
    return np.linalg.norm(pts[None] - x[:, None], axis=-1).min(1)


def test_closest_point_on_triangle_matches_sampling():
    rng = np.random.default_rng(0)
    for _ in range(20):
        tri = rng.normal(size=(3, 3)) * 5
        x = rng.normal(size=(50, 3)) * 8
        t = torch.from_numpy(tri)
        p, d2 = closest_point_on_triangle(torch.from_numpy(x), t[0], t[1], t[2])
        brute = _brute_triangle(x, tri)
        d = np.sqrt(d2.numpy())
        assert (d <= brute + 1e-9).all()  # never farther than any sampled point
        assert np.abs(d - brute).max() < 0.1  # sampling resolution
        assert np.allclose(np.linalg.norm(p.numpy() - x, axis=1), d)


def test_three_closest_point_implementations_agree():
    rng = np.random.default_rng(1)
    a, b, c = (rng.normal(size=(500, 3)) * 3 for _ in range(3))
    x = rng.normal(size=(500, 3)) * 5
    p_np = closest_on_triangles_np(x, a, b, c)
    p_t, _ = closest_point_on_triangle(*(torch.from_numpy(v) for v in (x, a, b, c)))
    ta, tb, tc, tx = (torch.from_numpy(v) for v in (a, b, c, x))
    ab, ac = tb - ta, tc - ta
    vw, d2 = closest_on_triangles_soa(tuple(tx.T), tuple(ta.T), tuple(ab.T), tuple(ac.T), (ab * ab).sum(1),
                                      (ab * ac).sum(1), (ac * ac).sum(1))
    p_soa = ta + vw[:, :1] * ab + vw[:, 1:] * ac
    assert np.abs(p_np - p_t.numpy()).max() < 1e-9
    assert np.abs(p_np - p_soa.numpy()).max() < 1e-9
    assert np.allclose(d2.numpy(), ((x - p_np) ** 2).sum(1))


def test_degenerate_triangle_reduces_to_segment():
    a = torch.tensor([0.0, 0, 0], dtype=torch.float64)
    b = torch.tensor([2.0, 0, 0], dtype=torch.float64)
    x = torch.tensor([[1.0, 1.0, 0.0], [3.0, 0.0, 0.0]], dtype=torch.float64)
    _p, d2 = closest_point_on_triangle(x, a, b, b)  # zero area
    assert torch.allclose(d2, torch.tensor([1.0, 1.0], dtype=torch.float64))
    _vw, d2s = closest_on_triangles_soa(tuple(x.T), tuple(a[:, None].expand(3, 2)), tuple((b - a)[:, None].expand(3, 2)),
                                       tuple((b - a)[:, None].expand(3, 2)), torch.full((2,), 4.0, dtype=torch.float64),
                                       torch.full((2,), 4.0, dtype=torch.float64),
                                       torch.full((2,), 4.0, dtype=torch.float64))
    assert torch.allclose(d2s, torch.tensor([1.0, 1.0], dtype=torch.float64))


def test_segment_umeyama_recovers_similarities():
    rng = np.random.default_rng(2)
    srcs, dsts, truth = [], [], []
    for i in range(4):
        s, r, t = random_similarity(rng)
        src = torch.from_numpy(rng.normal(size=(40 + i, 3)) * 20)
        srcs.append(src)
        dsts.append(s * src @ r.T + t)
        truth.append((s, r, t))
    seg = torch.cat([torch.full((len(x),), i) for i, x in enumerate(srcs)])
    s, r, t, _w = segment_umeyama(torch.cat(srcs), torch.cat(dsts), torch.ones(len(seg), dtype=torch.float64), seg, 4)
    for i, (s0, r0, t0) in enumerate(truth):
        assert float(s[i]) == pytest.approx(float(s0), rel=1e-10)
        assert torch.allclose(r[i], r0, atol=1e-10) and torch.allclose(t[i], t0, atol=1e-8)
    # numpy reference and padded landmark version agree
    s1, _r1, _t1 = umeyama_np(srcs[0].numpy(), dsts[0].numpy())
    assert s1 == pytest.approx(float(s[0]), rel=1e-10)
    sl, rl, _tl = similarity_from_landmarks(srcs[0][None], dsts[0][None], with_scale=False)
    assert float(sl[0]) == 1.0 and torch.allclose(torch.det(rl[0]), torch.tensor(1.0, dtype=torch.float64))


def test_vertex_normals_torch_and_numpy_agree_and_point_outward():
    f = face_surface(20)
    n_t = vertex_normals(f.vertices, f.triangles)
    n_np = vertex_normals_np(f.vertices.numpy(), f.triangles.numpy())
    assert np.abs(n_t.numpy() - n_np).max() < 1e-12
    centre = f.vertices.shape[0] // 2 + 10
    assert float(n_t[centre, 2]) > 0.5  # the face looks toward +z


def test_now_crop_sphere_formula():
    lm = torch.zeros(7, 3, dtype=torch.float64)
    lm[0], lm[3] = torch.tensor([-45.0, 0, 0]), torch.tensor([45.0, 0, 0])  # outer eye corners
    lm[1], lm[2] = torch.tensor([-15.0, 0, 0]), torch.tensor([15.0, 0, 0])  # inner: bridge at 0
    lm[4] = torch.tensor([0.0, -50.0, 0])  # nose bottom
    c, r = now_crop_sphere(lm)
    assert torch.allclose(c, torch.tensor([0.0, -35.0, 0], dtype=torch.float64))
    assert float(r) == pytest.approx(1.4 * (90 + 50) / 2)


def _closest_brute(x: np.ndarray, v: torch.Tensor, f: torch.Tensor) -> np.ndarray:
    corners = [v[f[:, k]].numpy() for k in range(3)]
    n, m = len(x), len(f)
    xr = np.repeat(x, m, axis=0)  # every (point, triangle) pair
    pj = closest_on_triangles_np(xr, *(np.tile(t, (n, 1)) for t in corners))
    return np.linalg.norm(xr - pj, axis=1).reshape(n, m).min(1)


@pytest.mark.parametrize("kind", ["vertex", "triangle", "vertex-kdtree", "triangle-numba"])
def test_closest_query_is_exact_while_rows_move(kind):
    """Cached queries over several pairs agree with a KD-tree / exhaustive search at every step,
    including rows far from the surface and rows that jump."""
    rng = np.random.default_rng(3)
    meshes = [face_surface(14, seed=s) for s in range(3)]
    verts = [m.vertices for m in meshes]
    tris = [m.triangles for m in meshes]
    tri = kind.startswith("triangle")
    prims = Primitives.from_triangles(verts, tris) if tri else Primitives.from_vertices(verts)
    xs = []
    for m in meshes:
        x = sample_surface(m.vertices, m.triangles, 300, rng) + torch.from_numpy(rng.normal(size=(300, 3)))
        x[:10] += torch.from_numpy(rng.normal(size=(10, 3))) * 30  # far rows
        xs.append(x)
    seg = torch.cat([torch.full((len(x),), i) for i, x in enumerate(xs)])
    x = torch.cat(xs)
    q = {"vertex-kdtree": CoherentVertexQuery, "triangle-numba": CoherentTriangleQuery}.get(kind, ClosestQuery)(
        prims, len(x))
    drift = torch.from_numpy(rng.normal(size=(len(x), 3))) * 0.05
    for step in range(8):
        xi = x + step * drift + (3.0 if step == 5 else 0.0)
        d, p, prim = q.query(None, xi, seg)
        for b, m in enumerate(meshes):
            sel = seg == b
            if not tri:
                ref, _ = cKDTree(m.vertices.numpy()).query(xi[sel].numpy())
            else:
                ref = _closest_brute(xi[sel].numpy(), m.vertices, m.triangles)
            assert np.abs(d[sel].numpy() - ref).max() < 1e-9, (step, b)
        assert torch.allclose((p - xi).norm(dim=-1), d)
        assert (prims.seg[prim] == seg).all()
    searched = q.stats["searched" if kind == "vertex-kdtree" else "rebuilt"]
    assert searched < q.stats["queries"]  # the cache was used


def test_coherent_vertex_query_subsets_tiny_meshes_and_bad_input():
    """Row subsets (converged pairs drop out), meshes with fewer than k + 1 vertices, and the
    errors for triangles / k < 1."""
    rng = np.random.default_rng(5)
    verts = [torch.from_numpy(rng.normal(size=(n, 3))) * 10 for n in (2, 40)]
    prims = Primitives.from_vertices(verts)
    x = torch.from_numpy(rng.normal(size=(30, 3))) * 10
    seg = torch.tensor([0] * 10 + [1] * 20)
    q = CoherentVertexQuery(prims, len(x), k=3)  # pair 0 has only 2 vertices
    for step in range(4):
        rows = None if step % 2 == 0 else torch.arange(10, 30)  # pair 0 "converged" on odd steps
        xi = x + 0.3 * step
        xs, ss = (xi, seg) if rows is None else (xi[rows], seg[rows])
        d, p, prim = q.query(rows, xs, ss)
        for b, v in enumerate(verts):
            sel = ss == b
            if sel.any():
                ref, j = cKDTree(v.numpy()).query(xs[sel].numpy())
                assert np.abs(d[sel].numpy() - ref).max() < 1e-9
                assert (prims.index[prim[sel]].numpy() == j).all()
        assert torch.allclose((p - xs).norm(dim=-1), d)
    with pytest.raises(ValueError, match="closest-vertex"):
        CoherentVertexQuery(Primitives.from_triangles([verts[1]], [torch.tensor([[0, 1, 2]])]), 1)
    with pytest.raises(ValueError, match="k must be"):
        CoherentVertexQuery(prims, 1, k=0)


def test_coherent_triangle_query_subsets_lists_and_bad_input():
    """Row subsets (converged pairs drop out), a one-triangle mesh, a pair with more tied
    triangles than the list holds (k = 2 on a fan of 8 around the query), far rows, the gradient
    bound on rows that move a little every call, and the errors for vertices / k < 1."""
    rng = np.random.default_rng(8)
    fan_v = torch.tensor([[0.0, 0.0, 0.0]] + [[10 * math.cos(a), 10 * math.sin(a), 0.0]
                                              for a in np.linspace(0, 2 * math.pi, 9)[:-1]], dtype=torch.float64)
    fan_f = torch.tensor([[0, 1 + i, 1 + (i + 1) % 8] for i in range(8)])
    one_v = torch.tensor([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0], [0.0, 5.0, 0.0]], dtype=torch.float64)
    surf = face_surface(10, seed=1)
    verts, tris = [one_v, fan_v, surf.vertices], [torch.tensor([[0, 1, 2]]), fan_f, surf.triangles]
    prims = Primitives.from_triangles(verts, tris)
    x = torch.cat([torch.from_numpy(rng.normal(size=(10, 3))) * 8,
                   torch.tensor([[0.0, 0.0, 2.0]] * 5, dtype=torch.float64)  # above the fan's centre: 8-way tie
                   + torch.from_numpy(rng.normal(size=(5, 3))) * 1e-3,
                   surf.vertices[::7] + torch.from_numpy(rng.normal(size=(len(surf.vertices[::7]), 3))),
                   torch.tensor([[300.0, 0.0, 0.0]], dtype=torch.float64)])  # far from its mesh
    seg = torch.tensor([0] * 10 + [1] * 5 + [2] * (len(x) - 15))
    q = CoherentTriangleQuery(prims, len(x), k=2)
    step_dir = torch.from_numpy(rng.normal(size=(len(x), 3))) * 0.02
    for step in range(6):
        rows = None if step % 2 == 0 else torch.arange(10, len(x))  # pair 0 "converged" on odd steps
        xi = x + step * step_dir
        xs, ss = (xi, seg) if rows is None else (xi[rows], seg[rows])
        d, p, prim = q.query(rows, xs, ss)
        for b in range(0 if rows is None else 1, 3):
            sel = ss == b
            ref = _closest_brute(xs[sel].numpy(), verts[b], tris[b])
            assert np.abs(d[sel].numpy() - ref).max() < 1e-9, (step, b)
        assert torch.allclose((p - xs).norm(dim=-1), d)
        assert (prims.seg[prim] == ss).all()
    assert q.stats["rebuilt"] < q.stats["queries"]
    with pytest.raises(ValueError, match="closest-point-on-triangle"):
        CoherentTriangleQuery(Primitives.from_vertices([one_v]), 1)
    with pytest.raises(ValueError, match="k must be"):
        CoherentTriangleQuery(prims, 1, k=0)
