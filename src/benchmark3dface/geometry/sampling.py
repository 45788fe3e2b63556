"""Mesh down-/up-sampling hierarchies for graph-convolution decoders (COMA, Ranjan et al. 2018;
used by Gao et al.'s GCN shape decoder).

- :func:`decimate`: quadric-error decimation (open3d's ``simplify_quadric_decimation``) whose
  output vertices are snapped to a *subset* of the input vertices, so that down-sampling is a
  selection ``D`` (row ``i`` picks kept vertex ``keep[i]``).
- :func:`barycentric_upsampling`: ``U`` ``(N, M)`` maps the coarse mesh back to the fine one:
  each fine vertex is the barycentric combination of the closest coarse triangle's corners
  (kept vertices map to themselves exactly, ``U @ D`` is the identity on them).
- :func:`build_hierarchy`: the chain of levels ``N_0 > N_1 > ...`` with the adjacency of every
  level; :func:`sparse_matrix` converts to torch.

All matrices are ``scipy.sparse.csr_matrix`` (float32); vertices in any unit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor


def _check_mesh(vertices: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(vertices, dtype=np.float64)
    t = np.asarray(triangles, dtype=np.int64)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices: expected (N, 3), got {v.shape}")
    if t.ndim != 2 or t.shape[1] != 3:
        raise ValueError(f"triangles: expected (F, 3), got {t.shape}")
    if t.size and (t.min() < 0 or t.max() >= len(v)):
        raise ValueError(f"triangles reference vertices outside [0, {len(v)})")
    return v, t


def adjacency(triangles: np.ndarray, num_vertices: int) -> sp.csr_matrix:
    """Symmetric 0/1 vertex adjacency ``(N, N)`` of a triangle mesh (no self loops)."""
    t = np.asarray(triangles, dtype=np.int64)
    i = np.concatenate([t[:, 0], t[:, 1], t[:, 2], t[:, 1], t[:, 2], t[:, 0]])
    j = np.concatenate([t[:, 1], t[:, 2], t[:, 0], t[:, 0], t[:, 1], t[:, 2]])
    a = sp.coo_matrix((np.ones(len(i), np.float32), (i, j)), shape=(num_vertices, num_vertices)).tocsr()
    a.data[:] = 1.0
    a.setdiag(0)
    a.eliminate_zeros()
    return a


def decimate(vertices: np.ndarray, triangles: np.ndarray, target_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric decimation to about ``target_vertices`` vertices, restricted to input vertices.

    open3d decimates to ``~2 * target_vertices`` triangles; each output vertex is then snapped
    to its nearest input vertex (duplicates merged, degenerate triangles dropped). Returns
    ``(keep (M,) sorted unique input indices, triangles (G, 3) in 0..M-1)``.
    """
    import open3d as o3d
    from scipy.spatial import cKDTree

    v, t = _check_mesh(vertices, triangles)
    if not 3 <= target_vertices < len(v):
        raise ValueError(f"target_vertices must be in [3, {len(v)}), got {target_vertices}")
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(v), o3d.utility.Vector3iVector(t.astype(np.int32)))
    simple = mesh.simplify_quadric_decimation(target_number_of_triangles=max(1, 2 * int(target_vertices)))
    sv = np.asarray(simple.vertices)
    st = np.asarray(simple.triangles, dtype=np.int64)
    _, nearest = cKDTree(v).query(sv)
    keep, remap = np.unique(nearest, return_inverse=True)
    tri = remap[st]
    ok = (tri[:, 0] != tri[:, 1]) & (tri[:, 1] != tri[:, 2]) & (tri[:, 0] != tri[:, 2])
    # keep the snapped triangles as open3d oriented them (first occurrence of each vertex triple)
    tri_o = tri[ok]
    _, first = np.unique(np.sort(tri_o, axis=1), axis=0, return_index=True)
    tri = tri_o[np.sort(first)]
    return keep.astype(np.int64), tri.astype(np.int64)


def selection_matrix(keep: np.ndarray, num_vertices: int) -> sp.csr_matrix:
    """Down-sampling ``D`` ``(M, N)``: ``(D x)[i] = x[keep[i]]``."""
    keep = np.asarray(keep, dtype=np.int64)
    m = len(keep)
    return sp.csr_matrix((np.ones(m, np.float32), (np.arange(m), keep)), shape=(m, num_vertices))


