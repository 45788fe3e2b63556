"""The analytic face surface of the procedural model: anatomical parameters -> vertices.

A face is built in three stages, all in millimetres:

1. **Canonical coordinates** ``(u, v)``: every mesh vertex has fixed coordinates in an unrolled
   face chart (``u`` = arc length across the face from the midline, positive toward the viewer's
   right; ``v`` = height, 0 at the nose-tip level). Anatomical features (eye corners, mouth
   corners, nose tip ...) sit at fixed canonical points derived from the parameter means, so a
   vertex keeps its anatomical meaning for every identity (dense correspondence).
2. **Proportion warp**: monotone splines move the canonical features to the parameter's
   positions (eye spacing, nose and mouth width, vertical proportions), giving ``(s, t)``.
3. **Surface**: a smooth base "head" surface ``B(s, t)`` (a stack of horizontal cross-sections,
   each a curve with a flat front and rounded sides, over a midline depth profile) plus feature
   heights ``h(u, v)`` (nose, eye sockets and eyeballs, lids, brow ridge, cheekbones, lips, chin,
   folds) along the base normal: ``x = scale * (B + h n_B)``.

Model frame of docs/conventions.md: x to the viewer's right, y up, z toward the camera. The
surface function is plain float64 numpy and deterministic; it is smooth in the parameters, so
identity modes can be taken as finite differences (see ``identity.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from scipy.interpolate import CubicSpline, PchipInterpolator


@dataclass(frozen=True)
class Param:
    """One anatomical parameter: population mean and standard deviation (mm unless stated)."""

    name: str
    mean: float
    std: float
    doc: str


#: The anatomical parameters. Means describe an average adult; stds the spread between people
#: (anthropometric norms, Farkas 1994, rounded; shape constants without a std are fixed).
PARAMS: tuple[Param, ...] = (
    # global
    Param("scale", 1.0, 0.035, "overall size factor (unitless)"),
    # vertical proportions (heights in mm; the nose tip is at height 0)
    Param("eye_height", 30.0, 2.0, "height of the eye-corner line above the nose tip"),
    Param("nasion_height", 5.0, 1.5, "height of the nasion above the eye-corner line"),
    Param("brow_height", 26.0, 2.0, "height of the brow arch above the eye-corner line"),
    Param("forehead_height", 52.0, 5.0, "height of the forehead (crop top) above the brows"),
    Param("tip_to_subnasale", 15.5, 1.8, "height of the nose tip above the subnasale"),
    Param("upper_lip_height", 21.0, 1.8, "subnasale to stomion"),
    Param("lower_face_height", 41.5, 3.5, "stomion to menton (chin bottom)"),
    # horizontal proportions
    Param("intercanthal_width", 35.0, 2.5, "distance between the inner eye corners"),
    Param("eye_length", 29.5, 1.8, "eye fissure length (inner to outer corner)"),
    Param("canthal_tilt", 1.5, 1.5, "outer eye corner height above the inner one"),
    Param("eye_opening", 9.0, 1.1, "eye fissure height"),
    Param("nose_width", 33.0, 2.6, "alar width (nose wings, extreme to extreme)"),
    Param("mouth_width", 50.0, 3.5, "mouth corner to mouth corner"),
    Param("chin_width", 36.0, 4.0, "width of the chin front"),
    # base head shape
    Param("forehead_width", 1.0, 0.05, "width factor of the forehead and temples"),
    Param("cheek_width", 1.0, 0.05, "width factor of the mid face (cheekbones)"),
    Param("jaw_width", 1.0, 0.07, "width factor of the lower face and jaw"),
    Param("forehead_slope", 0.0, 5.0, "extra recession of the forehead top (mm, + = slopes back)"),
    Param("midface_depth", 0.0, 2.0, "forward position of the mid face relative to forehead and chin"),
    Param("chin_projection", 0.0, 3.5, "forward position of the chin"),
    # nose
    Param("nose_projection", 23.0, 2.8, "height of the nose tip above the face surface"),
    Param("radix_height", 6.0, 1.8, "height of the nose root (between the eyes) above the face"),
    Param("dorsal_hump", 0.0, 1.4, "bump on the nose bridge"),
    Param("bridge_width", 7.0, 1.1, "half-width scale of the nose bridge"),
    Param("tip_width", 8.5, 1.0, "half-width scale of the nose tip"),
    Param("alar_size", 8.5, 1.2, "protrusion of the nose wings"),
    Param("tip_droop", 0.0, 1.5, "downward shift of the nose tip lobule"),
    # eyes and brows
    Param("orbit_depth", 10.0, 1.8, "depth of the eye sockets"),
    Param("eyeball_protrusion", 8.0, 1.2, "protrusion of the eyeball within the socket"),
    Param("lid_crease", 7.0, 1.5, "height of the upper-lid crease above the lid margin"),
    Param("brow_ridge", 2.5, 1.2, "prominence of the brow ridge"),
    Param("brow_arch", 3.0, 1.5, "height of the brow arch over its ends"),
    Param("temple_hollow", 3.0, 1.2, "depth of the temple hollows"),
    # cheeks
    Param("cheekbone", 4.0, 1.6, "prominence of the cheekbones"),
    Param("cheek_fullness", 0.0, 1.8, "fullness of the lower cheeks"),
    Param("nasolabial_depth", 1.3, 0.6, "depth of the nasolabial folds"),
    # mouth and chin
    Param("lip_protrusion", 0.0, 2.2, "forward position of both lips"),
    Param("upper_lip_thickness", 3.2, 0.8, "protrusion of the upper lip red (vermilion)"),
    Param("lower_lip_thickness", 3.6, 0.9, "protrusion of the lower lip red (vermilion)"),
    Param("upper_vermilion_height", 7.5, 1.3, "height of the upper lip red"),
    Param("lower_vermilion_height", 9.0, 1.4, "height of the lower lip red"),
    Param("mentolabial_depth", 2.5, 1.0, "depth of the groove between lower lip and chin"),
    Param("chin_prominence", 5.0, 1.6, "bump of the chin (pogonion)"),
)

NAMES: tuple[str, ...] = tuple(p.name for p in PARAMS)
INDEX: dict[str, int] = {n: i for i, n in enumerate(NAMES)}


def mean_params() -> np.ndarray:
    """(P,) float64 vector of the parameter means (order of ``PARAMS``)."""
    return np.array([p.mean for p in PARAMS], dtype=np.float64)


def param_stds() -> np.ndarray:
    """(P,) float64 population standard deviations."""
    return np.array([p.std for p in PARAMS], dtype=np.float64)


def as_namespace(values: np.ndarray) -> SimpleNamespace:
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (len(PARAMS),):
        raise ValueError(f"need {len(PARAMS)} anatomical parameters, got shape {values.shape}")
    return SimpleNamespace(**{n: float(v) for n, v in zip(NAMES, values)})


# ---------------------------------------------------------------------------------------------
# canonical layout: feature positions (u, v) of the mean face, mm
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """Feature positions in the canonical chart (mm) for one parameter vector."""

    v_eye: float
    v_nasion: float
    v_brow: float
    v_top: float
    v_sn: float
    v_sto: float
    v_me: float
    u_en: float
    u_ex: float
    v_en: float
    v_ex: float
    eye_up: float
    eye_lo: float
    u_al: float
    u_ch: float
    u_chin: float

    @property
    def u_eye(self) -> float:
        return 0.5 * (self.u_en + self.u_ex)


def layout_of(p: SimpleNamespace) -> Layout:
    v_eye = p.eye_height
    v_sn = -p.tip_to_subnasale
    v_sto = v_sn - p.upper_lip_height
    u_en = 0.5 * p.intercanthal_width
    return Layout(
        v_eye=v_eye, v_nasion=v_eye + p.nasion_height, v_brow=v_eye + p.brow_height,
        v_top=v_eye + p.brow_height + p.forehead_height, v_sn=v_sn, v_sto=v_sto,
        v_me=v_sto - p.lower_face_height, u_en=u_en, u_ex=u_en + p.eye_length,
        v_en=v_eye - 0.5 * p.canthal_tilt, v_ex=v_eye + 0.5 * p.canthal_tilt,
        eye_up=0.56 * p.eye_opening, eye_lo=0.44 * p.eye_opening,
        u_al=0.5 * p.nose_width, u_ch=0.5 * p.mouth_width, u_chin=0.5 * p.chin_width,
    )


CANON: Layout = layout_of(as_namespace(mean_params()))
"""The canonical layout (parameter means): where features sit in the (u, v) chart."""


# ---------------------------------------------------------------------------------------------
# small smooth primitives (float64, vectorised)
# ---------------------------------------------------------------------------------------------
def gauss(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * x * x)


def bump2(u: np.ndarray, v: np.ndarray, cu: float, cv: float, su: float, sv: float) -> np.ndarray:
    """Anisotropic Gaussian bump, 1 at (cu, cv)."""
    return gauss((u - cu) / su) * gauss((v - cv) / sv)


def pair(u: np.ndarray, v: np.ndarray, cu: float, cv: float, su: float, sv: float) -> np.ndarray:
    """Mirrored pair of bumps at (+-cu, cv) (one bump when cu = 0): smooth across the midline."""
    if cu == 0.0:
        return bump2(u, v, 0.0, cv, su, sv)
    return bump2(u, v, cu, cv, su, sv) + bump2(u, v, -cu, cv, su, sv)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def window(x: np.ndarray, lo: float, hi: float, soft: float) -> np.ndarray:
    """Smooth indicator of lo < x < hi with edge width ``soft``."""
    return sigmoid((x - lo) / soft) * sigmoid((hi - x) / soft)


def spline(xk, yk, x: np.ndarray) -> np.ndarray:
    """Natural cubic spline through knots (C2, may overshoot slightly), linear beyond the ends."""
    xk = np.asarray(xk, dtype=np.float64)
    cs = CubicSpline(xk, np.asarray(yk, dtype=np.float64), bc_type="natural", extrapolate=True)
    return cs(x)


def sabs(u: np.ndarray) -> np.ndarray:
    """Smooth |u| (mm): sqrt(u^2 + 1), so features mirrored at the midline stay smooth there."""
    return np.sqrt(u * u + 1.0)


def pchip(xk, yk, x: np.ndarray) -> np.ndarray:
    """Monotone cubic through knots (xk increasing), constant beyond the end knots."""
    xk = np.asarray(xk, dtype=np.float64)
    yk = np.asarray(yk, dtype=np.float64)
    xc = np.clip(x, xk[0], xk[-1])
    return PchipInterpolator(xk, yk, extrapolate=False)(xc)


def curve_distance(u: np.ndarray, v: np.ndarray, cu: np.ndarray, cv: np.ndarray):
    """Distance from points to a polyline (cu, cv) and the arc parameter in [0, 1] of the
    nearest point. Polylines here have few segments; loop over segments only."""
    best = np.full(u.shape, np.inf)
    arc = np.zeros(u.shape)
    seg = np.hypot(np.diff(cu), np.diff(cv))
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    total = cum[-1]
    for k in range(len(cu) - 1):
        ax, ay, bx, by = cu[k], cv[k], cu[k + 1], cv[k + 1]
        dx, dy = bx - ax, by - ay
        t = np.clip(((u - ax) * dx + (v - ay) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
        d = np.hypot(u - (ax + t * dx), v - (ay + t * dy))
        m = d < best
        best = np.where(m, d, best)
        arc = np.where(m, (cum[k] + t * seg[k]) / total, arc)
    return best, arc


# ---------------------------------------------------------------------------------------------
# stage 2: proportion warp (u, v) -> (s, t)
# ---------------------------------------------------------------------------------------------
_FAR = 400.0


def _vertical_knots(lay: Layout) -> np.ndarray:
    return np.array([lay.v_me - 60.0, lay.v_me, lay.v_sto, lay.v_sn, 0.0, lay.v_eye, lay.v_nasion,
                     lay.v_brow, lay.v_top, lay.v_top + 60.0])


def warp(u: np.ndarray, v: np.ndarray, p: SimpleNamespace) -> tuple[np.ndarray, np.ndarray]:
    """Canonical (u, v) -> proportioned (s, t), mm. Identity at the parameter means."""
    lay = layout_of(p)
    t = pchip(_vertical_knots(CANON), _vertical_knots(lay), v)
    au = np.abs(u)
    c = CANON
    # eyes: opening (lid margins spread around the corner line) and canthal tilt
    xi, vmid, _, _ = eye_fissure(au)
    near_eye = window(xi, -0.3, 1.3, 0.1)
    open_ratio = (lay.eye_up + lay.eye_lo) / (c.eye_up + c.eye_lo) - 1.0
    t = t + (v - vmid) * open_ratio * near_eye * gauss((v - vmid) / 9.0)
    tilt = (lay.v_ex - lay.v_en) - (c.v_ex - c.v_en)
    t = t + tilt * (np.clip(xi, 0.0, 1.0) - 0.5) * near_eye * gauss((v - vmid) / 12.0)

    def band(knots_c, knots_p):
        return pchip(np.array([0.0, *knots_c, _FAR]), np.array([0.0, *knots_p, _FAR]), au)

    bands = [
        (c.v_top, au),  # forehead: unchanged
        (c.v_eye, band([c.u_en, c.u_ex, c.u_ex + 30.0], [lay.u_en, lay.u_ex, lay.u_ex + 30.0])),
        (0.5 * (c.v_sn + 0.0), band([c.u_al, c.u_al + 25.0], [lay.u_al, lay.u_al + 25.0])),
        (c.v_sto, band([c.u_ch, c.u_ch + 25.0], [lay.u_ch, lay.u_ch + 25.0])),
        (c.v_me + 14.0, band([c.u_chin, c.u_chin + 30.0], [lay.u_chin, lay.u_chin + 30.0])),
    ]
    centres = np.array([b[0] for b in bands])
    w = np.stack([gauss((v - cv) / 12.0) for cv in centres])
    # beyond the outer bands the nearest band keeps full weight
    w[0] = np.where(v > centres[0], 1.0, w[0])
    w[-1] = np.where(v < centres[-1], 1.0, w[-1])
    w /= w.sum(0, keepdims=True)
    s_abs = sum(wi * b[1] for wi, b in zip(w, bands))
    return np.sign(u) * s_abs, t


# ---------------------------------------------------------------------------------------------
# stage 3a: base surface B(s, t)
# ---------------------------------------------------------------------------------------------
# Each horizontal cross-section of the base is the front of a superellipse
# |x / a|^e + |(z - z0 + b) / b|^e = 1 (half-width a, depth b, squareness e, front at depth z0),
# walked by arc length s from the midline; a, b, e, z0 vary smoothly with the height t.
_TH = np.linspace(0.0, 1.0, 81) ** 1.3 * 0.85 * np.pi  # table of superellipse angles


def _superellipse(theta, a, b, e):
    st, ct = np.sin(theta), np.cos(theta)
    return a * np.abs(st) ** (2.0 / e), b * np.sign(ct) * np.abs(ct) ** (2.0 / e)


def _base_profiles(p: SimpleNamespace):
    """Knot heights and per-height base parameters (half-width a, depth b, squareness e, front
    depth z0), all mm except e."""
    lay = layout_of(p)
    tk = np.array([lay.v_me - 25.0, lay.v_me - 8.0, lay.v_me + 8.0, lay.v_sto - 18.0, lay.v_sto,
                   lay.v_sn, 0.0, 12.0, lay.v_eye + 5.0, lay.v_brow + 6.0, lay.v_top - 5.0,
                   lay.v_top + 25.0])
    up, mid, low = p.forehead_width, p.cheek_width, p.jaw_width
    a = np.array([28.0, 36.0, 44.0, 57.0, 65.0, 68.0, 70.0, 72.0, 74.0, 74.0, 63.0, 55.0])
    a *= np.array([low, low, low, low, 0.5 * (low + mid), mid, mid, mid, 0.5 * (mid + up), up, up, up])
    b = np.array([40.0, 45.0, 55.0, 65.0, 76.0, 78.0, 78.0, 78.0, 79.0, 81.0, 63.0, 55.0])
    e = np.array([2.0, 2.0, 2.0, 2.0, 2.05, 2.1, 2.2, 2.25, 2.3, 2.2, 2.0, 2.0])
    z0 = np.array([-62.0, -34.0, -26.0, -24.0, -24.5, -25.5, -27.0, -28.0, -29.0, -25.0, -41.0, -68.0])
    z0[:3] += p.chin_projection * np.array([0.5, 0.9, 1.0])
    z0[5:8] += p.midface_depth
    z0[10:] -= p.forehead_slope * np.array([1.0, 1.6])
    return tk, a, b, e, z0


def _section_tables(t: np.ndarray, p: SimpleNamespace):
    """Arc-length tables of the cross-sections at heights t, one per distinct height (the grid
    has few rows): returns (row index per point, a, b, e, z0 per row, cumulative arc (R, M),
    segment lengths (R, M-1))."""
    tk, ak, bk, ek, zk = _base_profiles(p)
    tu, row = np.unique(t, return_inverse=True)
    a, b, e, z0 = (spline(tk, k, tu) for k in (ak, bk, ek, zk))
    x, z = _superellipse(_TH[None, :], a[:, None], b[:, None], e[:, None])
    seg = np.hypot(np.diff(x, axis=1), np.diff(z, axis=1))
    cum = np.concatenate([np.zeros((len(tu), 1)), np.cumsum(seg, axis=1)], axis=1)
    return row, a, b, e, z0, cum, seg


def _section_points(tables, s: np.ndarray, t: np.ndarray) -> np.ndarray:
    row, a, b, e, z0, cum, seg = tables
    sa = np.abs(s)
    # search all rows at once in one increasing array (row r offset by r * span)
    m = len(_TH)
    span = cum[:, -1].max() + 1e3
    flat = (cum + span * np.arange(len(cum))[:, None]).ravel()
    k = np.searchsorted(flat, sa + span * row, side="left") - 1 - row * m
    k = np.clip(k, 0, m - 2)
    frac = (sa - cum[row, k]) / seg[row, k]
    th = _TH[k] + frac * (_TH[k + 1] - _TH[k])
    xs, zs = _superellipse(th, a[row], b[row], e[row])
    return np.stack([np.sign(s) * xs, t, z0[row] + zs - b[row]], -1)


def base_surface(s: np.ndarray, t: np.ndarray, p: SimpleNamespace) -> np.ndarray:
    """Base head surface point at arc length s (mm, signed) and height t (mm). (N,) -> (N, 3)."""
    return _section_points(_section_tables(t, p), s, t)


def base_frame(s: np.ndarray, t: np.ndarray, p: SimpleNamespace, eps: float = 0.05):
    """Base points (N, 3) and unit outward normals (N, 3) by central differences."""
    tab = _section_tables(t, p)
    b = _section_points(tab, s, t)
    ds = _section_points(tab, s + eps, t) - _section_points(tab, s - eps, t)
    dt = base_surface(s, t + eps, p) - base_surface(s, t - eps, p)
    n = np.cross(ds, dt)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    return b, n


# ---------------------------------------------------------------------------------------------
# stage 3b: feature heights h(u, v) along the base normal
# ---------------------------------------------------------------------------------------------
def eye_fissure(au: np.ndarray, lay: Layout = CANON):
    """Palpebral fissure of the eye on the side of |u| = au.

    Returns (xi, v_mid, v_up, v_lo): xi in [0, 1] from the inner to the outer corner, the
    corner line height, and the upper / lower lid margin heights at that column (mm).
    """
    xi = (au - lay.u_en) / (lay.u_ex - lay.u_en)
    xc = np.clip(xi, 0.0, 1.0)
    v_mid = lay.v_en + (lay.v_ex - lay.v_en) * xc
    # upper lid peaks medially of the centre, the lower lid's lowest point is lateral
    up = np.sin(np.pi * xc ** 1.25) ** 0.85
    lo = np.sin(np.pi * xc ** 0.8) ** 0.85
    return xi, v_mid, v_mid + lay.eye_up * up, v_mid - lay.eye_lo * lo


def lip_line(u: np.ndarray, lay: Layout = CANON) -> np.ndarray:
    """Height of the mouth seam (stomion line), curving slightly up toward the corners."""
    x = np.clip(np.abs(u) / lay.u_ch, 0.0, 1.0)
    return lay.v_sto + 0.8 * x ** 2


def heights(u: np.ndarray, v: np.ndarray, p: SimpleNamespace) -> np.ndarray:
    """Feature heights above the base (mm) at canonical (u, v); (N,) -> (N,)."""
    c = CANON
    au = sabs(u)
    h = np.zeros_like(u)

    # ---- nose: a ridge from the radix to the tip, columella down to the subnasale
    vn = c.v_nasion
    nk = np.array([c.v_sn - 5.0, c.v_sn, c.v_sn + 5.0, -5.0, 0.0, 7.0, 0.5 * vn, vn, vn + 12.0])
    tip = p.nose_projection
    hk = np.array([0.0, 3.0, 0.55 * tip, 0.88 * tip, tip, tip - 4.0, 0.5 * (tip + p.radix_height) - 1.5,
                   p.radix_height, 0.0])
    prof = pchip(nk, hk, v - p.tip_droop * gauss(v / 8.0))
    prof += p.dorsal_hump * gauss((v - 0.45 * vn) / 5.0)
    wk = np.array([4.5, 5.0, 7.0, p.tip_width, p.tip_width, 0.5 * (p.tip_width + p.bridge_width),
                   p.bridge_width, p.bridge_width + 1.0, p.bridge_width + 4.0])
    width = pchip(nk, wk, v)
    h += prof / np.cosh(u / width) ** 2
    # nose wings (alae) and the alar crease around them
    acu, acv = c.u_al - 5.5, c.v_sn + 5.0
    h += p.alar_size * pair(u, v, acu, acv, 4.5, 4.2)
    r = np.hypot((au - acu) / 1.0, (v - acv) / 0.95)
    h -= 1.6 * gauss((r - 6.8) / 1.2) * sigmoid((au - acu + 2.0) / 1.5)

    # ---- eyes: socket, eyeball (with cornea), lids, lid crease
    xi, vmid, vup, vlo = eye_fissure(au)
    ue, ve = c.u_eye, c.v_eye + 0.3
    h -= p.orbit_depth * pair(u, v, ue - 2.0, ve + 4.0, 15.0, 12.0)
    h -= 3.5 * pair(u, v, c.u_en - 1.0, c.v_en, 4.0, 5.0)  # medial canthus sits deep
    h += p.eyeball_protrusion * pair(u, v, ue, ve, 8.5, 7.0)
    h += 1.0 * gauss(np.hypot(au - ue, v - (ve + 0.5)) / 4.0)  # cornea
    inside = window(xi, 0.0, 1.0, 0.02) * window(v, vlo, vup, 0.3)
    upper_half = sigmoid((v - vmid) / 0.5)
    lid = (2.0 * upper_half * gauss(np.clip(v - vup, 0.0, None) / 5.5)
           + 1.3 * (1.0 - upper_half) * gauss(np.clip(vlo - v, 0.0, None) / 3.5))
    h += lid * (1.0 - inside) * window(xi, -0.1, 1.1, 0.09)
    h -= 1.6 * gauss((v - vup - p.lid_crease) / 1.8) * window(xi, 0.0, 1.05, 0.08)
    h -= 1.0 * gauss((v - vlo + 7.0) / 2.5) * window(xi, 0.05, 1.0, 0.1)  # lower lid / tear trough

    # ---- brows and forehead
    x = np.clip((au - 8.0) / (c.u_ex + 8.0), 0.0, 1.0)
    brow_line = c.v_brow - 4.0 - p.brow_arch * (1.0 - (2.0 * x - 1.0) ** 2)
    h += p.brow_ridge * gauss((v - brow_line) / 6.0) * window(au, -1.0, c.u_ex + 12.0, 5.0)
    h += 0.8 * pair(u, v, 0.0, c.v_brow - 5.0, 9.0, 7.0)  # glabella
    h += 1.5 * pair(u, v, 24.0, c.v_brow + 28.0, 16.0, 16.0)  # frontal eminences
    h -= p.temple_hollow * pair(u, v, c.u_ex + 28.0, c.v_eye + 12.0, 11.0, 14.0)

    # ---- cheeks
    h += p.cheekbone * pair(u, v, c.u_ex + 6.0, c.v_eye - 22.0, 13.0, 10.0)
    h += p.cheek_fullness * pair(u, v, c.u_ch + 18.0, c.v_sto + 4.0, 14.0, 14.0)
    # nasolabial fold: a soft groove from the nose wing to beside the mouth corner, with the
    # cheek rolling over it laterally
    nl_u = np.array([c.u_al + 0.5, c.u_al + 5.0, c.u_ch + 4.0, c.u_ch + 7.0])
    nl_v = np.array([c.v_sn + 7.0, c.v_sn - 4.0, c.v_sto - 3.0, c.v_sto - 12.0])
    dnl, arc = curve_distance(au, v, nl_u, nl_v)
    fade = window(arc, 0.02, 0.97, 0.08)
    lateral = sigmoid((au - np.interp(v, nl_v[::-1], nl_u[::-1])) / 2.0)
    h -= p.nasolabial_depth * gauss(dnl / 3.2) * fade
    h += 0.8 * p.nasolabial_depth * gauss((dnl - 4.5) / 3.5) * fade * lateral

    # ---- mouth
    seam = c.v_sto
    # the muzzle over the teeth: a broad smooth protrusion around the mouth
    h += (p.lip_protrusion + 5.0) * pair(u, v, 0.0, seam + 4.0, c.u_ch * 0.85, 14.0)
    h += 2.5 * pair(u, v, 0.0, seam + p.upper_vermilion_height + 1.0, c.u_ch * 0.6, 5.0)  # upper lip skin
    # vermilion (lip red): lens-shaped lips, thickest in the middle, vanishing at the corners
    xr = np.clip(au / (c.u_ch + 0.5), 0.0, 1.0)
    shape = np.sqrt(np.clip(1.0 - xr ** 2, 0.0, None))
    bow = 1.0 + 0.12 * gauss((au - 5.0) / 2.8) - 0.08 * gauss(u / 2.2)  # Cupid's bow
    up_h = p.upper_vermilion_height * (0.25 + 0.75 * shape) * bow
    lo_h = p.lower_vermilion_height * (0.25 + 0.75 * shape)
    xu = np.clip((v - seam) / up_h, 0.0, 1.6)
    xl = np.clip((seam - v) / lo_h, 0.0, 1.6)
    # cross-section of a lip: rises from the seam (where the lips meet inward), fullest at ~0.55,
    # then rolls back to the skin at the vermilion border (x = 1)
    prof_u = np.sin(0.5 * np.pi * np.clip(xu / 0.55, 0.0, 1.0)) ** 1.2 * gauss(np.clip(xu - 0.55, 0.0, None) / 0.38)
    prof_l = np.sin(0.5 * np.pi * np.clip(xl / 0.5, 0.0, 1.0)) ** 1.2 * gauss(np.clip(xl - 0.5, 0.0, None) / 0.42)
    thick = shape ** 0.8
    h += p.upper_lip_thickness * thick * prof_u * (v >= seam)
    h += p.lower_lip_thickness * thick * prof_l * (v < seam)
    h += 0.5 * gauss((xu - 1.0) / 0.12) * (v > seam) * shape  # white roll at the upper border
    h -= 0.6 * gauss(u / 2.4) * window(v, seam + p.upper_vermilion_height + 1.0, c.v_sn - 2.0, 1.5)  # philtrum
    h -= 1.0 * pair(u, v, c.u_ch + 1.0, seam + 0.3, 2.6, 2.8)  # corners
    h -= p.mentolabial_depth * pair(u, v, 0.0, seam - p.lower_vermilion_height - 5.0, 14.0, 3.8)
    h += p.chin_prominence * pair(u, v, 0.0, c.v_me + 16.0, c.u_chin * 0.8, 8.5)
    return h


#: Parameters that move features in the chart or change the base (everything else only changes
#: feature heights, so the base frame can be reused when only those change).
BASE_PARAMS: frozenset[str] = frozenset({
    "eye_height", "nasion_height", "brow_height", "forehead_height", "tip_to_subnasale",
    "upper_lip_height", "lower_face_height", "intercanthal_width", "eye_length", "canthal_tilt",
    "eye_opening", "nose_width", "mouth_width", "chin_width", "forehead_width", "cheek_width",
    "jaw_width", "forehead_slope", "midface_depth", "chin_projection"})
_BASE_IDX = np.array([INDEX[n] for n in NAMES if n in BASE_PARAMS])


def smooth_normals(params: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Unit normals (N, 3) of the smooth base surface under the face (no features): a
    well-behaved direction for bulging displacements (cheek puff, random fields). Identical for
    the two copies of a lip-seam vertex."""
    p = as_namespace(np.asarray(params, dtype=np.float64))
    s, t = warp(uv[:, 0], uv[:, 1], p)
    return base_frame(s, t, p)[1]


def surface(params: np.ndarray, uv: np.ndarray, cache: dict | None = None) -> np.ndarray:
    """Face vertices (N, 3) in mm, model frame (not yet centred), for canonical uv (N, 2).

    ``cache`` (optional dict) memoises the base frame across calls that differ only in
    feature-height parameters (same uv array)."""
    params = np.asarray(params, dtype=np.float64)
    p = as_namespace(params)
    u, v = uv[:, 0], uv[:, 1]
    key = params[_BASE_IDX].tobytes()
    if cache is not None and key in cache:
        b, n = cache[key]
    else:
        s, t = warp(u, v, p)
        b, n = base_frame(s, t, p)
        if cache is not None:  # keep the first entry (usually the mean) plus the latest one
            for old in list(cache)[1:]:
                del cache[old]
            cache[key] = (b, n)
    return p.scale * (b + heights(u, v, p)[:, None] * n)
