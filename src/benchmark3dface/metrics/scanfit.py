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

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from ..geometry.mesh import similarity_from_covariance
from .geometry import similarity_from_landmarks, vertex_normals
from .reference import REFINE_PATIENCE, FitOptions, start_rotations
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
    sc, rot, t = similarity_from_covariance(cov, var_p, mu_p, mu_y, with_scale)
    tr = (rot * cov).sum((-1, -2))  # tr(D Sigma) of Umeyama's paper
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


def _turned_starts(start: tuple[Tensor, Tensor, Tensor], centres: Tensor, opts: FitOptions
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """(B,) starts -> (B K,) starts, pair-major (row ``b K + k``): start b followed by turn k of
    ``reference.start_rotations`` in the prediction's frame about the scan-frame point
    ``centres[b]`` (same rule as ``reference.turned_start``)."""
    s, rot, t = start
    dt, dev = rot.dtype, rot.device
    turns = torch.from_numpy(np.stack(start_rotations(opts.n_starts, opts.start_angle_deg))).to(dev, dt)  # (K,3,3)
    k = len(turns)
    q = rot[:, None] @ turns[None] @ rot.transpose(1, 2)[:, None]  # (B, K, 3, 3): R turn R^T
    rot_k = q @ rot[:, None]
    t_k = (q @ (t - centres)[:, None, :, None])[..., 0] + centres[:, None]
    return s.repeat_interleave(k), rot_k.reshape(-1, 3, 3), t_k.reshape(-1, 3)


def _layout(pts: list[Tensor], k: int) -> tuple[list[Tensor], list[Tensor], Tensor, Tensor, list[int]]:
    """Z-order each pair's scan points and repeat them for its k starts (segment ``b k + j``).
    Returns (sorted points per pair, orders, flat rows, segment of each row, row offsets)."""
    srt, orders = _sorted(pts)
    rep = [p_ for p_ in srt for _ in range(k)]
    flat, seg = _flatten(rep)
    offsets = [0] + torch.cumsum(torch.tensor([len(p_) for p_ in rep]), 0).tolist()
    return srt, orders, flat, seg, offsets


def _rows_of(offsets: list[int], g: int, dev: torch.device) -> Tensor:
    return torch.arange(offsets[g], offsets[g + 1], device=dev)


def _map_rows(y: Tensor, s: Tensor, rot: Tensor, t: Tensor, out: Tensor) -> Tensor:
    """x = ((y - t) @ R) / s into ``out`` (the reference's operation order)."""
    torch.sub(y, t, out=out)
    out.copy_(out @ rot)
    return out.div_(s)


def _map_segments(flat: Tensor, offsets: list[int], s: Tensor, rot: Tensor, t: Tensor) -> Tensor:
    """Every row mapped into its segment's prediction frame, one segment at a time (no
    per-row (3, 3) gather)."""
    x = torch.empty_like(flat)
    for g in range(len(offsets) - 1):
        if offsets[g + 1] > offsets[g]:
            _map_rows(flat[offsets[g]:offsets[g + 1]], s[g], rot[g], t[g], x[offsets[g]:offsets[g + 1]])
    return x


def _segment_rms(values: Tensor, offsets: list[int]) -> Tensor:
    return torch.stack([values[offsets[g]:offsets[g + 1]].pow(2).mean().sqrt() if offsets[g + 1] > offsets[g]
                        else values.new_tensor(math.inf) for g in range(len(offsets) - 1)])


def _pick(scores: Tensor, k: int) -> Tensor:
    """Index of the best start of each pair (the first of equal scores), scores (B K,)."""
    return torch.argmin(scores.reshape(-1, k).cpu(), dim=1)


def refine_point_to_plane(query, flat: Tensor, offsets: list[int], segs: list[int], normals: Tensor,
                          sims: tuple[Tensor, Tensor, Tensor], opts: FitOptions
                          ) -> tuple[tuple[Tensor, Tensor, Tensor], Tensor, Tensor]:
    """Batched ``reference.refine_point_to_plane_np``: pair b owns the rows of segment
    ``segs[b]``; ``normals`` are the vertex normals of the query's primitives. Returns (best
    similarities (B,), their |residuals| over the pairs' rows (flat, pair order), updates
    made (B,))."""
    s, rot, t = (v.clone() for v in sims)
    dev, dt = flat.device, flat.dtype
    nb = len(segs)
    rows_b = [_rows_of(offsets, g, dev) for g in segs]
    pos_b = [0] + torch.cumsum(torch.tensor([len(r) for r in rows_b]), 0).tolist()
    best_rmse = torch.full((nb,), math.inf, dtype=dt)
    best = (s.clone(), rot.clone(), t.clone())
    best_d = torch.zeros(pos_b[-1], dtype=dt, device=dev)
    prev = [math.inf] * nb
    stall = [0] * nb
    iters = torch.zeros(nb, dtype=torch.int64)
    active = [b for b in range(nb) if len(rows_b[b])]
    while active:
        rows = torch.cat([rows_b[b] for b in active])
        sg = torch.cat([torch.full((len(rows_b[b]),), segs[b], dtype=torch.int64, device=dev) for b in active])
        x = torch.empty(len(rows), 3, dtype=dt, device=dev)
        pos = 0
        for b in active:
            n = len(rows_b[b])
            _map_rows(flat.index_select(0, rows_b[b]), s[b], rot[b], t[b], x[pos:pos + n])
            pos += n
        _, v, prim = query.query(rows, x, sg)
        nrm = normals.index_select(0, prim)
        still = []
        pos = 0
        for b in active:
            n = len(rows_b[b])
            sl = slice(pos, pos + n)
            pos += n
            r = s[b] * ((x[sl] - v[sl]) * nrm[sl]).sum(1)
            rmse = float(r.pow(2).mean().sqrt())
            stall[b] = 0 if rmse < float(best_rmse[b]) - opts.tol else stall[b] + 1
            if rmse < float(best_rmse[b]):
                best_rmse[b] = rmse
                best[0][b], best[1][b], best[2][b] = s[b], rot[b], t[b]
                best_d[pos_b[b]:pos_b[b + 1]] = r.abs()
            if int(iters[b]) >= opts.refine_iter or abs(prev[b] - rmse) < opts.tol or stall[b] >= REFINE_PATIENCE:
                continue
            prev[b] = rmse
            iters[b] += 1
            y = flat.index_select(0, rows_b[b])
            m = nrm[sl] @ rot[b].T
            q = s[b] * v[sl] @ rot[b].T
            cols = [torch.linalg.cross(y - t[b], m)] + ([(q * m).sum(1)[:, None]] if opts.with_scale else []) + [m]
            jac = torch.cat(cols, 1)
            a = jac.T @ jac
            tr = float(torch.trace(a))
            if not math.isfinite(tr) or tr <= 0:  # nothing to fit (degenerate crop)
                continue
            a = a + 1e-12 * tr * torch.eye(len(a), dtype=dt, device=dev)
            dx, info = torch.linalg.solve_ex(a, jac.T @ r)
            if int(info) != 0 or not bool(torch.isfinite(dx).all()):
                continue
            ds = dx[3] if opts.with_scale else 0.0
            rot[b] = _rodrigues(dx[:3]) @ rot[b]
            s[b] = s[b] * (1.0 + ds)
            t[b] = t[b] + dx[-3:]
            still.append(b)
        active = still
    return best, best_d, iters


def _rodrigues(w: Tensor) -> Tensor:
    """Rotation matrix of a rotation vector (radians), same formula as ``reference.rodrigues_np``."""
    th = float(w.norm())
    if th < 1e-300:
        return torch.eye(3, dtype=w.dtype, device=w.device)
    k = w / th
    z = torch.zeros((), dtype=w.dtype, device=w.device)
    kx = torch.stack([torch.stack([z, -k[2], k[1]]), torch.stack([k[2], z, -k[0]]), torch.stack([-k[1], k[0], z])])
    return torch.eye(3, dtype=w.dtype, device=w.device) + math.sin(th) * kx + (1 - math.cos(th)) * (kx @ kx)


def micc_fit_torch(pred_vertices: list[Tensor], pred_triangles: list[Tensor], scans: list[Tensor],
                   nose_tips: list[Tensor], radius: float = 95.0, forehead_cut: float | None = None,
                   up=(0.0, 1.0, 0.0), pred_lm: list[Tensor | None] | None = None,
                   scan_lm: list[Tensor | None] | None = None, pred_nose: list[Tensor | None] | None = None,
                   opts: FitOptions | None = None, init: str = "auto", search: str = "auto",
                   **query_kw) -> BatchFit:
    """Batched ``reference.micc_reference`` (see there for the protocol, the starts, the
    point-to-plane refinement and ``init``).

    ``search``: how the closest predicted vertices are found -- ``kdtree``
    (:class:`~.spatial.CoherentVertexQuery`: scipy KD-trees plus temporal coherence, CPU only),
    ``grid`` (:class:`~.spatial.ClosestQuery`: torch only, CPU or CUDA), or ``auto`` (``kdtree``
    on the CPU, ``grid`` elsewhere). Both are exact; ``query_kw`` go to the chosen class.
    All starts of all pairs run in one batch (segment ``b K + k``); the refinement continues
    on the winning start's rows, so its closest-vertex caches carry over."""
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
    k = opts.n_starts if opts.max_iter > 0 else 1
    rep = [v for v in preds for _ in range(k)]
    prims = Primitives.from_vertices(rep)
    srt, orders, flat, seg, offsets = _layout(pts, k)
    if _cpu_search(search, SEARCHES, dev):
        query = CoherentVertexQuery(prims, len(flat), **query_kw)
    else:
        query = ClosestQuery(prims, len(flat), **query_kw)
    normals = torch.cat([vertex_normals(v, f.to(dev).long()) for v, f in zip(preds, pred_triangles)
                         for _ in range(k)])
    if opts.max_iter > 0:
        centres = torch.stack([p_.mean(0) for p_ in pts])
        starts = _turned_starts(start, centres, opts)
        s_k, r_k, t_k, it_k = icp_batched(query, flat, offsets, torch.stack([v.mean(0) for v in rep]), starts, opts)
        x = _map_segments(flat, offsets, s_k, r_k, t_k)
        _, v, prim = query.query(None, x, seg)
        plane = s_k[seg] * ((x - v) * normals.index_select(0, prim)).sum(-1)
        scores = _segment_rms(plane, offsets)
        pick = _pick(scores, k)
        g = (torch.arange(b) * k + pick).tolist()
        gi = torch.tensor(g, device=dev)
        sims = (s_k[gi], r_k[gi], t_k[gi])
        (s, rot, t), dist, n_ref = refine_point_to_plane(query, flat, offsets, g, normals, sims, opts)
        iters = it_k[gi]
        stats = {**dict(query.stats), "start": pick, "start_rmse": scores.reshape(b, k).cpu(),
                 "refine_iterations": n_ref}
        dists = dist.split([len(p_) for p_ in srt])
    else:
        s, rot, t = start
        x = _map_segments(flat, offsets, s, rot, t)
        _, v, prim = query.query(None, x, seg)
        dist = s[seg] * ((x - v) * normals.index_select(0, prim)).sum(-1).abs()
        iters = torch.zeros(b, dtype=torch.int64, device=dev)
        stats = dict(query.stats)
        dists = dist.split([len(p_) for p_ in srt])
    return BatchFit(_unsorted(torch.cat(list(dists)), orders), s, rot, t, iters, kept, stats)


def now_start_torch(pred_lm7: Tensor, scan_lm7: Tensor, with_scale: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Batched ``reference.now_start``: a similarity Procrustes of (B, 7, 3) landmarks, its scale
    replaced by 1 for the metrical variant (the official order of operations)."""
    s, rot, t = similarity_from_landmarks(pred_lm7, scan_lm7, True)
    return (s if with_scale else torch.ones_like(s)), rot, t


def now_fit_torch(pred_vertices: list[Tensor], pred_triangles: list[Tensor], scans: list[Tensor],
                  scan_lm7: list[Tensor], pred_lm7: list[Tensor], opts: FitOptions | None = None,
                  radius_factor: float = 1.4, centre_factor: float = 0.3, init: str = "auto", search: str = "auto",
                  **query_kw) -> BatchFit:
    """Batched ``reference.now_reference`` (see there for the protocol, the starts and ``init``).

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
    start = now_start_torch(torch.stack([m.to(dev, dt) for m in pred_lm7]), lms, opts.with_scale) \
        if init == "auto" else _identity(b, dev)
    k = opts.n_starts if opts.max_iter > 0 else 1
    rep = [v for v in preds for _ in range(k)]
    prims = Primitives.from_triangles(rep, [f.to(dev) for f in pred_triangles for _ in range(k)])
    srt, orders, flat, seg, offsets = _layout(pts, k)
    if _cpu_search(search, NOW_SEARCHES, dev):
        from .coherent_tri import CoherentTriangleQuery

        query = CoherentTriangleQuery(prims, len(flat), **query_kw)
    else:
        query = ClosestQuery(prims, len(flat), **query_kw)
    if opts.max_iter > 0:
        centres = torch.stack([p_.mean(0) for p_ in pts])
        starts = _turned_starts(start, centres, opts)
        s_k, r_k, t_k, it_k = icp_batched(query, flat, offsets, torch.stack([v.mean(0) for v in rep]), starts, opts)
    else:
        (s_k, r_k, t_k), it_k = start, torch.zeros(b, dtype=torch.int64, device=dev)
    x = _map_segments(flat, offsets, s_k, r_k, t_k)
    d, _, _ = query.query(None, x, seg)
    d = s_k[seg] * d
    scores = _segment_rms(d, offsets)
    pick = _pick(scores, k)
    gi = torch.arange(b) * k + pick
    dists = [d[offsets[g]:offsets[g + 1]] for g in gi.tolist()]
    gi = gi.to(dev)
    stats = {**dict(query.stats), "start": pick, "start_rms": scores.reshape(b, k).cpu()}
    return BatchFit(_unsorted(torch.cat(dists), orders), s_k[gi], r_k[gi], t_k[gi], it_k[gi], kept, stats)


def _identity(b: int, dev: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    dt = torch.float64
    return (torch.ones(b, dtype=dt, device=dev), torch.eye(3, dtype=dt, device=dev).repeat(b, 1, 1),
            torch.zeros(b, 3, dtype=dt, device=dev))


def _cast(items: list[Tensor | None] | None, dev: torch.device) -> list[Tensor | None] | None:
    if items is None:
        return None
    return [None if v is None else v.to(dev, torch.float64) for v in items]
