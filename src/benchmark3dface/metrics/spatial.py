"""Exact closest-primitive queries for many (query points, mesh) pairs at once, in torch.

Used by the batched ICP of the MICC and NoW protocols: every ICP iteration asks, for each scan
point (a "row"), for the closest vertex (MICC) or the closest point on the triangles (NoW) of
its pair's predicted mesh. Meshes stay fixed in their own frame (the scan points move by the
inverse of the current similarity), so the spatial structures are built once per pair.

Design (all exact, no approximation):

* ``Primitives``: the vertices or triangles of B meshes in one flat table with a pair index.
  Each primitive has a centre (vertex / centroid) and a radius ``r`` (0 / largest
  centroid-to-corner distance) so that ``|x - centre| - r <= dist(x, primitive) <= |x - centre|``.
* ``Grid``: a uniform grid (cell ``h``) over the primitive centres, keyed by (pair, cell); for a
  query cell it returns the primitives of the 3x3x3 block around it. Every primitive whose
  centre lies within ``margin(x) >= h`` of x is in that block.
* ``ClosestQuery``: a Verlet-list cache. When a row is (re)built at position x0 its candidate
  list keeps every primitive whose distance may be <= D0 + 2 rho (D0 = exact closest distance
  at x0). While the row moves by delta <= rho its closest primitive is guaranteed to be in that
  list (dist(x0, P*) <= dist(x, P*) + delta <= D0 + 2 delta), so an ICP iteration costs a few
  exact distance evaluations per row. Rows that move further are rebuilt; rebuilding escalates
  from a fine grid to a coarse grid to all primitives of the pair, whichever first proves
  exactness (``rho >= 0``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .geometry import closest_on_triangles_soa

_OFFSETS = torch.tensor([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)],
                        dtype=torch.int64)
_INF = math.inf


def _spread_bits(v: Tensor) -> Tensor:
    """The low 10 bits of v (int64) spread to every third bit (for a 3D Morton code)."""
    v = v & 0x3FF
    v = (v | (v << 16)) & 0x030000FF
    v = (v | (v << 8)) & 0x0300F00F
    v = (v | (v << 4)) & 0x030C30C3
    return (v | (v << 2)) & 0x09249249


def morton_order(points: Tensor, cell: float = 2.0) -> Tensor:
    """A permutation of points (N, 3) along a Z-order curve of cells of ``cell`` mm (grown so
    that the extent fits 1024 cells per axis): rows that are neighbours in space become
    neighbours in memory, which makes the per-row searches cache-friendly."""
    if len(points) == 0:
        return torch.zeros(0, dtype=torch.int64, device=points.device)
    lo = points.amin(0)
    h = max(cell, float((points.amax(0) - lo).max()) / 1023.0)
    q = ((points - lo) / h).long().clamp(0, 1023)
    key = _spread_bits(q[:, 0]) | (_spread_bits(q[:, 1]) << 1) | (_spread_bits(q[:, 2]) << 2)
    return torch.argsort(key, stable=True)


def take(src: Tensor, idx: Tensor) -> Tensor:
    """``src[idx]`` along dim 0 via ``index_select`` (much faster than advanced indexing on CPU)."""
    return src.index_select(0, idx.reshape(-1)).view(*idx.shape, *src.shape[1:])


@dataclass
class Primitives:
    """Vertices (``kind == "vertex"``) or triangles of several meshes, flattened.

    Stored component-wise (structure of arrays) for fast gathers.

    Attributes:
        centres: (M, 3) vertex positions / triangle centroids (mm, each mesh's frame).
        radius: (M,) 0 / largest centroid-to-corner distance of the triangle.
        seg: (M,) pair index of each primitive.
        n_seg: number of pairs.
        index: (M,) the primitive's index inside its own mesh (vertex or triangle id).
        corners: (3, M, 3) triangle corners (triangles only).
    """

    kind: str
    centres: Tensor
    radius: Tensor
    seg: Tensor
    n_seg: int
    index: Tensor
    corners: Tensor | None = None

    def __post_init__(self) -> None:
        self.c = tuple(self.centres[:, i].contiguous() for i in range(3))
        if self.corners is not None:
            a, b, c = self.corners
            ab, ac = b - a, c - a
            self.a = tuple(a[:, i].contiguous() for i in range(3))
            self.ab = tuple(ab[:, i].contiguous() for i in range(3))
            self.ac = tuple(ac[:, i].contiguous() for i in range(3))
            self.abab = (ab * ab).sum(-1)
            self.abac = (ab * ac).sum(-1)
            self.acac = (ac * ac).sum(-1)

    @classmethod
    def from_vertices(cls, vertices: list[Tensor], dtype: torch.dtype = torch.float64) -> Primitives:
        dev = vertices[0].device
        cen = torch.cat([v.to(dtype) for v in vertices])
        seg = torch.cat([torch.full((len(v),), i, dtype=torch.int64, device=dev) for i, v in enumerate(vertices)])
        idx = torch.cat([torch.arange(len(v), device=dev) for v in vertices])
        return cls("vertex", cen, torch.zeros(len(cen), dtype=dtype, device=dev), seg, len(vertices), idx)

    @classmethod
    def from_triangles(cls, vertices: list[Tensor], triangles: list[Tensor],
                       dtype: torch.dtype = torch.float64) -> Primitives:
        dev = vertices[0].device
        corners = torch.cat([v.to(dtype)[f.long()] for v, f in zip(vertices, triangles)]).permute(1, 0, 2)
        cen = corners.mean(0)
        rad = (corners - cen[None]).norm(dim=-1).amax(0)
        seg = torch.cat([torch.full((len(f),), i, dtype=torch.int64, device=dev) for i, f in enumerate(triangles)])
        idx = torch.cat([torch.arange(len(f), device=dev) for f in triangles])
        return cls("triangle", cen, rad, seg, len(triangles), idx, corners.contiguous())

    def r_max(self) -> Tensor:
        """(n_seg,) largest primitive radius per pair."""
        out = torch.zeros(self.n_seg, dtype=self.radius.dtype, device=self.radius.device)
        return out.scatter_reduce_(0, self.seg, self.radius, "amax")

    def spacing(self) -> float:
        """A typical distance between neighbouring primitive centres (mm): the median over
        pairs of (bounding-box area / count)^(1/2) -- a surface-density estimate."""
        vals = []
        for b in range(self.n_seg):
            c = self.centres[self.seg == b]
            if len(c) < 2:
                continue
            ext = (c.amax(0) - c.amin(0)).sort().values
            vals.append(math.sqrt(max(float(ext[1] * ext[2]), 1e-12) / len(c)))
        return float(torch.tensor(vals).median()) if vals else 1.0

    def centre_distance(self, x: Tensor, ids: Tensor) -> Tensor:
        """|x - centre| for rows x (R, 3) and ids (R, K) (ids must be valid indices)."""
        dx = x[:, 0:1] - take(self.c[0], ids)
        dy = x[:, 1:2] - take(self.c[1], ids)
        dz = x[:, 2:3] - take(self.c[2], ids)
        return (dx * dx + dy * dy + dz * dz).sqrt()

    def exact(self, x: Tensor, ids: Tensor) -> tuple[Tensor, Tensor]:
        """Exact distances from rows x (R, 3) to primitives ids (R, K) (-1 = none).
        Returns (dist (R, K) with +inf for -1, closest points (R, K, 3))."""
        valid = ids >= 0
        i = ids.clamp_min(0)
        if self.kind == "vertex":
            d = self.centre_distance(x, i)
            p = take(self.centres, i)
        else:
            xs = (x[:, 0:1], x[:, 1:2], x[:, 2:3])
            a = tuple(take(t, i) for t in self.a)
            ab = tuple(take(t, i) for t in self.ab)
            ac = tuple(take(t, i) for t in self.ac)
            vw, d2 = closest_on_triangles_soa(xs, a, ab, ac, take(self.abab, i), take(self.abac, i),
                                              take(self.acac, i))
            v, w = vw[..., 0], vw[..., 1]
            p = torch.stack([a[k] + v * ab[k] + w * ac[k] for k in range(3)], -1)
            d = d2.clamp_min(0).sqrt()
        return d.masked_fill(~valid, _INF), p


class Grid:
    """Uniform grid of cell ``cell`` (mm) over the primitives of all pairs.

    A primitive of radius <= ``r_small`` is listed in the cell of its centre; a bigger one
    (a stretched triangle) in every cell its bounding box overlaps. So every primitive within
    distance T of a point lies in the 3x3x3 block around the point's cell whenever
    T + r_small <= margin (small ones: centre within T + r_small; big ones: they reach into the
    ball of radius T, which the block contains).
    """

    def __init__(self, prims: Primitives, cell: float, r_small: float | None = None) -> None:
        self.prims = prims
        self.cell = float(cell)
        dev = prims.centres.device
        self.r_small = float(prims.radius.max()) if (r_small is None or len(prims.radius) == 0) else float(r_small)
        ic = torch.floor(prims.centres / self.cell).to(torch.int64)
        big = torch.nonzero(prims.radius > self.r_small).flatten()
        cells, ids = [ic], [torch.arange(len(ic), device=dev)]
        if len(big) and prims.corners is not None:
            small = torch.ones(len(ic), dtype=torch.bool, device=dev)
            small[big] = False
            cells, ids = [ic[small]], [torch.nonzero(small).flatten()]
            cb = prims.corners[:, big]
            lo = torch.floor(cb.amin(0) / self.cell).to(torch.int64)
            hi = torch.floor(cb.amax(0) / self.cell).to(torch.int64)
            span = hi - lo + 1
            smax = int(span.max())
            r = torch.arange(smax, device=dev)
            off = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
            inside = (off[None] < span[:, None]).all(-1)
            bi, oi = torch.nonzero(inside, as_tuple=True)
            cells.append(lo[bi] + off[oi])
            ids.append(big[bi])
        ic = torch.cat(cells)
        pid = torch.cat(ids)
        self.lo = ic.amin(0)
        self.dims = ic.amax(0) - self.lo + 1
        key = self._key(prims.seg[pid], ic - self.lo)
        order = torch.argsort(key)
        self.order = pid[order]
        ukey, counts = torch.unique_consecutive(key[order], return_counts=True)
        self.ukey = ukey
        self.counts = counts
        self.starts = torch.cumsum(counts, 0) - counts

    def _key(self, seg: Tensor, rel: Tensor) -> Tensor:
        d = self.dims
        return ((seg * d[0] + rel[..., 0]) * d[1] + rel[..., 1]) * d[2] + rel[..., 2]

    def candidates(self, x: Tensor, seg: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Primitives in the 3x3x3 block of cells around each row.

        Returns (table (U, W) primitive ids per distinct query cell, left-packed and -1 padded;
        count (U,) ids per table row; inv (R,) table row of each query row; margin (R,)):
        every primitive whose centre is closer than ``margin`` to the row is in its table row
        (margin < 0 when the row lies far outside the grid, where the block is clamped).
        """
        dev = x.device
        off = _OFFSETS.to(dev)
        rel = torch.floor(x / self.cell).to(torch.int64) - self.lo
        rel = torch.maximum(torch.minimum(rel, self.dims), torch.full_like(rel, -1))
        lo_edge = (rel - 1 + self.lo).to(x.dtype) * self.cell
        hi_edge = (rel + 2 + self.lo).to(x.dtype) * self.cell
        margin = torch.minimum(x - lo_edge, hi_edge - x).amin(-1)
        # distinct query cells (rel in [-1, dims] per axis)
        span = self.dims + 2
        qkey = ((seg * span[0] + rel[:, 0] + 1) * span[1] + rel[:, 1] + 1) * span[2] + rel[:, 2] + 1
        uq, inv = torch.unique(qkey, return_inverse=True)
        first = torch.zeros(len(uq), dtype=torch.int64, device=dev).scatter_(0, inv, torch.arange(len(x), device=dev))
        useg = seg[first]
        urel = rel[first]
        nb = urel[:, None, :] + off[None]
        inr = ((nb >= 0) & (nb < self.dims)).all(-1)
        key = self._key(useg[:, None], nb).masked_fill(~inr, -1)
        pos = torch.searchsorted(self.ukey, key).clamp_max(len(self.ukey) - 1)
        found = inr & (self.ukey[pos] == key)
        cnt = torch.where(found, self.counts[pos], torch.zeros_like(pos))
        st = torch.where(found, self.starts[pos], torch.zeros_like(pos))
        tot = cnt.sum(1)
        width = int(tot.max()) if len(tot) else 0
        table = torch.full((len(uq), max(width, 1)), -1, dtype=torch.int64, device=dev)
        if width > 0:
            fc, fs = cnt.reshape(-1), st.reshape(-1)
            segid = torch.repeat_interleave(torch.arange(len(fc), device=dev), fc)
            seg_first = torch.cumsum(fc, 0) - fc
            rank = torch.arange(len(segid), device=dev) - seg_first[segid]
            rowoff = (torch.cumsum(cnt, 1) - cnt).reshape(-1)
            table[segid // 27, rowoff[segid] + rank] = self.order[fs[segid] + rank]
        return table, tot, inv, margin


class Clusters:
    """The non-empty cells of a grid as clusters with bounding spheres, for rows far from the
    surface: a row looks at every cluster of its pair, keeps the ``k`` with the smallest lower
    bound and takes their members as candidates. Every primitive outside those clusters has
    lower bound >= the (k+1)-th cluster's, which ``candidates`` returns as the margin."""

    def __init__(self, grid: Grid, r_small: float) -> None:
        prims = grid.prims
        dev = prims.centres.device
        self.prims = prims
        self.r_small = r_small
        u = len(grid.ukey)
        d = grid.dims
        self.seg = grid.ukey // (d[0] * d[1] * d[2])
        width = int(grid.counts.max()) if u else 1
        col = torch.arange(width, device=dev)
        inside = col[None, :] < grid.counts[:, None]
        self.members = torch.where(inside, grid.order[(grid.starts[:, None] + col[None, :]).clamp_max(
            len(grid.order) - 1)], torch.full_like(inside, -1, dtype=torch.int64))
        m = self.members.clamp_min(0)
        c = prims.centres[m]
        w = inside.to(c.dtype)
        self.centre = (c * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1)
        reach = (c - self.centre[:, None, :]).norm(dim=-1) + prims.radius[m]
        self.radius = torch.where(inside, reach, torch.zeros_like(reach)).amax(1)
        counts = torch.bincount(self.seg, minlength=prims.n_seg)
        start = torch.cumsum(counts, 0) - counts
        kmax = int(counts.max()) if len(counts) else 1
        colc = torch.arange(u, device=dev) - start[self.seg]
        self.table = torch.full((prims.n_seg, max(kmax, 1)), -1, dtype=torch.int64, device=dev)
        self.table[self.seg, colc] = torch.arange(u, device=dev)

    def candidates(self, x: Tensor, seg: Tensor, k: int = 32) -> tuple[Tensor, Tensor]:
        """(cand (R, k * members) primitive ids, margin (R,)) for rows x of pairs seg."""
        tab = self.table.index_select(0, seg)
        valid = tab >= 0
        t = tab.clamp_min(0)
        cc = take(self.centre, t)
        dcl = (x[:, None, :] - cc).norm(dim=-1)
        lbc = (dcl - take(self.radius, t)).masked_fill(~valid, _INF)
        k1 = min(k + 1, tab.shape[1])
        lk, j = torch.topk(lbc, k1, dim=1, largest=False, sorted=True)
        chosen = tab.gather(1, j[:, :k]).masked_fill(~torch.isfinite(lk[:, :k]), -1)
        nxt = lk[:, k] if k1 > k else torch.full((len(x),), _INF, dtype=x.dtype, device=x.device)
        mem = take(self.members, chosen.clamp_min(0))
        mem = mem.masked_fill((chosen < 0)[..., None], -1).reshape(len(x), -1)
        return mem, nxt + self.r_small


class ClosestQuery:
    """Exact closest primitive for moving rows, with per-row candidate caching.

    Completeness: when a row is (re)built at x0 it keeps every primitive that can be closest
    anywhere within ``rho`` of x0 (all primitives within D0 + 2 rho of x0, D0 the closest
    distance there: for |x - x0| <= rho, dist(x0, P*) <= dist(x, P*) + rho <= D0 + 2 rho).
    Rows that move further than rho are rebuilt (escalating grid -> clusters -> all).

    Cheap iterations: the kept candidates carry lower bounds of their distance at an
    evaluation base xb (exact where evaluated there) and ``dub`` bounds the closest distance
    at xb. At x (db = |x - xb|) candidate j can only be closest if lb_j - db <= dub + db, and
    the list is sorted by lb, so the first k_need candidates suffice -- usually one; those are
    evaluated and x becomes the new base (unevaluated bounds lose db).

    Args:
        prims: the primitives (vertices or triangles) of every pair.
        n_rows: number of rows (query points) that will be asked about, by global row index.
        cells: grid cell sizes (mm) of the escalation levels (default (1.5, 3, 6, 12) x the
            primitive spacing + the 90th percentile of the primitive radii).
        kc: candidates kept per row (default 16 for vertices, 32 for triangles).
        rho_init, rho_min, rho_max: cache radius (mm) for a row's first build, and the clamp of
            the radius of later rebuilds (2 x the displacement that triggered them).
        chunk: elements per chunk of (rows x candidates) work, bounding memory.
    """

    def __init__(self, prims: Primitives, n_rows: int, cells: tuple[float, ...] | None = None, kc: int | None = None,
                 rho_init: float | None = None, rho_min: float | None = None, rho_max: float | None = None,
                 chunk: int = 1_000_000) -> None:
        self.prims = prims
        sp = prims.spacing()
        self.spacing_mm = sp
        self.r_max = prims.r_max()
        # primitives bigger than r_small are listed in every cell they overlap (see Grid)
        self.r_small = float(torch.quantile(prims.radius, 0.9)) if len(prims.radius) else 0.0
        self.cells = cells if cells is not None else tuple(f * sp + self.r_small for f in (1.5, 3.0, 6.0, 12.0))
        self.grids = [Grid(prims, c, self.r_small) for c in self.cells]
        self.clusters = Clusters(self.grids[-2] if len(self.grids) > 1 else self.grids[-1], self.r_small)
        self.kc = kc if kc is not None else (16 if prims.kind == "vertex" else 32)
        kc = self.kc
        self.rho_init = rho_init if rho_init is not None else 1.0 * sp
        self.rho_min = rho_min if rho_min is not None else 0.5 * sp
        self.rho_max = rho_max if rho_max is not None else 1.0 * sp
        self.chunk = chunk
        dev, dt = prims.centres.device, prims.centres.dtype
        self.x0 = torch.full((n_rows, 3), _INF, dtype=dt, device=dev)
        self.rho = torch.full((n_rows,), -1.0, dtype=dt, device=dev)
        self.ids = torch.full((n_rows, kc), -1, dtype=torch.int64, device=dev)
        # evaluation base xb: lbs - slack are lower bounds of the candidates' distances at xb
        # (exact where evaluated there), dub an upper bound of the closest distance at xb
        self.lbs = torch.full((kc, n_rows), _INF, dtype=dt, device=dev)  # column-major: lbs[j] is (n_rows,)
        self.slack = torch.zeros(n_rows, dtype=dt, device=dev)
        self.dub = torch.full((n_rows,), _INF, dtype=dt, device=dev)
        self.xb = torch.full((n_rows, 3), _INF, dtype=dt, device=dev)
        self.id0 = torch.zeros(n_rows, dtype=torch.int64, device=dev)  # ids[:, 0], clamped >= 0
        self.n_rows = n_rows
        # per-pair table of all primitive ids (the last escalation level)
        counts = torch.bincount(prims.seg, minlength=prims.n_seg)
        order = torch.argsort(prims.seg, stable=True)
        start = torch.cumsum(counts, 0) - counts
        mx = int(counts.max()) if len(counts) else 1
        col = torch.arange(len(order), device=dev) - start[prims.seg[order]]
        self.all_table = torch.full((prims.n_seg, max(mx, 1)), -1, dtype=torch.int64, device=dev)
        self.all_table[prims.seg[order], col] = order
        self.stats = {"queries": 0, "evaluated": 0, "rebuilt": 0, "escalated": 0, "exhaustive": 0}

    # -- building ------------------------------------------------------------------------------
    def _select(self, x: Tensor, seg: Tensor, cand: Tensor, margin: Tensor, rho_t: Tensor, kc: int
                ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """From candidate lists that hold every primitive within ``margin - r_small`` of x,
        keep the ``kc`` nearest. Returns (ids (R, kc) sorted by exact distance, their distances
        (R, kc), closest points (R, 3), rho (R,), crowded (R,)): every primitive closer to x than
        ``d[:, 0] + 2 rho`` is in ``ids``. rho < 0 when that cannot be proven: ``crowded`` rows
        failed only because more than kc primitives are that close (retry with a larger kc),
        the others need a larger margin (a coarser grid or the clusters)."""
        p = self.prims
        valid = cand >= 0
        ci = cand.clamp_min(0)
        dc = p.centre_distance(x, ci)
        lb = dc if p.kind == "vertex" else dc - take(p.radius, ci)
        lb = lb.masked_fill(~valid, _INF)
        if p.kind == "vertex":
            k_lb = kc
        else:  # exact distances for the candidates that can matter: lb <= min centroid distance + 2 rho_t
            ub = dc.masked_fill(~valid, _INF).amin(1)
            relevant = int((lb <= (ub + 2 * rho_t)[:, None]).sum(1).max()) if len(lb) else kc
            k_lb = min(3 * kc, max(4, relevant))
        k1 = min(k_lb + 1, cand.shape[1])
        lbk, j = torch.topk(lb, k1, dim=1, largest=False, sorted=True)
        ids = cand.gather(1, j[:, :k_lb]).masked_fill(~torch.isfinite(lbk[:, :k_lb]), -1)
        nxt = lbk[:, k_lb] if k1 > k_lb else torch.full_like(margin, _INF)
        if p.kind == "vertex":  # the lower bound is the exact distance, already sorted
            d = lbk[:, :k_lb]
            pts = take(p.centres, ids[:, :1].clamp_min(0))[:, 0]
        else:
            d, pt_all = p.exact(x, ids)
            d, o = torch.sort(d, dim=1)
            ids = ids.gather(1, o)
            pts = pt_all.gather(1, o[:, :1, None].expand(-1, 1, 3))[:, 0]
            if ids.shape[1] > kc:
                nxt = torch.minimum(nxt, d[:, kc])
                ids, d = ids[:, :kc], d[:, :kc]
        d0 = d[:, 0]
        rho_m = 0.5 * (margin - self.r_small - d0)
        rho_c = 0.5 * (nxt - d0)
        rho = torch.minimum(torch.minimum(rho_t, rho_m), rho_c)
        finite = torch.isfinite(d0)
        rho = torch.where(finite, rho, torch.full_like(rho, -1.0))
        crowded = finite & (rho_m >= 0) & (rho_c < 0)
        return ids, d, pts, rho, crowded

    def _exhaustive(self, x: Tensor, seg: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Exact closest primitive over all primitives of the pair (rows one chunk at a time)."""
        tab = self.all_table
        step = max(1, self.chunk // tab.shape[1])
        ds, ps, prs = [], [], []
        for s in range(0, len(x), step):
            ids = tab[seg[s:s + step]]
            d, p = self.prims.exact(x[s:s + step], ids)
            d0, a = d.min(1)
            ds.append(d0)
            ps.append(p.gather(1, a[:, None, None].expand(-1, 1, 3)).squeeze(1))
            prs.append(ids.gather(1, a[:, None]).squeeze(1))
        return torch.cat(ds), torch.cat(ps), torch.cat(prs)

    def _store(self, g: Tensor, ids: Tensor, d: Tensor, x0: Tensor, rho: Tensor) -> None:
        """Write rebuilt cache rows ``g``: ids / exact distances d (n, w <= kc) sorted at x0."""
        w = ids.shape[1]
        if w < self.kc:
            ids = torch.nn.functional.pad(ids, (0, self.kc - w), value=-1)
            d = torch.nn.functional.pad(d, (0, self.kc - w), value=_INF)
        self.ids.index_copy_(0, g, ids)
        self.lbs.index_copy_(1, g, d.T.contiguous())
        self.slack.index_fill_(0, g, 0.0)
        self.dub.index_copy_(0, g, d[:, 0])
        self.id0.index_copy_(0, g, ids[:, 0].clamp_min(0))
        self.x0.index_copy_(0, g, x0)
        self.xb.index_copy_(0, g, x0)
        self.rho.index_copy_(0, g, rho)

    def _level(self, li: int, kc: int, loc: Tensor, x: Tensor, seg: Tensor, rho_t: Tensor, grows: Tensor,
               out: tuple[Tensor, Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """Try escalation level ``li`` (a grid; clusters when li == len(grids); all primitives
        of the pair when li == len(grids) + 1) for the local rows ``loc``. Returns (rows needing
        a coarser level, crowded rows)."""
        dist, point, prim = out
        grid = self.grids[li] if li < len(self.grids) else None
        if grid is not None:
            table, tot, inv, margin = grid.candidates(x[loc], seg[loc])
            order = torch.argsort(tot[inv])
            counts = tot[inv][order]
        elif li == len(self.grids):  # clusters
            table, margin = self.clusters.candidates(x[loc], seg[loc])
            inv = torch.arange(len(loc), device=x.device)
            counts = (table >= 0).sum(1)
            order = torch.argsort(counts)
            counts = counts[order]
            table = torch.sort(table, dim=1, descending=True).values  # left-pack the valid ids
        else:
            table, inv = self.all_table, seg[loc]
            margin = torch.full((len(loc),), _INF, dtype=x.dtype, device=x.device)
            order = torch.arange(len(loc), device=x.device)
            counts = torch.full((len(loc),), table.shape[1], dtype=torch.int64, device=x.device)
        failed, crowded = [], []
        s, n = 0, len(order)
        while s < n:
            # rows sorted by candidate count: size the chunk by the widest row it may hold
            guess = max(int(counts[min(s + max(1, self.chunk // max(int(counts[s]), 1)), n) - 1]), 1)
            e = min(n, s + max(1, self.chunk // guess))
            sel = order[s:e]
            width = max(int(counts[e - 1]), 1)
            s = e
            sub = loc[sel]
            ids, d, pt, rho, crowd = self._select(x[sub], seg[sub], table[inv[sel], :width], margin[sel],
                                                  rho_t[sub], kc)
            ok = rho >= 0
            good, g = sub[ok], grows[sub[ok]]
            w = min(ids.shape[1], self.kc)
            # a list wider than the cache is exact now but must be rebuilt next time
            wide = (ids[ok][:, w:] >= 0).any(1) if ids.shape[1] > w else torch.zeros_like(ok[ok])
            rho_ok = torch.where(wide, torch.full_like(rho[ok], -1.0), rho[ok])
            self._store(g, ids[ok][:, :w], d[ok][:, :w], x[good], rho_ok)
            dist[good], point[good], prim[good] = d[ok][:, 0], pt[ok], ids[ok][:, 0]
            failed.append(sub[~ok & ~crowd])
            crowded.append(sub[crowd])
        cat = lambda v: torch.cat(v) if v else loc[:0]
        return cat(failed), cat(crowded)

    def _build(self, grows: Tensor, x: Tensor, seg: Tensor, rho_t: Tensor, d_prev: Tensor
               ) -> tuple[Tensor, Tensor, Tensor]:
        """(Re)build the cache of global rows ``grows`` at positions x; returns exact
        (dist, point, prim). ``d_prev`` (a previous closest distance or inf) picks the first
        grid level that can prove it. Crowded rows retry the same level with 4x, then 16x the
        candidates; rows no level proves get an exhaustive search."""
        n = len(grows)
        dev = x.device
        out = (torch.empty(n, dtype=x.dtype, device=dev), torch.empty(n, 3, dtype=x.dtype, device=dev),
               torch.empty(n, dtype=torch.int64, device=dev))
        need = d_prev + 2 * rho_t + self.r_small
        cells = torch.tensor(self.cells, dtype=x.dtype, device=dev)
        first = torch.where(torch.isfinite(need), torch.searchsorted(cells, need.contiguous()),
                            torch.zeros_like(grows))  # == len(cells): start with the clusters
        todo = grows[:0]
        hopeless = [grows[:0]]
        for li in range(len(self.grids) + 2):
            start_here = torch.nonzero(first == li).flatten() if li <= len(self.cells) else grows[:0]
            if li > 0:
                self.stats["escalated"] += len(todo)
            todo = torch.cat([todo, start_here])
            kc = self.kc
            nxt = []
            while len(todo):
                failed, crowded = self._level(li, kc, todo, x, seg, rho_t, grows, out)
                nxt.append(failed)
                todo = crowded
                kc *= 4
                if kc > 16 * self.kc:
                    hopeless.append(crowded)
                    break
            todo = torch.cat(nxt) if nxt else grows[:0]
        hopeless.append(todo)
        todo = torch.cat(hopeless)
        if len(todo):
            self.stats["exhaustive"] += len(todo)
            d0, pt, pr = self._exhaustive(x[todo], seg[todo])
            out[0][todo], out[1][todo], out[2][todo] = d0, pt, pr
            self.rho.index_fill_(0, grows[todo], -1.0)
        return out

    # -- querying ------------------------------------------------------------------------------
    def query(self, rows: Tensor | None, x: Tensor, seg: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Exact closest primitive of each row.

        Args:
            rows: (R,) global row ids (the cache slots), or None for all rows in order;
                x: (R, 3) positions in the pair's mesh frame; seg: (R,) pair index.
        Returns:
            dist (R,), closest point (R, 3), primitive (R,) (flat primitive id; its in-mesh index
            is ``prims.index[prim]``).
        """
        full = rows is None
        if rows is None:
            rows = torch.arange(self.n_rows, device=x.device)

        def rowvals(t: Tensor) -> Tensor:
            return t if full else t.index_select(0, rows)

        self.stats["queries"] += len(rows)
        delta = (x - rowvals(self.x0)).norm(dim=-1)
        reuse = delta <= rowvals(self.rho)  # rho < 0 never reuses
        db = (x - rowvals(self.xb)).norm(dim=-1)
        slack = rowvals(self.slack) + db
        # candidate j can be closest at x only if its lower bound at x, lbs_j - slack, is at most
        # the closest-distance bound dub + db; the list is sorted, so one evaluation suffices
        # when the second bound is above that
        thr = rowvals(self.dub) + db + slack
        one = reuse & (rowvals(self.lbs[1]) > thr)
        # every row first gets its cached nearest primitive (exact for the rows in ``one``)
        i0 = rowvals(self.id0)
        if self.prims.kind == "vertex":
            point = self.prims.centres.index_select(0, i0)
            dist = (x - point).norm(dim=-1)
        else:
            dd0, pp0 = self.prims.exact(x, i0[:, None])
            dist, point = dd0[:, 0], pp0[:, 0]
        prim = i0.clone()
        self.stats["evaluated"] += len(rows)
        # every reused row moves its evaluation base to x
        if full:
            self.xb.copy_(torch.where(reuse[:, None], x, self.xb))
            self.slack.copy_(torch.where(reuse, slack, self.slack))
            self.dub.copy_(torch.where(reuse, dist, self.dub))
            self.lbs[0].copy_(torch.where(one, dist + slack, self.lbs[0]))
        else:
            sel = torch.nonzero(reuse).flatten()
            g = rows.index_select(0, sel)
            self.xb.index_copy_(0, g, x.index_select(0, sel))
            self.slack.index_copy_(0, g, slack.index_select(0, sel))
            self.dub.index_copy_(0, g, dist.index_select(0, sel))
            self.lbs[0].index_copy_(0, g, torch.where(one, dist + slack, self.lbs[0].index_select(0, rows)
                                                      ).index_select(0, sel))
        multi = torch.nonzero(reuse & ~one).flatten()
        if len(multi):
            g = rows.index_select(0, multi)
            lb = self.lbs.index_select(1, g).T
            k_need = (lb <= thr.index_select(0, multi)[:, None]).sum(1)
            lo = 1
            for k in (2, 4, 8, self.kc):
                if k <= lo:
                    continue
                pick = torch.nonzero((k_need > lo) & (k_need <= k)).flatten()
                lo = k
                if len(pick) == 0:
                    continue
                sel = multi.index_select(0, pick)
                self.stats["evaluated"] += k * len(sel)
                gg = g.index_select(0, pick)
                ids = self.ids.index_select(0, gg)
                xs = x.index_select(0, sel)
                d, p = self.prims.exact(xs, ids[:, :k])
                d0, a = d.min(1)
                dist.index_copy_(0, sel, d0)
                point.index_copy_(0, sel, p.gather(1, a[:, None, None].expand(-1, 1, 3)).squeeze(1))
                prim.index_copy_(0, sel, ids.gather(1, a[:, None]).squeeze(1))
                # new base x: evaluated candidates get exact distances, the rest keep their bounds
                sl = slack.index_select(0, sel)
                lbk = lb.index_select(0, pick)
                lbk[:, :k] = d + sl[:, None]
                lbk, o = torch.sort(lbk, dim=1)
                ids = ids.gather(1, o)
                self.ids.index_copy_(0, gg, ids)
                self.lbs.index_copy_(1, gg, lbk.T.contiguous())
                self.id0.index_copy_(0, gg, ids[:, 0].clamp_min(0))
                self.dub.index_copy_(0, gg, d0)
        bi = torch.nonzero(~reuse).flatten()
        if len(bi):
            self.stats["rebuilt"] += len(bi)
            g = rows.index_select(0, bi)
            fresh = ~torch.isfinite(self.x0.index_select(0, g)[:, 0])
            dl = delta.index_select(0, bi)
            rho_t = torch.where(fresh, torch.full_like(dl, self.rho_init), (2.0 * dl).clamp(self.rho_min, self.rho_max))
            # a guess of the new closest distance, only to pick the first grid level to try
            d_prev = torch.where(fresh, torch.full_like(rho_t, _INF), self.dub.index_select(0, g))
            d0, pt, pr = self._build(g, x.index_select(0, bi), seg.index_select(0, bi), rho_t, d_prev)
            dist.index_copy_(0, bi, d0)
            point.index_copy_(0, bi, pt)
            prim.index_copy_(0, bi, pr)
        return dist, point, prim


class CoherentVertexQuery:
    """Exact closest vertex for moving rows on the CPU: scipy KD-trees for the searches, and
    temporal coherence so that most ICP iterations need no search at all.

    A row searched at x0 keeps its ``k`` nearest vertices and ``bound``, the distance from x0 to
    the (k+1)-th nearest. At a later position x (delta = |x - x0|) every other vertex is at
    least ``bound - delta`` away, so the nearest of the kept ones is the exact closest vertex
    whenever its distance is below that; only the rows where the test fails are searched again
    (a batched KD-tree query per pair). Same interface as :class:`ClosestQuery` (vertices only).
    (Testing the first kept vertex alone against the 2nd distance first does not pay: scan
    points lie ~1 mm off the predicted surface, where the two nearest vertices are nearly
    equidistant; in a probe on 10 benchmark pairs that test failed for 72 % of the rows.)

    Args:
        prims: the vertices of every pair (``Primitives.from_vertices``), on the CPU.
        n_rows: number of rows (query points), by global row index.
        k: vertices kept per row (2: one distance more per row and iteration than k = 1, and
            about a third of the searches).
        workers: KD-tree query threads (default: torch's CPU thread count).
    """

    def __init__(self, prims: Primitives, n_rows: int, k: int = 2, workers: int | None = None) -> None:
        if prims.kind != "vertex":
            raise ValueError("CoherentVertexQuery answers closest-vertex queries only")
        if prims.centres.device.type != "cpu":
            raise ValueError("CoherentVertexQuery runs on the CPU (scipy KD-trees); use ClosestQuery on "
                             f"{prims.centres.device}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        from scipy.spatial import cKDTree

        self.prims = prims
        self.k = int(k)
        self.workers = int(workers) if workers is not None else torch.get_num_threads()
        counts = torch.bincount(prims.seg, minlength=prims.n_seg)
        if not bool((prims.seg[1:] >= prims.seg[:-1]).all()):
            raise ValueError("CoherentVertexQuery expects the primitives grouped by pair (from_vertices order)")
        self.offsets = [0] + torch.cumsum(counts, 0).tolist()
        cen = prims.centres.detach().numpy()
        self.trees = [cKDTree(cen[self.offsets[b]:self.offsets[b + 1]]) if counts[b] > 0 else None
                      for b in range(prims.n_seg)]
        dt = prims.centres.dtype
        self.n_rows = n_rows
        self.ids = torch.zeros(n_rows, self.k, dtype=torch.int64)
        self.x0 = torch.full((n_rows, 3), _INF, dtype=dt)
        self.bound = torch.full((n_rows,), -1.0, dtype=dt)  # < 0: never searched
        self.stats = {"queries": 0, "searched": 0}

    def _search(self, x: Tensor, seg: Tensor) -> tuple[Tensor, Tensor]:
        """KD-tree search of rows x (n, 3) of pairs seg: (ids (n, k) flat vertex ids sorted by
        distance, distances (n, k + 1), +inf where the pair has fewer vertices)."""
        n = len(x)
        ids = torch.empty(n, self.k, dtype=torch.int64)
        dist = torch.empty(n, self.k + 1, dtype=x.dtype)
        order = torch.argsort(seg, stable=True)
        counts = torch.bincount(seg, minlength=len(self.trees)).tolist()
        xs = x.index_select(0, order).numpy()
        pos = 0
        for b, cnt in enumerate(counts):
            if cnt == 0:
                continue
            tree = self.trees[b]
            if tree is None:
                raise ValueError(f"pair {b} has rows but no vertices")
            d, j = tree.query(xs[pos:pos + cnt], k=self.k + 1, workers=self.workers)
            j = torch.from_numpy(j)
            missing = j >= tree.n  # fewer than k + 1 vertices: repeat the nearest (distance inf)
            j = torch.where(missing, j[:, :1], j)
            sel = order[pos:pos + cnt]
            ids[sel] = j[:, :self.k] + self.offsets[b]
            dist[sel] = torch.from_numpy(d).to(x.dtype)
            pos += cnt
        return ids, dist

    def query(self, rows: Tensor | None, x: Tensor, seg: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Exact closest vertex of each row (see :meth:`ClosestQuery.query`)."""
        full = rows is None
        if rows is None:
            rows = torch.arange(self.n_rows)

        def rowvals(t: Tensor) -> Tensor:
            return t if full else t.index_select(0, rows)

        self.stats["queries"] += len(rows)
        c = self.prims.c
        ids = rowvals(self.ids)
        delta = (x - rowvals(self.x0)).norm(dim=-1)
        flat = ids.reshape(-1)
        d2 = torch.zeros(ids.shape, dtype=x.dtype)
        for i in range(3):  # in place: one gathered array per coordinate, no other temporaries
            d2.add_(c[i].index_select(0, flat).view(ids.shape).sub_(x[:, i:i + 1]).square_())
        if self.k == 1:
            m2, prim = d2[:, 0], ids[:, 0].clone()
        else:
            m2, a = d2.min(1)
            prim = ids.gather(1, a[:, None])[:, 0]
        dist = m2.sqrt()
        # every vertex outside the kept ones is >= bound - delta away (bound < 0: never searched)
        bad = torch.nonzero(~(dist < rowvals(self.bound) - delta)).flatten()
        if len(bad):
            self.stats["searched"] += len(bad)
            xb = x.index_select(0, bad)
            new_ids, new_d = self._search(xb, seg.index_select(0, bad))
            g = rows.index_select(0, bad)
            self.ids.index_copy_(0, g, new_ids)
            self.x0.index_copy_(0, g, xb)
            self.bound.index_copy_(0, g, new_d[:, self.k].contiguous())
            dist.index_copy_(0, bad, new_d[:, 0].contiguous())
            prim.index_copy_(0, bad, new_ids[:, 0].contiguous())
        return dist, self.prims.centres.index_select(0, prim), prim
