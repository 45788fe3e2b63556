"""Expression modes of the procedural model: named, muscle-like displacement fields.

Each mode is the displacement (mm, model frame) of a moderate (one-sigma) expression, so
expression coefficients ~ N(0, 1) give plausible faces; negative coefficients give the opposite
motion. Modes are built from four operations on the mean face:

- ``slide``: skin slides over the face surface (a vertex moves to where the mean surface is at
  a displaced canonical point) -- eyelids closing over the eyeball, brows, mouth corners;
- ``normal``: bulging along the surface normal -- cheek puff, lips pouting;
- ``move``: rigid-ish 3D translation of weighted regions -- lips, jaw thrust;
- ``rotate_jaw``: rotation of the lower face about the jaw-joint axis (x axis through the
  condyles in front of the ears), weighted by a jaw weight that is 1 on the lower lip and chin
  and 0 on the upper lip; the lip seam lets the lips separate.

"left"/"right" in mode names are the viewer's left/right (docs/conventions.md), like the
landmark and region names. A 1-sigma ``jaw_open`` separates the inner lips by about 12 mm.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .anatomy import CANON, bump2, eye_fissure, gauss, sigmoid, surface, window

#: Jaw joint (condyle) position relative to the nose tip level, mm (y up, z toward the camera;
#: the surface function's frame, before centring).
JAW_PIVOT = np.array([0.0, 14.0, -82.0])


class ExpressionContext:
    """The mean face and helpers to write expression fields (all in mm)."""

    def __init__(self, params0: np.ndarray, uv: np.ndarray, side: np.ndarray, vertices: np.ndarray,
                 normals: np.ndarray):
        self.p0 = params0
        self.uv = uv
        self.u, self.v = uv[:, 0], uv[:, 1]
        self.side = side
        self.x0 = vertices
        self.normals = normals
        c = CANON
        u, v = self.u, self.v
        self.au = np.sqrt(u * u + 1.0)
        # weight of the mandible: 1 on the lower lip/chin/jaw, 0 on the upper lip and above;
        # sharp across the lip seam, smooth in the cheeks beside the mouth
        line = c.v_sto + 18.0 * np.clip((self.au - c.u_ch) / 45.0, 0.0, 1.0) ** 1.5
        soft = 0.35 + 6.0 * np.clip((self.au - c.u_ch + 10.0) / 25.0, 0.0, 1.0)
        w = sigmoid((line - v) / soft)
        on_seam = side != 0
        self.jaw = np.where(on_seam, (side < 0).astype(float), w)
        self.upper = 1.0 - self.jaw
        # lips: the red of both lips and a margin around it
        mouth_w = gauss(np.clip(self.au - (c.u_ch - 6.0), 0.0, None) / 6.0)
        self.upper_lip = mouth_w * gauss(np.clip(v - c.v_sto - 7.0, 0.0, None) / 4.0) * (1.0 - self.jaw)
        self.lower_lip = mouth_w * gauss(np.clip(c.v_sto - 8.0 - v, 0.0, None) / 4.5) * self.jaw
        self.lips = self.upper_lip + self.lower_lip
        # the mouth area (lips + surrounding skin), for protrusion
        self.mouth_area = bump2(u, v, 0.0, c.v_sto, c.u_ch * 0.75, 11.0)

    # ---- helpers for one side: sign -1 = viewer's left (u < 0), +1 = viewer's right
    def half(self, sign: int, soft: float = 4.0) -> np.ndarray:
        return sigmoid(sign * self.u / soft)

    def corner(self, sign: int, su: float = 9.0, sv: float = 9.0) -> np.ndarray:
        c = CANON
        return bump2(self.u, self.v, sign * c.u_ch, c.v_sto, su, sv)

    # ---- operations
    def slide(self, du: np.ndarray, dv: np.ndarray) -> np.ndarray:
        """Displacement (N, 3) of sliding the skin by (du, dv) mm in the canonical chart."""
        du = np.broadcast_to(du, self.u.shape)
        dv = np.broadcast_to(dv, self.u.shape)
        out = np.zeros_like(self.x0)
        m = (np.abs(du) > 1e-4) | (np.abs(dv) > 1e-4)  # below the stored precision
        if m.any():
            moved = np.stack([self.u[m] + du[m], self.v[m] + dv[m]], 1)
            out[m] = surface(self.p0, moved) - self.x0[m]
        return out

    def normal(self, dn: np.ndarray) -> np.ndarray:
        return np.asarray(dn)[:, None] * self.normals

    def move(self, dx=0.0, dy=0.0, dz=0.0) -> np.ndarray:
        shape = self.u.shape
        return np.stack([np.broadcast_to(dx, shape), np.broadcast_to(dy, shape),
                         np.broadcast_to(dz, shape)], -1).astype(np.float64)

    def rotate_jaw(self, angle: np.ndarray) -> np.ndarray:
        """Rotation about the x axis through JAW_PIVOT by per-vertex angles (rad, + opens)."""
        r = self.x0 - JAW_PIVOT
        c, s = np.cos(angle), np.sin(angle)
        y = r[:, 1] * c - r[:, 2] * s
        z = r[:, 1] * s + r[:, 2] * c
        return np.stack([np.zeros_like(y), y - r[:, 1], z - r[:, 2]], -1)


def _eye_close(ctx: ExpressionContext, sign: int, amount: float) -> np.ndarray:
    """Upper lid slides down over the eyeball by ``amount`` of the opening (the lower lid stays)."""
    c = CANON
    _, _, vup, vlo = eye_fissure(ctx.au)
    gap = np.clip(vup - vlo, 0.0, None)
    v = ctx.v
    above = gauss(np.clip(v - vup, 0.0, None) / 7.0)
    dv = -amount * np.where(v <= vup, (v - vlo).clip(0.0) , gap * above) * (v > vlo)
    side = ctx.half(sign, 2.0) * window(ctx.au, c.u_en - 6.0, c.u_ex + 6.0, 1.5)
    out = ctx.slide(0.0, dv * side)
    # the lid is thicker than the eyeball it slides over: what now covers the old fissure sits
    # in front of the eyeball by about the lid thickness
    vnew = v + dv
    new_margin = vup - amount * gap
    covered = sigmoid((vnew - new_margin + 0.2) / 0.25) * sigmoid((vup - vnew) / 0.4)
    return out + ctx.normal(1.8 * covered * side * np.clip(gap / 2.0, 0.0, 1.0))


def _brow_slide(ctx: ExpressionContext, sign: int, inner: float, outer: float, inward: float = 0.0) -> np.ndarray:
    """Brow and the skin around it slide up (+) or down (-) by inner/outer amounts (mm)."""
    c = CANON
    x = np.clip((ctx.au - c.u_en + 6.0) / (c.u_ex - c.u_en + 18.0), 0.0, 1.0)
    amount = inner + (outer - inner) * x
    vup = eye_fissure(ctx.au)[2]
    # skin above the upper lid crease moves fully, fading on the forehead and toward the lid
    w = window(ctx.v, vup + 3.0, c.v_brow + 26.0, 2.5) * window(ctx.au, c.u_en - 14.0, c.u_ex + 22.0, 5.0)
    w = w * gauss(np.clip(ctx.v - c.v_brow - 2.0, 0.0, None) / 16.0)
    w = w * ctx.half(sign, 3.0)
    return ctx.slide(-sign * inward * w * (1.0 - x), amount * w)


def _forehead_wrinkles(ctx: ExpressionContext, sign: int, depth: float) -> np.ndarray:
    c = CANON
    band = window(ctx.v, c.v_brow + 6.0, c.v_brow + 34.0, 3.0) * window(ctx.au, -5.0, c.u_ex + 10.0, 6.0)
    return ctx.normal(depth * np.cos(2 * np.pi * (ctx.v - c.v_brow) / 9.0) * band * ctx.half(sign, 6.0))


def expression_library() -> list[tuple[str, Callable[[ExpressionContext], np.ndarray]]]:
    """(name, field) pairs; each field returns the 1-sigma displacement (N, 3) in mm."""
    c = CANON
    L, R = -1, 1
    lib: list[tuple[str, Callable[[ExpressionContext], np.ndarray]]] = []

    def add(name):
        def deco(fn):
            lib.append((name, fn))
            return fn
        return deco

    # ---- jaw
    add("jaw_open")(lambda x: x.rotate_jaw(0.15 * x.jaw) + x.move(dy=-1.0 * x.lower_lip))
    add("jaw_forward")(lambda x: x.move(dz=4.0 * x.jaw))
    add("jaw_shift_right")(lambda x: x.move(dx=4.0 * x.jaw))
    add("jaw_clench")(lambda x: x.normal(1.6 * (bump2(x.au, x.v, 95.0, c.v_sto + 8.0, 12.0, 14.0))))
    add("mouth_close")(lambda x: x.move(dy=-2.2 * x.upper_lip + 2.2 * x.lower_lip))

    # ---- mouth corners
    def corner_move(x, s, out, up, back, su=10.0, sv=10.0):
        """Move the mouth corner region in 3D: outward (along the face, curving back), up, back."""
        w = x.corner(s, su, sv)
        return x.move(dx=s * out * w, dy=up * w, dz=-(back + 0.45 * out) * w)

    def smile(x, s):
        cheek = bump2(x.u, x.v, s * (c.u_ch + 14.0), c.v_sto + 20.0, 11.0, 10.0)
        return (corner_move(x, s, 5.0, 4.5, 1.0) + x.move(dy=2.0 * cheek) + x.normal(2.0 * cheek)
                + x.normal(-1.0 * bump2(x.u, x.v, s * (c.u_ch + 6.0), c.v_sto + 4.0, 4.0, 8.0)))

    def sharp_smile(x, s):
        return corner_move(x, s, 2.5, 5.0, -0.5, 6.0, 6.0) + x.normal(1.0 * x.corner(s, 5.0, 5.0))

    def frown(x, s):
        return corner_move(x, s, 1.0, -4.0, 0.5, 9.0, 10.0)

    def dimple(x, s):
        return corner_move(x, s, 2.5, 0.0, 1.5, 7.0, 7.0) + x.normal(
            -1.6 * bump2(x.u, x.v, s * (c.u_ch + 4.0), c.v_sto, 3.0, 4.0))

    def stretch(x, s):
        return corner_move(x, s, 6.0, -1.5, 0.0, 11.0, 9.0) + x.normal(-0.8 * x.lips * x.half(s, 6.0))

    for s, side in ((L, "left"), (R, "right")):
        add(f"smile_{side}")(lambda x, s=s: smile(x, s))
    for s, side in ((L, "left"), (R, "right")):
        add(f"sharp_smile_{side}")(lambda x, s=s: sharp_smile(x, s))
    for s, side in ((L, "left"), (R, "right")):
        add(f"frown_{side}")(lambda x, s=s: frown(x, s))
    for s, side in ((L, "left"), (R, "right")):
        add(f"dimple_{side}")(lambda x, s=s: dimple(x, s))
    for s, side in ((L, "left"), (R, "right")):
        add(f"stretch_{side}")(lambda x, s=s: stretch(x, s))

    # ---- lips
    def pucker(x):
        return (corner_move(x, L, -6.0, 0.0, -2.0, 9.0, 9.0) + corner_move(x, R, -6.0, 0.0, -2.0, 9.0, 9.0)
                + x.move(dz=5.0 * x.mouth_area) + x.normal(1.2 * x.lips))

    def funnel(x):
        return (corner_move(x, L, -4.0, 0.0, -1.5, 8.0, 8.0) + corner_move(x, R, -4.0, 0.0, -1.5, 8.0, 8.0)
                + x.move(dz=4.0 * x.mouth_area) + x.move(dy=2.0 * x.upper_lip - 3.0 * x.lower_lip))

    add("pucker")(pucker)
    add("funnel")(funnel)
    for s, side in ((L, "left"), (R, "right")):
        add(f"lip_press_{side}")(lambda x, s=s: x.normal(-1.3 * x.lips * x.half(s, 5.0))
                                 + x.move(dy=0.8 * x.lower_lip * x.half(s, 5.0)))
    add("lip_tighten")(lambda x: x.normal(-1.6 * x.lips) + x.slide(0.0, -0.8 * x.upper_lip + 0.8 * x.lower_lip))
    for s, side in ((L, "left"), (R, "right")):
        add(f"upper_lip_raise_{side}")(lambda x, s=s: x.move(
            dy=3.5 * x.upper_lip * bump2(x.u, x.v, s * 12.0, c.v_sto, 11.0, 30.0),
            dz=0.8 * x.upper_lip * x.half(s, 6.0)))
    for s, side in ((L, "left"), (R, "right")):
        add(f"lower_lip_depress_{side}")(lambda x, s=s: x.move(
            dy=-3.5 * x.lower_lip * bump2(x.u, x.v, s * 12.0, c.v_sto, 11.0, 30.0),
            dz=0.6 * x.lower_lip * x.half(s, 6.0)))
    add("lip_roll_upper")(lambda x: x.normal(-2.0 * x.upper_lip) + x.move(
        dy=-1.2 * x.upper_lip * np.clip((x.v - c.v_sto) / 3.0, 0.0, 1.0)))
    add("lip_roll_lower")(lambda x: x.normal(-2.0 * x.lower_lip) + x.move(
        dy=1.2 * x.lower_lip * np.clip((c.v_sto - x.v) / 3.0, 0.0, 1.0)))
    add("lip_shrug_upper")(lambda x: x.normal(1.5 * x.upper_lip) + x.move(dy=1.5 * x.upper_lip))
    add("lip_shrug_lower")(lambda x: x.normal(1.5 * x.lower_lip) + x.move(dy=2.0 * x.lower_lip))
    add("upper_lip_pout")(lambda x: x.normal(2.5 * x.upper_lip))
    add("lower_lip_pout")(lambda x: x.normal(3.0 * x.lower_lip) + x.move(dy=-1.0 * x.lower_lip))
    add("mouth_shift_right")(lambda x: x.move(dx=5.0 * bump2(x.u, x.v, 0.0, c.v_sto, c.u_ch + 6.0, 14.0),
                                              dz=-0.08 * x.u * bump2(x.u, x.v, 0.0, c.v_sto, c.u_ch + 6.0, 14.0)))
    add("mouth_twist_right")(lambda x: x.move(dx=3.0 * x.upper_lip - 3.0 * x.lower_lip))
    add("chin_raise")(lambda x: x.slide(0.0, 3.0 * bump2(x.u, x.v, 0.0, c.v_me + 18.0, 16.0, 12.0))
                      + x.normal(1.5 * bump2(x.u, x.v, 0.0, c.v_me + 16.0, 12.0, 8.0))
                      + x.move(dy=1.5 * x.lower_lip))

    # ---- cheeks and nose
    for s, side in ((L, "left"), (R, "right")):
        add(f"cheek_puff_{side}")(lambda x, s=s: x.normal(6.0 * bump2(x.u, x.v, s * (c.u_ch + 16.0), c.v_sto + 6.0, 14.0, 16.0)))
    add("cheek_suck")(lambda x: x.normal(-4.0 * (bump2(x.u, x.v, -(c.u_ch + 18.0), c.v_sto + 4.0, 12.0, 14.0)
                                                 + bump2(x.u, x.v, c.u_ch + 18.0, c.v_sto + 4.0, 12.0, 14.0)))
                      + x.move(dz=1.5 * x.mouth_area))
    for s, side in ((L, "left"), (R, "right")):
        add(f"cheek_raise_{side}")(lambda x, s=s: x.slide(0.0, 3.0 * bump2(x.u, x.v, s * (c.u_ex + 2.0), c.v_eye - 20.0, 14.0, 12.0))
                                   + x.normal(1.5 * bump2(x.u, x.v, s * (c.u_ex + 2.0), c.v_eye - 18.0, 12.0, 9.0)))
    for s, side in ((L, "left"), (R, "right")):
        add(f"nasolabial_deepen_{side}")(lambda x, s=s: x.normal(
            -1.5 * bump2(x.u, x.v, s * (c.u_al + 5.0), c.v_sn - 8.0, 4.0, 9.0)
            + 1.2 * bump2(x.u, x.v, s * (c.u_al + 12.0), c.v_sn - 6.0, 6.0, 10.0)))
    for s, side in ((L, "left"), (R, "right")):
        add(f"sneer_{side}")(lambda x, s=s: x.slide(0.0, 3.0 * bump2(x.u, x.v, s * (c.u_al - 2.0), c.v_sn + 4.0, 8.0, 10.0))
                             + x.move(dy=1.5 * x.upper_lip * x.half(s, 6.0))
                             + x.normal(-0.3 * np.cos(2 * np.pi * x.v / 5.0) * bump2(x.u, x.v, s * 6.0, 20.0, 5.0, 6.0)))
    add("nostril_flare")(lambda x: x.slide(np.sign(x.u) * 2.0 * (bump2(x.au, x.v, c.u_al - 3.0, c.v_sn + 5.0, 5.0, 5.0)), 0.0)
                         + x.normal(0.8 * bump2(x.au, x.v, c.u_al - 4.0, c.v_sn + 5.0, 4.0, 4.0)))
    add("nostril_compress")(lambda x: x.slide(-np.sign(x.u) * 1.5 * (bump2(x.au, x.v, c.u_al - 3.0, c.v_sn + 5.0, 5.0, 5.0)), 0.0)
                            + x.normal(-0.6 * bump2(x.au, x.v, c.u_al - 4.0, c.v_sn + 5.0, 4.0, 4.0)))
    add("nose_wrinkle")(lambda x: x.normal(-0.3 * np.cos(2 * np.pi * x.v / 4.5) * bump2(x.u, x.v, 0.0, 20.0, 9.0, 6.0))
                        + x.slide(0.0, 1.5 * bump2(x.au, x.v, c.u_al - 3.0, c.v_sn + 5.0, 7.0, 8.0)))

    # ---- eyes
    for s, side in ((L, "left"), (R, "right")):
        add(f"eye_close_{side}")(lambda x, s=s: _eye_close(x, s, 0.45))
    for s, side in ((L, "left"), (R, "right")):
        add(f"eye_wide_{side}")(lambda x, s=s: -_eye_close(x, s, 0.22) + _brow_slide(x, s, 1.0, 1.0))
    for s, side in ((L, "left"), (R, "right")):
        def squint(x, s=s):
            xi, _, vup, vlo = eye_fissure(x.au)
            gap = np.clip(vup - vlo, 0.0, None)
            # the lower lid rises; the visible eyeball above it is compressed, not overrun
            lower = np.where(x.v <= vlo, gauss(np.clip(vlo - x.v, 0.0, None) / 6.0),
                             np.clip((vup - x.v) / np.maximum(gap, 1e-6), 0.0, 1.0))
            lower = lower * window(xi, 0.0, 1.0, 0.1)
            return (x.slide(0.0, 0.3 * gap * lower * x.half(s, 2.0)) + _eye_close(x, s, 0.12)
                    + x.slide(0.0, 1.5 * bump2(x.u, x.v, s * (c.u_ex + 2.0), c.v_eye - 16.0, 12.0, 9.0)))
        add(f"squint_{side}")(squint)
    for s, side in ((L, "left"), (R, "right")):
        add(f"eye_squeeze_{side}")(lambda x, s=s: _eye_close(x, s, 0.3) + _brow_slide(x, s, -2.0, -2.5)
                                   + x.slide(0.0, 2.0 * bump2(x.u, x.v, s * (c.u_ex + 2.0), c.v_eye - 18.0, 12.0, 9.0))
                                   + x.normal(-0.2 * np.cos(2 * np.pi * (x.v - c.v_eye) / 5.0)
                                              * bump2(x.u, x.v, s * (c.u_ex + 9.0), c.v_eye, 3.0, 5.0)))
    for s, side in ((L, "left"), (R, "right")):
        add(f"lid_droop_{side}")(lambda x, s=s: _eye_close(x, s, 0.25) + x.normal(
            0.5 * bump2(x.u, x.v, s * c.u_eye, c.v_eye + 8.0, 9.0, 3.0)))

    # ---- brows
    for s, side in ((L, "left"), (R, "right")):
        add(f"brow_inner_up_{side}")(lambda x, s=s: _brow_slide(x, s, 5.0, 0.5) + _forehead_wrinkles(x, s, 0.25))
    for s, side in ((L, "left"), (R, "right")):
        add(f"brow_outer_up_{side}")(lambda x, s=s: _brow_slide(x, s, 0.5, 5.0) + _forehead_wrinkles(x, s, 0.2))
    for s, side in ((L, "left"), (R, "right")):
        add(f"brow_down_{side}")(lambda x, s=s: _brow_slide(x, s, -2.5, -2.0) + x.normal(
            0.8 * bump2(x.u, x.v, s * c.u_eye, c.v_brow - 4.0, 14.0, 6.0) * x.half(s, 3.0)))
    add("brow_furrow")(lambda x: _brow_slide(x, L, -1.5, 0.0, inward=3.0) + _brow_slide(x, R, -1.5, 0.0, inward=3.0)
                       + x.normal(-0.25 * np.cos(2 * np.pi * x.u / 6.0) * bump2(x.u, x.v, 0.0, c.v_brow - 4.0, 5.0, 6.0)))
    # ---- puffs
    add("upper_lip_puff")(lambda x: x.normal(3.0 * bump2(x.u, x.v, 0.0, c.v_sn - 8.0, 14.0, 5.0)))
    add("lower_lip_puff")(lambda x: x.normal(3.5 * bump2(x.u, x.v, 0.0, c.v_sto - 14.0, 14.0, 6.0)))
    return lib


def expression_modes(ctx: ExpressionContext) -> tuple[np.ndarray, list[str]]:
    """All expression modes (K, N, 3) in mm per unit coefficient, and their names."""
    lib = expression_library()
    modes = np.stack([fn(ctx) for _, fn in lib])
    return modes, [n for n, _ in lib]
