"""Exact closest point on the triangles of many meshes for moving query points, compiled with
numba (CPU): the NoW protocol's search on the CPU.

Same contract as :class:`~.spatial.ClosestQuery` (``query(rows, x, seg) -> (dist, point,
prim)``), same exactness argument (a Verlet list), but the whole per-iteration loop -- the
certificate test, the exact point-triangle evaluations and the rebuilds -- runs row by row in
compiled code, so a row costs a few tens of nanoseconds per ICP iteration instead of a few
dozen whole-array torch operations.

A row (re)built at x0 keeps the ``k`` triangles nearest to x0 by exact distance d_j(x0),
sorted, as long as d_j(x0) <= D0 + 2 rho (D0 the closest distance at x0). Every triangle left
out is at least D0 + 2 rho' away from x0, rho' = rho or, when the list is full, half the gap
from D0 to the first triangle left out. While the row stays within rho' of x0 (delta =
|x - x0|), its closest triangle is in the list (it is within D0 + 2 delta of x0), and since
d_j(x) >= d_j(x0) - delta the scan of the sorted list stops at the first candidate with
d_j(x0) - delta >= the best distance found so far. The distance to a triangle is convex in x,
so also d_j(x) >= d_j(x0) + g_j . (x - x0), g_j the unit vector from the closest point on
triangle j to x0 (kept per candidate): a candidate is evaluated only when both bounds leave it
a chance, which skips most near-ties. Rows that move farther than rho' are rebuilt by an exact
ring search of a uniform grid of triangle centroids (|x - c| - r lower-bounds the distance to a
triangle of centroid c and largest centroid-to-corner distance r).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

from .spatial import Primitives

@njit(cache=True, inline="always")
def _closest(px, py, pz, ax, ay, az, bx, by, bz, cx, cy, cz, abab, abac, acac):
    """Closest point of the triangle (a, a + ab, a + ac) to p: (squared distance, v, w) with the
    point a + v ab + w ac (Ericson's Voronoi-region tests, as ``geometry.closest_on_triangles_soa``)."""
    apx, apy, apz = px - ax, py - ay, pz - az
    d1 = bx * apx + by * apy + bz * apz
    d2 = cx * apx + cy * apy + cz * apz
    d3, d4 = d1 - abab, d2 - abac
    d5, d6 = d1 - abac, d2 - acac
    if d1 <= 0.0 and d2 <= 0.0:
        v, w = 0.0, 0.0
    elif d3 >= 0.0 and d4 <= d3:
        v, w = 1.0, 0.0
    else:
        vc = d1 * d4 - d3 * d2
        if vc <= 0.0 and d1 >= 0.0 and d3 <= 0.0:
            dd = d1 - d3
            v, w = (d1 / dd if dd != 0.0 else d1), 0.0
        elif d6 >= 0.0 and d5 <= d6:
            v, w = 0.0, 1.0
        else:
            vb = d5 * d2 - d1 * d6
            if vb <= 0.0 and d2 >= 0.0 and d6 <= 0.0:
                dd = d2 - d6
                v, w = 0.0, (d2 / dd if dd != 0.0 else d2)
            else:
                va = d3 * d6 - d5 * d4
                e1, e2 = d4 - d3, d5 - d6
                if va <= 0.0 and e1 >= 0.0 and e2 >= 0.0:
                    e = e1 + e2
                    t = e1 / e if e != 0.0 else e1
                    v, w = 1.0 - t, t
                else:
                    den = va + vb + vc
                    inv = 1.0 / den if den != 0.0 else 1.0
                    v, w = vb * inv, vc * inv
    rx = apx - v * bx - w * cx
    ry = apy - v * by - w * cy
    rz = apz - v * bz - w * cz
    return rx * rx + ry * ry + rz * rz, v, w


@njit(cache=True)
def _eval(p, tri, geo):
    """(distance, v, w) from point p (3,) to flat triangle ``tri``; geo (M, 12) rows
    a, ab, ac, (abab, abac, acac)."""
    g = geo[tri]
    d2, v, w = _closest(p[0], p[1], p[2], g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10], g[11])
    return math.sqrt(max(d2, 0.0)), v, w