def barycentric_upsampling(fine_vertices: np.ndarray, coarse_vertices: np.ndarray,
                           coarse_triangles: np.ndarray, keep: np.ndarray | None = None) -> sp.csr_matrix:
    """Up-sampling ``U`` ``(N, M)``: fine vertex ``n`` = barycentric combination of the corners
    of the coarse triangle closest to it (its projection onto that triangle).

    ``keep`` (the coarse vertices' indices among the fine ones): those rows are set to exactly
    one-hot on their coarse vertex (so ``(U D x)[keep] == x[keep]``).
    """
    import open3d as o3d

    fv = np.asarray(fine_vertices, dtype=np.float64)
    cv, ct = _check_mesh(coarse_vertices, coarse_triangles)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(cv.astype(np.float32)), o3d.core.Tensor(ct.astype(np.uint32)))
    ans = scene.compute_closest_points(o3d.core.Tensor(fv.astype(np.float32)))
    prim = ans["primitive_ids"].numpy().astype(np.int64)
    uv = ans["primitive_uvs"].numpy().astype(np.float64)
    # open3d: point = (1 - u - v) * p0 + u * p1 + v * p2
    w = np.stack([1.0 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], 1).clip(0.0, 1.0)
    w = w / w.sum(1, keepdims=True)
    cols = ct[prim]
    n, m = len(fv), len(cv)
    rows = np.repeat(np.arange(n), 3)
    u = sp.coo_matrix((w.reshape(-1).astype(np.float32), (rows, cols.reshape(-1))), shape=(n, m)).tocsr()
    if keep is not None:
        keep = np.asarray(keep, dtype=np.int64)
        u = u.tolil()
        for i, k in enumerate(keep):
            u.rows[k] = [i]
            u.data[k] = [1.0]
        u = u.tocsr()
    u.eliminate_zeros()
    return u


@dataclass
class MeshHierarchy:
    """Levels ``0..L`` (0 = the input mesh): ``adjacency[l]`` ``(N_l, N_l)``, ``down[l]``
    ``(N_{l+1}, N_l)``, ``up[l]`` ``(N_l, N_{l+1})``, ``keep[l]`` (indices of level ``l+1``'s
    vertices in level ``l``) and ``triangles[l]``."""

    num_vertices: list[int]
    adjacency: list[sp.csr_matrix]
    down: list[sp.csr_matrix]
    up: list[sp.csr_matrix]
    keep: list[np.ndarray]
    triangles: list[np.ndarray]


def build_hierarchy(vertices: np.ndarray, triangles: np.ndarray, factors: list[int] | tuple[int, ...]) -> MeshHierarchy:
    """Decimate by each factor in turn (COMA: ``(4, 4, 4, 4)``); factor ``f`` keeps about
    ``N / f`` vertices."""
    v, t = _check_mesh(vertices, triangles)
    nums, adjs, downs, ups, keeps, tris = [len(v)], [adjacency(t, len(v))], [], [], [], [t]
    for f in factors:
        if int(f) < 1:
            raise ValueError(f"down-sampling factors must be >= 1, got {f}")
        keep, ct = decimate(v, t, max(3, int(np.ceil(len(v) / int(f)))))
        cv = v[keep]
        downs.append(selection_matrix(keep, len(v)))
        ups.append(barycentric_upsampling(v, cv, ct, keep))
        keeps.append(keep)
        v, t = cv, ct
        nums.append(len(v))
        adjs.append(adjacency(t, len(v)))
        tris.append(t)
    return MeshHierarchy(nums, adjs, downs, ups, keeps, tris)


def scaled_laplacian(adj: sp.csr_matrix, lmax: float | None = 2.0) -> sp.csr_matrix:
    """Chebyshev-ready ``L~ = 2 L / lmax - I`` of the normalised Laplacian
    ``L = I - D^-1/2 A D^-1/2`` (eigenvalues in [0, 2]; ``lmax=None`` computes the largest
    eigenvalue with scipy, as COMA does). Isolated vertices get ``L_ii = 0``."""
    a = sp.csr_matrix(adj, dtype=np.float64)
    n = a.shape[0]
    deg = np.asarray(a.sum(1)).reshape(-1)
    dinv = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1e-12)), 0.0)
    lap = sp.diags((deg > 0).astype(np.float64)) - sp.diags(dinv) @ a @ sp.diags(dinv)
    if lmax is None:
        from scipy.sparse.linalg import eigsh

        lmax = float(eigsh(lap, k=1, which="LM", return_eigenvectors=False)[0])
    return sp.csr_matrix((2.0 / lmax) * lap - sp.identity(n), dtype=np.float32)


def sparse_matrix(m: sp.spmatrix) -> Tensor:
    """scipy sparse -> coalesced torch sparse COO float32."""
    c = sp.coo_matrix(m)
    idx = torch.from_numpy(np.vstack([c.row, c.col]).astype(np.int64))
    return torch.sparse_coo_tensor(idx, torch.from_numpy(c.data.astype(np.float32)), c.shape,
                                   check_invariants=False).coalesce()


__all__ = ["MeshHierarchy", "adjacency", "barycentric_upsampling", "build_hierarchy", "decimate",
           "scaled_laplacian", "selection_matrix", "sparse_matrix"]
