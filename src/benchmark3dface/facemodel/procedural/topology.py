"""Mesh topology of the procedural face: a mirror-symmetric grid over the canonical chart.

Vertices sit on a regular grid of spacing ``SPACING`` mm in the canonical ``(u, v)`` chart of
``anatomy.py`` (``u`` across the face, ``v`` up), restricted to a face-shaped outline (forehead
to below the chin, ear to ear, no ears or neck). The grid has a column at ``u = 0`` and a row
on the mouth seam; along the seam, between the inner mouth corners, every vertex is doubled (an
upper-lip and a lower-lip copy) so the lips separate when the jaw opens. Quads are split along
mirrored diagonals on the two halves, so the mesh is exactly left-right symmetric and the
symmetry map is exact. Triangles are counter-clockwise seen from the front (+z).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..regions import L_BROW, L_EYE, L_LIP, NOSE, R_BROW, R_EYE, SKIN, U_LIP
from .anatomy import CANON, as_namespace, eye_fissure, mean_params, pchip

_MEAN = as_namespace(mean_params())

SPACING = 1.1
"""Grid spacing in the canonical chart (mm)."""

U_MAX = 118.0
"""Half-width of the chart (mm of arc length from the midline)."""


@dataclass(frozen=True)
class Topology:
    """uv (N, 2) canonical coordinates (mm); side (N,) +1 upper-lip seam copy, -1 lower-lip
    copy, 0 elsewhere; triangles (F, 3) int64; landmarks68 (68,); symmetry (N,); regions (N,);
    grid_ij (N, 2) integer grid column/row of each vertex."""

    uv: np.ndarray
    side: np.ndarray
    triangles: np.ndarray
    landmarks68: np.ndarray
    symmetry: np.ndarray
    regions: np.ndarray
    grid_ij: np.ndarray

    @property
    def num_vertices(self) -> int:
        return self.uv.shape[0]


# ---------------------------------------------------------------------------------------------
# outline and landmark curves (canonical chart)
# ---------------------------------------------------------------------------------------------
def jaw_curve(au: np.ndarray) -> np.ndarray:
    """Height of the jaw line (mandible border, chin bottom) at |u| = au (mm)."""
    c = CANON
    ku = np.array([0.0, 15.0, 30.0, 46.0, 70.0, 89.0, 101.0, 108.0, 112.0, 118.0])
    kv = c.v_me + np.array([0.0, 3.0, 6.5, 14.0, 31.0, 52.0, 71.0, 91.0, 0.0, 0.0])
    kv[-2:] = c.v_eye + 2.0, c.v_eye + 30.0
    return pchip(ku, kv, au)


def top_curve(au: np.ndarray) -> np.ndarray:
    """Upper border of the crop (forehead) at |u| = au."""
    return CANON.v_top - 0.0022 * au ** 2


def inside_outline(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    au = np.abs(u)
    margin = 9.0 - 3.0 * np.clip(au / 100.0, 0.0, 1.0)
    return (au <= U_MAX + 1e-9) & (v >= jaw_curve(au) - margin) & (v <= top_curve(au))


def _along(points: np.ndarray, n: int) -> np.ndarray:
    """n points at equal arc length along a polyline (K, 2)."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    s = np.linspace(0.0, cum[-1], n)
    return np.stack([np.interp(s, cum, points[:, 0]), np.interp(s, cum, points[:, 1])], 1)


def brow_curve(x: np.ndarray) -> np.ndarray:
    """Brow centre line on the viewer's right, x in [0, 1] from the inner to the outer end."""
    c = CANON
    u = (c.u_en - 6.0) + x * (c.u_ex + 17.0 - (c.u_en - 6.0))
    v = c.v_brow - 5.0 + 5.5 * np.sin(np.pi * np.clip(x, 0, 1) ** 0.75) - 5.0 * x ** 2
    return np.stack([u, v], -1)