@njit(cache=True)
def _build(p, b, rho, limit0, k, geo, cen, rad, origin, dims, cell, rmax, cstart, cbase, ctris, out_ids, out_d, out_vw):
    """Exact ring search of pair b's grid around p: fills out_ids / out_d / out_vw (k + 1 slots,
    sorted by distance; -1 / inf when unused) with the nearest triangles within
    min(D0 + 2 rho, the (k+1)-th distance); ``limit0`` >= D0 + 2 rho is a known bound to prune
    with from the start (inf if none). Returns (number kept (<= k), the row's cache radius,
    triangles evaluated)."""
    for j in range(k + 1):
        out_ids[j] = -1
        out_d[j] = np.inf
    h = cell[b]
    nx, ny, nz = dims[b, 0], dims[b, 1], dims[b, 2]
    if nx == 0:
        return 0, np.inf, 0
    ix = int(math.floor((p[0] - origin[b, 0]) / h))
    iy = int(math.floor((p[1] - origin[b, 1]) / h))
    iz = int(math.floor((p[2] - origin[b, 2]) / h))
    # Chebyshev distance (in cells) from p's cell to the grid's box, and the farthest ring
    smin = max(0, max(max(-ix, ix - (nx - 1)), max(max(-iy, iy - (ny - 1)), max(-iz, iz - (nz - 1)))))
    smax = max(max(max(ix, nx - 1 - ix), max(iy, ny - 1 - iy)), max(iz, nz - 1 - iz))
    limit = limit0
    n_eval = 0
    base = cbase[b]
    s = smin
    while s <= smax:
        # every centroid in ring s is >= (s - 1) h from p (p lies inside its own cell)
        if (s - 1) * h - rmax[b] > limit:
            break
        x0, x1 = max(ix - s, 0), min(ix + s, nx - 1)
        y0, y1 = max(iy - s, 0), min(iy + s, ny - 1)
        for cx in range(x0, x1 + 1):
            edge_x = cx == ix - s or cx == ix + s
            for cy in range(y0, y1 + 1):
                if edge_x or cy == iy - s or cy == iy + s:
                    z_lo, z_hi, z_step = max(iz - s, 0), min(iz + s, nz - 1), 1
                else:  # inside the ring's x / y extent: only its two z faces
                    z_lo, z_hi, z_step = iz - s, iz + s, 2 * s
                cz = z_lo
                while cz <= z_hi:
                    if 0 <= cz < nz:
                        c = base + (cx * ny + cy) * nz + cz
                        for q in range(cstart[c], cstart[c + 1]):
                            t = ctris[q]
                            dx = p[0] - cen[t, 0]
                            dy = p[1] - cen[t, 1]
                            dz = p[2] - cen[t, 2]
                            if math.sqrt(dx * dx + dy * dy + dz * dz) - rad[t] > limit:
                                continue
                            d, v, w = _eval(p, t, geo)
                            n_eval += 1
                            if d >= out_d[k]:
                                continue
                            j = k
                            while j > 0 and out_d[j - 1] > d:
                                out_d[j] = out_d[j - 1]
                                out_ids[j] = out_ids[j - 1]
                                out_vw[j, 0] = out_vw[j - 1, 0]
                                out_vw[j, 1] = out_vw[j - 1, 1]
                                j -= 1
                            out_d[j] = d
                            out_ids[j] = t
                            out_vw[j, 0] = v
                            out_vw[j, 1] = w
                            limit = min(limit, min(out_d[0] + 2.0 * rho, out_d[k]))
                    cz += z_step
        s += 1
    d0 = out_d[0]
    n = 0
    while n < k and out_d[n] <= d0 + 2.0 * rho:
        n += 1
    r = rho
    if n == k and out_d[k] < np.inf:
        r = min(rho, 0.5 * (out_d[k] - d0))
    return n, r, n_eval


