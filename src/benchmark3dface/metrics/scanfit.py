"""Batched torch path of the scan protocols (MICC / Deng and NoW): many (prediction, scan)
pairs at once, CPU or CUDA, float64.

Same algorithm, step for step, as ``reference.py`` (crop, initial similarity, ICP with the
same stopping rule, final distances); the speed comes from evaluating all pairs together and
from temporal coherence: each ICP iteration's closest points are proven exact from what the
previous iterations found, and searched again only where that proof fails
(``spatial.CoherentVertexQuery`` with scipy KD-trees for MICC on the CPU,
``coherent_tri.CoherentTriangleQuery`` compiled with numba for NoW on the CPU,
``spatial.ClosestQuery``, plain torch, for both on CUDA).

Units: millimetres. Similarities ``(s, R, t)`` map prediction -> scan: ``y = s R x + t``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .geometry import inverse_similarity, similarity_from_landmarks, vertex_normals
from .reference import FitOptions
from .spatial import ClosestQuery, CoherentVertexQuery, Primitives, morton_order

if TYPE_CHECKING:  # numba is imported only when the NoW CPU search runs
    from .coherent_tri import CoherentTriangleQuery

#: closest-vertex searches of the MICC torch path (see ``micc_fit_torch``)
SEARCHES = ("auto", "kdtree", "grid")
#: closest-point-on-triangle searches of the NoW torch path (see ``now_fit_torch``)
NOW_SEARCHES = ("auto", "numba", "grid")


def check_search(search: str, choices: tuple[str, ...] = SEARCHES) -> str:
    if search not in choices:
        raise ValueError(f"search must be one of {choices}, got {search!r}")
    return search


def _cpu_search(search: str, choices: tuple[str, ...], dev: torch.device) -> bool:
    """Whether ``search`` (one of ``choices``: auto, the CPU-only search, grid) picks the CPU-only
    search: when named, or for ``auto`` on the CPU."""
    return check_search(search, choices) == choices[1] or (search == "auto" and dev.type == "cpu")


@dataclass
class BatchFit:
    """Per-pair results of a batched fit (lists of length B; tensors on the input device)."""

    distances: list[Tensor]
    scale: Tensor
    rotation: Tensor
    translation: Tensor
    iterations: Tensor
    kept: list[Tensor]
    stats: dict


def _flatten(points: list[Tensor]) -> tuple[Tensor, Tensor]:
    dev = points[0].device
    seg = torch.cat([torch.full((len(p),), i, dtype=torch.int64, device=dev) for i, p in enumerate(points)])
    return torch.cat(points), seg


def _sorted(points: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    """Each pair's scan points in Z-order (``spatial.morton_order``), with the permutations."""
    orders = [morton_order(p) for p in points]
    return [p[o] for p, o in zip(points, orders)], orders


def _unsorted(values: Tensor, orders: list[Tensor]) -> list[Tensor]:
    """Split flat per-row values of Z-ordered pairs back into each pair's original row order."""
    out = []
    for v, o in zip(values.split([len(o) for o in orders]), orders):
        u = torch.empty_like(v)
        u[o] = v
        out.append(u)
    return out