def landmark_uv() -> tuple[np.ndarray, np.ndarray]:
    """Canonical (u, v) of the iBUG-68 landmarks (68, 2), and the seam side of each (68,)."""
    c = CANON
    lm = np.zeros((68, 2))
    side = np.zeros(68, dtype=np.int64)
    # jaw 0..16 from the viewer's left (u < 0) around the chin
    au = np.array([0.0, 15.0, 30.0, 46.0, 70.0, 89.0, 101.0, 108.0, 112.0])
    right = np.stack([au, jaw_curve(au)], 1)  # chin (8) -> right ear (16), on the jaw line
    lm[8:17] = right
    lm[0:8] = right[1:][::-1] * np.array([-1.0, 1.0])
    # brows: 17..21 viewer's left outer -> inner; 22..26 right inner -> outer
    b = brow_curve(np.linspace(0.0, 1.0, 5))
    lm[22:27] = b
    lm[17:22] = b[::-1] * np.array([-1.0, 1.0])
    # nose ridge 27..30 and base 31..35
    lm[27] = (0.0, c.v_nasion - 1.0)
    lm[30] = (0.0, 0.0)
    lm[28] = (0.0, (2 * lm[27, 1] + lm[30, 1]) / 3)
    lm[29] = (0.0, (lm[27, 1] + 2 * lm[30, 1]) / 3)
    lm[33] = (0.0, c.v_sn)
    lm[34] = (0.4 * c.u_al, c.v_sn + 0.6)
    lm[35] = (c.u_al - 4.0, c.v_sn + 1.5)
    lm[32] = lm[34] * (-1.0, 1.0)
    lm[31] = lm[35] * (-1.0, 1.0)
    # eyes: right eye 42 inner, 43/44 upper lid thirds, 45 outer, 46/47 lower lid thirds
    thirds = np.array([c.u_en + (c.u_ex - c.u_en) / 3, c.u_en + 2 * (c.u_ex - c.u_en) / 3])
    _, _, up, lo = eye_fissure(thirds)
    lm[42] = (c.u_en, c.v_en)
    lm[43] = (thirds[0], up[0])
    lm[44] = (thirds[1], up[1])
    lm[45] = (c.u_ex, c.v_ex)
    lm[46] = (thirds[1], lo[1])
    lm[47] = (thirds[0], lo[0])
    mirror = {36: 45, 37: 44, 38: 43, 39: 42, 40: 47, 41: 46}
    for a, bb in mirror.items():
        lm[a] = lm[bb] * (-1.0, 1.0)
    # mouth: 48 left corner ... 54 right corner (upper), 55..59 lower, 60..67 inner
    ls_h = _MEAN.upper_vermilion_height  # the vermilion borders of the mean face
    li_h = _MEAN.lower_vermilion_height
    sto = c.v_sto
    lm[54] = (c.u_ch, sto + 0.5)
    lm[53] = (0.62 * c.u_ch, sto + 0.75 * ls_h)
    lm[52] = (5.0, sto + ls_h + 0.5)
    lm[51] = (0.0, sto + ls_h)
    lm[55] = (0.62 * c.u_ch, sto - 0.7 * li_h)
    lm[56] = (0.3 * c.u_ch, sto - 0.95 * li_h)
    lm[57] = (0.0, sto - li_h)
    for a, bb in {48: 54, 49: 53, 50: 52, 59: 55, 58: 56}.items():
        lm[a] = lm[bb] * (-1.0, 1.0)
    uc = inner_corner_u()
    lm[64] = (uc, sto)
    lm[60] = (-uc, sto)
    lm[63] = (0.42 * uc, sto)
    lm[62] = (0.0, sto)
    lm[61] = (-0.42 * uc, sto)
    lm[65] = (0.42 * uc, sto)
    lm[66] = (0.0, sto)
    lm[67] = (-0.42 * uc, sto)
    side[61:64] = 1
    side[65:68] = -1
    return lm, side


def inner_corner_u() -> float:
    """|u| of the inner mouth corners (the ends of the lip seam), on a grid column."""
    return round((CANON.u_ch - 2.5) / SPACING) * SPACING


