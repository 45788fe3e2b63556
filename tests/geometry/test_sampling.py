"""Mesh down/up-sampling (geometry/sampling.py): selection down-sampling, barycentric
up-sampling exact on kept vertices and linear-precise on a plane, Chebyshev-ready Laplacian."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from benchmark3dface.geometry.sampling import (
    adjacency,
    barycentric_upsampling,
    build_hierarchy,
    decimate,
    scaled_laplacian,
    sparse_matrix,
)


def grid_mesh(n: int = 25, bump: float = 0.0):
    """An n x n grid on [0, 1]^2 (z = bump * smooth function), two triangles per cell."""
    xs, ys = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n))
    z = bump * np.sin(3 * xs) * np.cos(2 * ys)
    v = np.stack([xs.ravel(), ys.ravel(), z.ravel()], 1)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    t = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    return v, t


def test_decimate_keeps_a_subset_of_about_the_target_size():
    v, t = grid_mesh(25, bump=0.2)
    keep, tri = decimate(v, t, 150)
    assert len(np.unique(keep)) == len(keep) and keep.min() >= 0 and keep.max() < len(v)
    assert 100 <= len(keep) <= 200
    assert tri.max() < len(keep) and (tri[:, 0] != tri[:, 1]).all() and (tri[:, 1] != tri[:, 2]).all()


def test_upsampling_exact_on_kept_vertices_and_convex_weights():
    v, t = grid_mesh(25, bump=0.2)
    h = build_hierarchy(v, t, (4,))
    d, u, keep = h.down[0], h.up[0], h.keep[0]
    assert d.shape == (len(keep), len(v)) and u.shape == (len(v), len(keep))
    x = np.random.default_rng(0).normal(size=(len(v), 5)).astype(np.float32)
    np.testing.assert_array_equal(d @ x, x[keep])                    # D selects the kept vertices
    np.testing.assert_allclose((u @ (d @ x))[keep], x[keep], atol=0)  # U D is exact on them
    uc = u.tocoo()
    assert (uc.data >= 0).all() and np.allclose(np.asarray(u.sum(1)).ravel(), 1.0, atol=1e-5)
    assert np.diff(u.indptr).max() <= 3  # at most one triangle's three corners per vertex


def test_barycentric_upsampling_reproduces_linear_functions_on_a_plane():
    v, t = grid_mesh(21)
    keep, ct = decimate(v, t, 80)
    u = barycentric_upsampling(v, v[keep], ct, keep)
    f = 2.0 * v[:, 0] - 3.0 * v[:, 1] + 0.5  # linear: barycentric interpolation is exact inside
    # the coarse mesh's hull (the decimated grid keeps its four corners)
    got = u @ f[keep]
    assert np.abs(got - f).max() < 1e-4


def test_scaled_laplacian_matches_dense_definition_and_spectrum():
    v, t = grid_mesh(8)
    a = adjacency(t, len(v)).toarray().astype(np.float64)
    assert (a == a.T).all() and np.diag(a).sum() == 0
    deg = a.sum(1)
    lap = np.eye(len(v)) - a / np.sqrt(np.outer(deg, deg))
    want = lap - np.eye(len(v))  # lmax = 2
    got = scaled_laplacian(sp.csr_matrix(a)).toarray()
    np.testing.assert_allclose(got, want, atol=1e-6)
    ev = np.linalg.eigvalsh(got)
    assert ev.min() >= -1 - 1e-5 and ev.max() <= 1 + 1e-5
    dense = sparse_matrix(sp.csr_matrix(got)).to_dense().numpy()
    np.testing.assert_allclose(dense, got, atol=1e-7)


def test_bad_mesh_is_one_clear_error():
    v, t = grid_mesh(5)
    with pytest.raises(ValueError, match="triangles reference vertices"):
        decimate(v, t + 100, 10)
    with pytest.raises(ValueError, match="target_vertices"):
        decimate(v, t, len(v))