def _umeyama_from_moments(n: Tensor, sp: Tensor, sy: Tensor, syp: Tensor, spp: Tensor, syy: Tensor,
                          with_scale: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Similarity ``y ~ s R p + t`` (Umeyama) from weighted moments of centred rows, batched over
    pairs: n (B,) total weight, sp / sy (B, 3) sums, syp (B, 3, 3) sum of y p^T, spp / syy (B,)
    sums of |p|^2 / |y|^2. Returns (s, R, t, rms residual); t is for the centred coordinates."""
    w = n.clamp_min(1e-300)
    mu_p, mu_y = sp / w[:, None], sy / w[:, None]
    cov = syp / w[:, None, None] - mu_y[:, :, None] * mu_p[:, None, :]
    var_p = spp / w - (mu_p * mu_p).sum(1)
    var_y = syy / w - (mu_y * mu_y).sum(1)
    u, sig, vt = torch.linalg.svd(cov)
    d = torch.sign(torch.det(u @ vt))
    d = torch.where(d == 0, torch.ones_like(d), d)
    fix = torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1)
    rot = (u * fix[:, None, :]) @ vt
    tr = (sig * fix).sum(-1)
    sc = tr / var_p.clamp_min(1e-300) if with_scale else torch.ones_like(tr)
    t = mu_y - sc[:, None] * (rot @ mu_p[:, :, None])[..., 0]
    resid = (var_y - 2 * sc * tr + sc * sc * var_p).clamp_min(0).sqrt()
    return sc, rot, t, resid


def icp_batched(query: ClosestQuery | CoherentVertexQuery | CoherentTriangleQuery, scan: Tensor, offsets: list[int], p_ref: Tensor,
                init: tuple[Tensor, Tensor, Tensor], opts: FitOptions) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """ICP of fixed predictions (behind ``query``) onto flat scan rows, pair b owning rows
    ``offsets[b]:offsets[b+1]``; ``p_ref`` (B, 3) a fixed point of each prediction (centroid).

    Same iteration and stopping rule as ``reference.icp_similarity_np``, per pair: a pair that
    has converged is frozen while the others go on. The Umeyama step works on moments of rows
    centred on ``p_ref`` and the scan centroid (one GEMM per pair; the scan's own moments are
    computed once), its residual from the closed form sigma_y^2 - 2 s tr(DS) + s^2 sigma_p^2.
    Returns (s (B,), R (B, 3, 3), t (B, 3), iterations (B,)).
    """
    n_seg = len(offsets) - 1
    s, rot, t = (v.clone() for v in init)
    dev, dt = scan.device, scan.dtype
    sizes = [offsets[b + 1] - offsets[b] for b in range(n_seg)]
    seg_all = torch.repeat_interleave(torch.arange(n_seg, device=dev), torch.tensor(sizes, device=dev))
    y_ref = torch.stack([scan[offsets[b]:offsets[b + 1]].mean(0) if sizes[b] else torch.zeros(3, dtype=dt, device=dev)
                         for b in range(n_seg)])
    yc_all = scan - y_ref[seg_all]
    # constant moments of the (unweighted) centred scan
    sy0 = torch.stack([yc_all[offsets[b]:offsets[b + 1]].sum(0) for b in range(n_seg)])
    syy0 = torch.stack([yc_all[offsets[b]:offsets[b + 1]].pow(2).sum() for b in range(n_seg)])
    n_all = torch.tensor([float(n) for n in sizes], dtype=dt, device=dev)
    yc1 = torch.cat([yc_all, torch.ones(len(scan), 1, dtype=dt, device=dev)], 1)  # [y - y_ref, 1]
    prev = torch.full((n_seg,), torch.inf, dtype=dt, device=dev)
    iters = torch.zeros(n_seg, dtype=torch.int64, device=dev)
    active = torch.tensor([n > 0 for n in sizes], device=dev)
    rows_all = torch.arange(len(scan), device=dev)
    buf = torch.empty_like(scan)
    tmp = torch.empty((max(sizes, default=0), 3), dtype=dt, device=dev)
    for it in range(1, opts.max_iter + 1):
        act = torch.nonzero(active).flatten().tolist()
        if not act:
            break
        if len(act) == n_seg:
            rows, sg = None, seg_all
        else:
            rows = torch.cat([rows_all[offsets[b]:offsets[b + 1]] for b in act])
            sg = seg_all.index_select(0, rows)
        # x = ((y - t) @ R) / s per pair, written in place into one buffer (the same operations
        # as the reference, so the same rounding)
        x = buf[:sum(sizes[b] for b in act)]
        pos = 0
        for b in act:
            n = sizes[b]
            xb = x[pos:pos + n]
            torch.sub(scan[offsets[b]:offsets[b + 1]], t[b], out=tmp[:n])
            torch.matmul(tmp[:n], rot[b], out=xb)
            xb.div_(s[b])
            pos += n
        d, p, _ = query.query(rows, x, sg)
        n_b, sp_b, sy_b, syp_b, spp_b, syy_b = [], [], [], [], [], []
        pos = 0
        for b in act:
            n = sizes[b]
            pc = p[pos:pos + n] - p_ref[b]
            yc = yc_all[offsets[b]:offsets[b + 1]]
            if opts.max_corr_mm is None:
                n_b.append(n_all[b])
                sy_b.append(sy0[b])
                syy_b.append(syy0[b])
                g = yc1[offsets[b]:offsets[b + 1]].T @ pc  # (4, 3): sum y p^T and sum p, one pass
                sp_b.append(g[3])
                spp_b.append(torch.dot(pc.view(-1), pc.view(-1)))
                syp_b.append(g[:3])
            else:
                w = (d[pos:pos + n] * s[b] <= opts.max_corr_mm).to(dt)
                wp = pc * w[:, None]
                n_b.append(w.sum())
                sy_b.append(w @ yc)
                syy_b.append(w @ yc.pow(2).sum(1))
                sp_b.append(wp.sum(0))
                spp_b.append((wp * pc).sum())
                syp_b.append(yc.T @ wp)
            pos += n
        sc, r2, tc, resid = _umeyama_from_moments(torch.stack(n_b), torch.stack(sp_b), torch.stack(sy_b),
                                                  torch.stack(syp_b), torch.stack(spp_b), torch.stack(syy_b),
                                                  opts.with_scale)
        idx = torch.tensor(act, device=dev)
        # undo the centring: y - y_ref = s R (p - p_ref) + tc  =>  t = y_ref + tc - s R p_ref
        t2 = y_ref[idx] + tc - sc[:, None] * (r2 @ p_ref[idx][:, :, None])[..., 0]
        s[idx], rot[idx], t[idx] = sc, r2, t2
        iters[idx] = it
        conv = (prev[idx] - resid).abs() < opts.tol
        prev[idx] = resid
        active[idx[conv]] = False
    return s, rot, t, iters


def _crop_micc(scan: Tensor, nose: Tensor, radius: float, forehead_cut: float | None, up: Tensor) -> Tensor:
    keep = (scan - nose).norm(dim=-1) <= radius
    if forehead_cut is not None:
        keep &= (scan - nose) @ up <= forehead_cut
    return keep


def _init(pred_lm: list[Tensor | None] | None, scan_lm: list[Tensor | None] | None, pred_anchor: list[Tensor | None],
          scan_anchor: list[Tensor | None], preds: list[Tensor], scans: list[Tensor], with_scale: bool
          ) -> tuple[Tensor, Tensor, Tensor]:
    """Initial similarities, same rule as ``reference._init_transform``."""
    b = len(preds)
    dt, dev = preds[0].dtype, preds[0].device
    s = torch.ones(b, dtype=dt, device=dev)
    rot = torch.eye(3, dtype=dt, device=dev).repeat(b, 1, 1)
    t = torch.zeros(b, 3, dtype=dt, device=dev)
    lm_rows = []
    for i in range(b):
        pl = pred_lm[i] if pred_lm is not None else None
        sl = scan_lm[i] if scan_lm is not None else None
        if pl is not None and sl is not None:
            ok = torch.isfinite(pl).all(1) & torch.isfinite(sl).all(1)
            if int(ok.sum()) >= 3:
                lm_rows.append(i)
                continue
        if pred_anchor[i] is not None and scan_anchor[i] is not None:
            t[i] = scan_anchor[i] - pred_anchor[i]
        else:
            t[i] = scans[i].mean(0) - preds[i].mean(0)
    if lm_rows:
        k = max(len(pred_lm[i]) for i in lm_rows)  # type: ignore[index]
        src = torch.full((len(lm_rows), k, 3), torch.nan, dtype=dt, device=dev)
        dst = torch.full_like(src, torch.nan)
        for j, i in enumerate(lm_rows):
            src[j, :len(pred_lm[i])] = pred_lm[i]  # type: ignore[index]
            dst[j, :len(scan_lm[i])] = scan_lm[i]  # type: ignore[index]
        s_l, r_l, t_l = similarity_from_landmarks(src, dst, with_scale)
        idx = torch.tensor(lm_rows, device=dev)
        s[idx], rot[idx], t[idx] = s_l, r_l, t_l
    return s, rot, t


def micc_fit_torch(pred_vertices: list[Tensor], pred_triangles: list[Tensor], scans: list[Tensor],
                   nose_tips: list[Tensor], radius: float = 95.0, forehead_cut: float | None = None,
                   up=(0.0, 1.0, 0.0), pred_lm: list[Tensor | None] | None = None,
                   scan_lm: list[Tensor | None] | None = None, pred_nose: list[Tensor | None] | None = None,
                   opts: FitOptions | None = None, init: str = "auto", search: str = "auto",
                   **query_kw) -> BatchFit:
    """Batched ``reference.micc_reference`` (see there for the protocol and ``init``).

    ``search``: how the closest predicted vertices are found -- ``kdtree``
    (:class:`~.spatial.CoherentVertexQuery`: scipy KD-trees plus temporal coherence, CPU only),
    ``grid`` (:class:`~.spatial.ClosestQuery`: torch only, CPU or CUDA), or ``auto`` (``kdtree``
    on the CPU, ``grid`` elsewhere). Both are exact; ``query_kw`` go to the chosen class."""
    opts = opts or FitOptions()
    dt = torch.float64
    preds = [v.to(dt) for v in pred_vertices]
    dev = preds[0].device
    up_t = torch.as_tensor(up, dtype=dt, device=dev)
    scans = [sc.to(dev, dt) for sc in scans]
    noses = [n.to(dev, dt) for n in nose_tips]
    kept = [_crop_micc(sc, n, radius, forehead_cut, up_t) for sc, n in zip(scans, noses)]
    pts = [sc[k] for sc, k in zip(scans, kept)]
    b = len(preds)
    start = _init(_cast(pred_lm, dev), _cast(scan_lm, dev), _cast(pred_nose, dev) or [None] * b, noses, preds, pts,
                  opts.with_scale) if init == "auto" else _identity(b, dev)
    prims = Primitives.from_vertices(preds)
    pts, orders = _sorted(pts)
    flat, seg = _flatten(pts)
    offsets = [0] + torch.cumsum(torch.tensor([len(p_) for p_ in pts]), 0).tolist()
    if _cpu_search(search, SEARCHES, dev):
        query = CoherentVertexQuery(prims, len(flat), **query_kw)
    else:
        query = ClosestQuery(prims, len(flat), **query_kw)
    s, rot, t, iters = icp_batched(query, flat, offsets, torch.stack([v.mean(0) for v in preds]), start, opts) if opts.max_iter > 0 else (
        *start, torch.zeros(b, dtype=torch.int64, device=dev))
    x = inverse_similarity(flat[:, None, :], s[seg], rot[seg], t[seg])[:, 0]
    _, p, prim = query.query(None, x, seg)
    normals = torch.cat([vertex_normals(v, f.to(dev).long()) for v, f in zip(preds, pred_triangles)])
    dist = s[seg] * ((x - p) * normals[prim]).sum(-1).abs()
    return BatchFit(_unsorted(dist, orders), s, rot, t, iters, kept, dict(query.stats))


def now_fit_torch(pred_vertices: list[Tensor], pred_triangles: list[Tensor], scans: list[Tensor],
                  scan_lm7: list[Tensor], pred_lm7: list[Tensor], opts: FitOptions | None = None,
                  radius_factor: float = 1.4, centre_factor: float = 0.3, init: str = "auto", search: str = "auto",
                  **query_kw) -> BatchFit:
    """Batched ``reference.now_reference`` (see there for the protocol and ``init``).

    ``search``: how the closest points on the predicted triangles are found -- ``numba``
    (:class:`~.coherent_tri.CoherentTriangleQuery`: compiled, CPU only), ``grid``
    (:class:`~.spatial.ClosestQuery`: torch only, CPU or CUDA), or ``auto`` (``numba`` on the
    CPU, ``grid`` elsewhere). Both are exact; ``query_kw`` go to the chosen class."""
    from .geometry import now_crop_sphere

    opts = opts or FitOptions()
    dt = torch.float64
    preds = [v.to(dt) for v in pred_vertices]
    dev = preds[0].device
    scans = [sc.to(dev, dt) for sc in scans]
    lms = torch.stack([m.to(dev, dt) for m in scan_lm7])
    centre, rad = now_crop_sphere(lms, radius_factor, centre_factor)
    kept = [(sc - c).norm(dim=-1) <= r for sc, c, r in zip(scans, centre, rad)]
    pts = [sc[k] for sc, k in zip(scans, kept)]
    b = len(preds)
    start = similarity_from_landmarks(torch.stack([m.to(dev, dt) for m in pred_lm7]), lms, opts.with_scale) \
        if init == "auto" else _identity(b, dev)
    prims = Primitives.from_triangles(preds, [f.to(dev) for f in pred_triangles])
    pts, orders = _sorted(pts)
    flat, seg = _flatten(pts)
    offsets = [0] + torch.cumsum(torch.tensor([len(p_) for p_ in pts]), 0).tolist()
    if _cpu_search(search, NOW_SEARCHES, dev):
        from .coherent_tri import CoherentTriangleQuery

        query = CoherentTriangleQuery(prims, len(flat), **query_kw)
    else:
        query = ClosestQuery(prims, len(flat), **query_kw)
    s, rot, t, iters = icp_batched(query, flat, offsets, torch.stack([v.mean(0) for v in preds]), start, opts) if opts.max_iter > 0 else (
        *start, torch.zeros(b, dtype=torch.int64, device=dev))
    x = inverse_similarity(flat[:, None, :], s[seg], rot[seg], t[seg])[:, 0]
    d, _, _ = query.query(None, x, seg)
    return BatchFit(_unsorted(s[seg] * d, orders), s, rot, t, iters, kept, dict(query.stats))


def _identity(b: int, dev: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    dt = torch.float64
    return (torch.ones(b, dtype=dt, device=dev), torch.eye(3, dtype=dt, device=dev).repeat(b, 1, 1),
            torch.zeros(b, 3, dtype=dt, device=dev))


def _cast(items: list[Tensor | None] | None, dev: torch.device) -> list[Tensor | None] | None:
    if items is None:
        return None
    return [None if v is None else v.to(dev, torch.float64) for v in items]