# ---------------------------------------------------------------------------------------------
# regions (canonical chart)
# ---------------------------------------------------------------------------------------------
def canonical_regions(uv: np.ndarray, side: np.ndarray) -> np.ndarray:
    """Parse-region ids (regions.py) of canonical points."""
    c = CANON
    u, v = uv[:, 0], uv[:, 1]
    au = np.abs(u)
    lab = np.full(u.shape, SKIN, dtype=np.int64)
    # nose: bridge between the eyes down to the nostrils, widening to the wings
    nose_half = np.interp(v, [c.v_sn - 1.0, c.v_sn + 4.0, 0.0, 12.0, c.v_nasion, c.v_nasion + 4.0],
                          [4.0, c.u_al + 1.0, c.u_al - 2.0, 9.0, 7.0, 0.0])
    lab[(v > c.v_sn - 1.0) & (v < c.v_nasion + 4.0) & (au < nose_half)] = NOSE
    # brows
    bc = brow_curve(np.linspace(-0.05, 1.05, 200))
    bv = np.interp(au, bc[:, 0], bc[:, 1])
    brow = (au > bc[0, 0]) & (au < bc[-1, 0]) & (np.abs(v - bv) < 4.5 - 2.0 * ((au - bc[0, 0]) / (bc[-1, 0] - bc[0, 0])))
    lab[brow & (u < 0)] = L_BROW
    lab[brow & (u > 0)] = R_BROW
    # eyes: the open fissure
    xi, _, vup, vlo = eye_fissure(au)
    eye = (xi > 0) & (xi < 1) & (v < vup) & (v > vlo)
    lab[eye & (u < 0)] = L_EYE
    lab[eye & (u > 0)] = R_EYE
    # lips: the red between the vermilion borders and the seam (as drawn in anatomy.heights)
    seam = c.v_sto
    lip_end = c.u_ch + 0.5
    shape = np.sqrt(np.clip(1.0 - (au / lip_end) ** 2, 0.0, None))
    bow = 1.0 + 0.12 * np.exp(-0.5 * ((au - 5.0) / 2.8) ** 2)
    ls = seam + _MEAN.upper_vermilion_height * (0.25 + 0.75 * shape) * bow + 0.6
    li = seam - _MEAN.lower_vermilion_height * (0.25 + 0.75 * shape) - 0.6
    upper = (au < lip_end) & (v <= ls) & ((v > seam) | ((v == seam) & (side >= 0)))
    lower = (au < lip_end) & (v >= li) & ((v < seam) | ((v == seam) & (side < 0)))
    lab[upper] = U_LIP
    lab[lower] = L_LIP
    return lab