@njit(parallel=True, cache=True, nogil=True)
def _query(xs, rows, seg, x0, rho, cnt, ids, dc, gd, rho_new, k, geo, cen, rad, origin, dims, cell, rmax, cstart,
           cbase, ctris, out_d, out_p, out_t, n_eval, rebuilt, n_build):
    n = len(rows)
    for i in prange(n):
        r = rows[i]
        p = xs[i]
        dx = p[0] - x0[r, 0]
        dy = p[1] - x0[r, 1]
        dz = p[2] - x0[r, 2]
        delta = math.sqrt(dx * dx + dy * dy + dz * dz)
        ev = 0
        best = np.inf
        bt, bv, bw = -1, 0.0, 0.0
        if not (delta <= rho[r]):  # never built (rho < 0, x0 inf) or moved out of its cache
            tid = np.empty(k + 1, np.int64)
            td = np.empty(k + 1, np.float64)
            tvw = np.empty((k + 1, 2), np.float64)
            limit0 = np.inf
            if rho[r] < 0:
                rr = rho_new
            else:  # 2x the displacement that triggered the rebuild; the old best bounds D0
                rr = min(max(2.0 * delta, 0.25 * rho_new), 2.0 * rho_new)
                if cnt[r] > 0:
                    d_old, _, _ = _eval(p, ids[r, 0], geo)
                    ev += 1
                    limit0 = d_old + 2.0 * rr
            m, rr, nb = _build(p, seg[i], rr, limit0, k, geo, cen, rad, origin, dims, cell, rmax, cstart, cbase,
                               ctris, tid, td, tvw)
            for j in range(k):
                ids[r, j] = tid[j]
                dc[r, j] = td[j]
                gd[r, j, 0] = 0.0
                gd[r, j, 1] = 0.0
                gd[r, j, 2] = 0.0
                if j < m and td[j] > 0.0:  # unit direction from the closest point on triangle j to p
                    g = geo[tid[j]]
                    for a in range(3):
                        gd[r, j, a] = (p[a] - (g[a] + tvw[j, 0] * g[3 + a] + tvw[j, 1] * g[6 + a])) / td[j]
            cnt[r] = m
            rho[r] = rr
            x0[r, 0], x0[r, 1], x0[r, 2] = p[0], p[1], p[2]
            rebuilt[i] = 1
            n_build[i] = nb
            if m > 0:
                best, bt, bv, bw = td[0], tid[0], tvw[0, 0], tvw[0, 1]
        else:
            # d_j is convex, so d_j(x) >= d_j(x0) + g_j . (x - x0) (g_j its unit gradient at x0,
            # stored in float32: the 1e-6 delta margin covers the rounding) and >= d_j(x0) - delta;
            # the list is sorted by d_j(x0), so the scan stops at the first d_j(x0) - delta >= best
            for j in range(cnt[r]):
                if dc[r, j] - delta >= best:
                    break
                if dc[r, j] + (gd[r, j, 0] * dx + gd[r, j, 1] * dy + gd[r, j, 2] * dz) - 1e-6 * delta >= best:
                    continue
                t = ids[r, j]
                d, v, w = _eval(p, t, geo)
                ev += 1
                if d < best:
                    best, bt, bv, bw = d, t, v, w
        n_eval[i] = ev
        out_d[i] = best
        out_t[i] = bt
        if bt >= 0:
            g = geo[bt]
            out_p[i, 0] = g[0] + bv * g[3] + bw * g[6]
            out_p[i, 1] = g[1] + bv * g[4] + bw * g[7]
            out_p[i, 2] = g[2] + bv * g[5] + bw * g[8]
        else:
            out_p[i, 0] = np.nan
            out_p[i, 1] = np.nan
            out_p[i, 2] = np.nan