# ---------------------------------------------------------------------------------------------
# the grid
# ---------------------------------------------------------------------------------------------
def build_topology() -> Topology:
    """Build the face mesh topology (deterministic, integer arithmetic on the grid)."""
    h = SPACING
    c = CANON
    ni = int(np.floor(U_MAX / h + 1e-9))
    jmin = int(np.floor((jaw_curve(np.array([0.0]))[0] - 12.0 - c.v_sto) / h))
    jmax = int(np.ceil((c.v_top + 1.0 - c.v_sto) / h))
    ii = np.arange(-ni, ni + 1)
    jj = np.arange(jmin, jmax + 1)
    gu = ii * h
    gv = c.v_sto + jj * h
    I, J = np.meshgrid(ii, jj, indexing="xy")  # (rows, cols)
    U, V = gu[I + ni], gv[J - jmin]
    inside = inside_outline(U, V)
    rows, cols = inside.shape
    # a quad is kept when its four corners are inside; vertices are those used by kept quads
    quad = inside[:-1, :-1] & inside[:-1, 1:] & inside[1:, :-1] & inside[1:, 1:]
    used = np.zeros_like(inside)
    used[:-1, :-1] |= quad
    used[:-1, 1:] |= quad
    used[1:, :-1] |= quad
    used[1:, 1:] |= quad
    # seam: row j = 0 (v = v_sto), columns strictly inside the inner corners get a second copy
    uc_i = round(inner_corner_u() / h)
    seam_row = -jmin
    seam_cols = np.where(np.abs(ii) < uc_i)[0]
    index = -np.ones((rows, cols), dtype=np.int64)
    order = np.argwhere(used)  # row-major: bottom row first, left to right
    index[order[:, 0], order[:, 1]] = np.arange(order.shape[0])
    n_grid = order.shape[0]
    lower_index = index.copy()
    lower_index[seam_row, seam_cols] = n_grid + np.arange(seam_cols.size)
    n = n_grid + seam_cols.size

    uv = np.zeros((n, 2))
    grid_ij = np.zeros((n, 2), dtype=np.int64)
    uv[:n_grid] = np.stack([U[order[:, 0], order[:, 1]], V[order[:, 0], order[:, 1]]], 1)
    grid_ij[:n_grid] = np.stack([ii[order[:, 1]], jj[order[:, 0]]], 1)
    uv[n_grid:] = np.stack([gu[seam_cols], np.full(seam_cols.size, gv[seam_row])], 1)
    grid_ij[n_grid:] = np.stack([ii[seam_cols], np.full(seam_cols.size, 0)], 1)
    side = np.zeros(n, dtype=np.int64)
    side[index[seam_row, seam_cols]] = 1
    side[n_grid:] = -1

    # triangles: quad (r, k) spans rows r, r+1 (v up) and columns k, k+1 (u right)
    r, k = np.nonzero(quad)
    below_seam = r + 1 == seam_row  # quads whose top row is the seam use the lower copies
    top_idx = np.where(below_seam, lower_index[r + 1, k], index[r + 1, k])
    top_idx1 = np.where(below_seam, lower_index[r + 1, k + 1], index[r + 1, k + 1])
    a, b = index[r, k], index[r, k + 1]
    cc, d = top_idx1, top_idx
    right_half = ii[k] >= 0
    t1 = np.where(right_half[:, None], np.stack([a, b, cc], 1), np.stack([a, b, d], 1))
    t2 = np.where(right_half[:, None], np.stack([a, cc, d], 1), np.stack([b, cc, d], 1))
    tri = np.stack([t1, t2], 1).reshape(-1, 3)

    # symmetry: grid (i, j) -> (-i, j); seam copies map to the same kind of copy
    key = {(int(gi), int(gj), int(sd)): idx for idx, (gi, gj, sd) in
           enumerate(np.column_stack([grid_ij, np.minimum(side, 0)]))}
    sym = np.array([key[(-int(gi), int(gj), int(sd))] for gi, gj, sd in
                    np.column_stack([grid_ij, np.minimum(side, 0)])], dtype=np.int64)

    # landmarks: nearest grid vertex of the right seam copy
    lm_uv, lm_side = landmark_uv()
    lmk = np.zeros(68, dtype=np.int64)
    for m in range(68):
        cand = np.where(side == 0, True, side == (lm_side[m] if lm_side[m] != 0 else 1))
        d2 = ((uv - lm_uv[m]) ** 2).sum(1) + np.where(cand, 0.0, 1e9)
        lmk[m] = int(np.argmin(d2))
    regions = canonical_regions(uv, side)
    return Topology(uv=uv, side=side, triangles=tri.astype(np.int64), landmarks68=lmk,
                    symmetry=sym, regions=regions, grid_ij=grid_ij)


def seam_partner(topo: Topology) -> np.ndarray:
    """(N,) index of the other copy of each lip-seam vertex (the vertex itself elsewhere)."""
    partner = np.arange(topo.num_vertices)
    up = np.where(topo.side > 0)[0]
    lo = np.where(topo.side < 0)[0]
    col_up = {int(topo.grid_ij[k, 0]): k for k in up}
    for k in lo:
        other = col_up[int(topo.grid_ij[k, 0])]
        partner[k], partner[other] = other, k
    return partner