class CoherentTriangleQuery:
    """Exact closest point on the triangles of each row's pair, for rows that move a little
    between calls (ICP), compiled with numba; CPU only. See the module docstring.

    Args:
        prims: the triangles of every pair (``Primitives.from_triangles``), on the CPU, grouped
            by pair.
        n_rows: number of rows (query points), by global row index.
        k: triangles kept per row (ties at shared edges / vertices need up to ~8).
        rho: cache radius (mm) of a row's first build; later rebuilds use 2x the displacement
            that triggered them, clamped to [rho / 4, 2 rho] (default: the triangle spacing).
        cell: grid cell (mm; default 2x the spacing).
        threads: numba threads (default: torch's CPU thread count).
    """

    def __init__(self, prims: Primitives, n_rows: int, k: int = 16, rho: float | None = None,
                 cell: float | None = None, threads: int | None = None) -> None:
        if prims.kind != "triangle":
            raise ValueError("CoherentTriangleQuery answers closest-point-on-triangle queries only")
        if prims.centres.device.type != "cpu":
            raise ValueError(f"CoherentTriangleQuery runs on the CPU (numba); use ClosestQuery on {prims.centres.device}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if len(prims.seg) > 1 and not bool((prims.seg[1:] >= prims.seg[:-1]).all()):
            raise ValueError("CoherentTriangleQuery expects the triangles grouped by pair (from_triangles order)")
        self.prims = prims
        self.k = int(k)
        self.threads = int(threads) if threads is not None else torch.get_num_threads()
        sp = prims.spacing()
        self.rho = float(rho) if rho is not None else sp
        h = float(cell) if cell is not None else 2.0 * sp
        if not (self.rho > 0 and h > 0):
            raise ValueError(f"rho and cell must be > 0, got {self.rho}, {h}")
        # one row per triangle: corner a, edges ab, ac and their dot products (Primitives' SoA)
        self.geo = torch.stack([*prims.a, *prims.ab, *prims.ac, prims.abab, prims.abac, prims.acac], 1).detach() \
            .to(torch.float64).contiguous().numpy()
        self.cen = np.ascontiguousarray(prims.centres.detach().to(torch.float64).numpy())
        self.rad = np.ascontiguousarray(prims.radius.detach().to(torch.float64).numpy())
        self._grid(h)
        self.n_rows = n_rows
        self.x0 = np.full((n_rows, 3), np.inf)
        self.rho_row = np.full(n_rows, -1.0)
        self.cnt = np.zeros(n_rows, np.int32)
        self.ids = np.full((n_rows, self.k), -1, np.int32)
        self.dc = np.full((n_rows, self.k), np.inf)
        self.gd = np.zeros((n_rows, self.k, 3), np.float32)
        self.stats = {"queries": 0, "evaluated": 0, "rebuilt": 0, "build_evaluated": 0}

    def _grid(self, h: float) -> None:
        """Per-pair uniform grids (cell h, enlarged until a pair's grid has at most twice as many
        cells as triangles) of the triangle centroids, stored as one CSR table."""
        seg = self.prims.seg.numpy()
        nb = self.prims.n_seg
        self.origin = np.zeros((nb, 3))
        self.dims = np.zeros((nb, 3), np.int64)
        self.cell = np.full(nb, h)
        self.rmax = np.zeros(nb)
        self.cbase = np.zeros(nb, np.int64)
        keys = np.zeros(len(seg), np.int64)
        counts = np.bincount(seg, minlength=nb)
        starts = np.concatenate([[0], np.cumsum(counts)])
        total = 0
        for bi in range(nb):
            lo, hi = starts[bi], starts[bi + 1]
            if hi == lo:
                continue
            c = self.cen[lo:hi]
            mn, ext = c.min(0), c.max(0) - c.min(0)
            hb = h
            while np.prod(np.floor(ext / hb) + 1) > max(2 * (hi - lo), 4096):  # memory ~ the triangle count
                hb *= 1.25
            dims = (np.floor(ext / hb) + 1).astype(np.int64)
            ijk = np.minimum(np.floor((c - mn) / hb).astype(np.int64), dims - 1)
            self.origin[bi], self.dims[bi], self.cell[bi] = mn, dims, hb
            self.rmax[bi] = self.rad[lo:hi].max()
            self.cbase[bi] = total
            keys[lo:hi] = total + (ijk[:, 0] * dims[1] + ijk[:, 1]) * dims[2] + ijk[:, 2]
            total += int(np.prod(dims))
        order = np.argsort(keys, kind="stable")
        self.ctris = order.astype(np.int64)
        self.cstart = np.zeros(total + 1, np.int64)
        np.cumsum(np.bincount(keys, minlength=total), out=self.cstart[1:])

    def query(self, rows: Tensor | None, x: Tensor, seg: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Exact closest point on the triangles of each row's pair (see
        :meth:`ClosestQuery.query`): (distance (R,), point (R, 3), flat triangle id (R,))."""
        r = np.arange(self.n_rows) if rows is None else rows.numpy().astype(np.int64, copy=False)
        xs = np.ascontiguousarray(x.detach().to(torch.float64).numpy())
        sg = seg.numpy().astype(np.int64, copy=False)
        n = len(r)
        if len(xs) != n or len(sg) != n:
            raise ValueError(f"rows, x and seg differ in length: {n}, {len(xs)}, {len(sg)}")
        out_d = np.empty(n)
        out_p = np.empty((n, 3))
        out_t = np.empty(n, np.int64)
        n_eval = np.zeros(n, np.int64)
        rebuilt = np.zeros(n, np.int8)
        n_build = np.zeros(n, np.int64)
        prev = numba.get_num_threads()
        numba.set_num_threads(max(1, min(self.threads, numba.config.NUMBA_NUM_THREADS)))
        try:
            _query(xs, r, sg, self.x0, self.rho_row, self.cnt, self.ids, self.dc, self.gd, self.rho, self.k, self.geo,
                   self.cen, self.rad, self.origin, self.dims, self.cell, self.rmax, self.cstart, self.cbase,
                   self.ctris, out_d, out_p, out_t, n_eval, rebuilt, n_build)
        finally:
            numba.set_num_threads(prev)
        self.stats["queries"] += n
        self.stats["evaluated"] += int(n_eval.sum())
        self.stats["rebuilt"] += int(rebuilt.sum())
        self.stats["build_evaluated"] += int(n_build.sum())
        dt = x.dtype
        return torch.from_numpy(out_d).to(dt), torch.from_numpy(out_p).to(dt), torch.from_numpy(out_t)


def warm_up() -> float:
    """Load (or, the first time on a machine, compile and cache) the numba kernels; returns the
    seconds it took, so that timings can report it apart."""
    import time

    t0 = time.perf_counter()
    v = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    q = CoherentTriangleQuery(Primitives.from_triangles([v], [torch.tensor([[0, 1, 2]])]), 1)
    q.query(None, torch.tensor([[0.2, 0.2, 1.0]], dtype=torch.float64), torch.zeros(1, dtype=torch.int64))
    return time.perf_counter() - t0
