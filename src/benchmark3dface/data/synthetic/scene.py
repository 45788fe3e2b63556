"""Random scene parameters (numpy, float64): identities, expressions, poses, SH lighting,
multi-face layouts. Pure functions of a ``numpy.random.Generator``; angles in radians.

Coefficient groups follow the model's ``CoeffLayout`` (docs/conventions.md): identity and
albedo ~ N(0, std^2) (the model's bases are scaled for unit-variance coefficients); expressions
~ N(0, exp_std^2) for a Gaussian prior, or sparse blendshape weights in [0, exp_std] for a
``unit_interval`` model (ICT-FaceKit / ARKit).
"""

from __future__ import annotations

import math

import numpy as np

from ...facemodel.layout import CoeffLayout
from ...geometry.lighting import SH_A, SH_C
from .config import POSE_PRIORS, SynthConfig
from .seeding import identity_id, rng_for

A1C1 = SH_A[1] * SH_C[1]
A0C0 = SH_A[0] * SH_C[0]
A2C2 = SH_A[2] * SH_C[2]
DENG_SH_INIT = 0.8


def identity_coefficients(layout: CoeffLayout, identity: int, identity_seed: int = 0,
                          id_std: float = 1.0, tex_std: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Identity id -> ``(id (K_id,), tex (K_tex,))`` coefficients, a pure function of
    ``(identity_seed, identity)`` and the layout sizes."""
    rng = rng_for("b3f-identity", int(identity_seed), int(identity))
    ident = rng.standard_normal(layout.id) * id_std
    tex = rng.standard_normal(layout.tex) * tex_std
    return ident, tex


def detail_field(xy: np.ndarray, identity: int, identity_seed: int = 0, bumps: int = 24,
                 wrinkles: int = 6) -> np.ndarray:
    """Fine-detail field of an identity on a mesh: ``(N,)`` float64 in [-1, 1] (max |f| = 1).

    ``xy`` (N, 2): the vertices' model-frame x, y (mm; the model's mean shape, so the field
    follows the skin whatever the expression). A pure function of ``(identity_seed,
    identity)`` and ``xy``: ``bumps`` Gaussian bumps and dents (sigma 1.5-5 % of the face size)
    plus ``wrinkles`` wrinkle patches (sinusoids of wavelength 2-5 % of the face size under a
    Gaussian envelope of 8-20 %), at random places of the face's xy box; each term is
    evaluated within 5 sigma of its centre.
    """
    rng = rng_for("b3f-detail", int(identity_seed), int(identity))
    xy = np.asarray(xy, np.float64)
    x, y = np.ascontiguousarray(xy[:, 0]), np.ascontiguousarray(xy[:, 1])
    lo, hi = xy.min(0), xy.max(0)
    size = float(np.max(hi - lo))
    out = np.zeros(len(xy))

    def near(c: np.ndarray, sig: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Vertices within 5 sigma of ``c`` (beyond, exp(-12.5) is dropped) and their offsets."""
        k = np.flatnonzero((np.abs(x - c[0]) < 5 * sig) & (np.abs(y - c[1]) < 5 * sig))
        dx, dy = x[k] - c[0], y[k] - c[1]
        return k, dx, dy, dx * dx + dy * dy

    for _ in range(bumps):
        c = lo + rng.random(2) * (hi - lo)
        sig = rng.uniform(0.015, 0.05) * size
        sign = 1.0 if rng.random() < 0.5 else -1.0
        amp = rng.uniform(0.5, 1.0)
        k, _, _, r2 = near(c, sig)
        out[k] += sign * amp * np.exp(-r2 / (2 * sig * sig))
    for _ in range(wrinkles):
        c = lo + rng.random(2) * (hi - lo)
        env = rng.uniform(0.08, 0.2) * size
        theta = rng.uniform(0.0, np.pi)
        lam = rng.uniform(0.02, 0.05) * size
        phase = rng.uniform(0.0, 2 * np.pi)
        amp = rng.uniform(0.5, 1.0)
        k, dx, dy, r2 = near(c, env)
        d = dx * np.cos(theta) + dy * np.sin(theta)
        out[k] += amp * np.sin(2 * np.pi * d / lam + phase) * np.exp(-r2 / (2 * env * env))
    peak = float(np.abs(out).max())
    return out / peak if peak > 0 else out


def draw_identities(rng: np.random.Generator, cfg: SynthConfig, split: str, count: int) -> np.ndarray:
    """``count`` identity ids drawn uniformly from the split's pool (with replacement)."""
    local = rng.integers(0, cfg.num_identities(split), size=count)
    return np.array([identity_id(split, int(k)) for k in local], dtype=np.int64)


def sample_expression(rng: np.random.Generator, layout: CoeffLayout, exp_prior: str, count: int,
                      exp_std: float) -> np.ndarray:
    """``(count, K_exp)`` expression coefficients from the model's prior."""
    if exp_prior == "unit_interval":
        active = rng.random((count, layout.exp)) < 0.12
        return active * rng.random((count, layout.exp)) * min(exp_std, 1.0)
    return rng.standard_normal((count, layout.exp)) * exp_std


#: |yaw| histogram of AFLW2000-3D (3DDFA's ``AFLW2000-3D.pose.npy``, 2000 images, degrees) in
#: 10-degree bins 0-10, ..., 80-90; the 7 annotations beyond 90 degrees are counted in 80-90
#: (the engine's yaw limit). Bins 0-30 / 30-60 / 60-90: 1312 / 383 / 305 = 65.6 / 19.2 / 15.2 %.
AFLW2000_ABS_YAW_COUNTS = (672, 393, 247, 137, 117, 129, 143, 115, 47)
AFLW2000_ABS_YAW_EDGES = tuple(float(e) for e in range(0, 91, 10))


def abs_yaw_cdf(prior: str) -> tuple[np.ndarray, np.ndarray]:
    """``(edges_deg, cdf)`` knots of the |yaw| distribution of a pose prior on [0, 90] degrees
    (piecewise-linear CDF = piecewise-uniform density)."""
    if prior == "uniform":
        return np.array([0.0, 90.0]), np.array([0.0, 1.0])
    if prior == "aflw2000":
        counts = np.asarray(AFLW2000_ABS_YAW_COUNTS, dtype=np.float64)
        return np.asarray(AFLW2000_ABS_YAW_EDGES), np.concatenate([[0.0], np.cumsum(counts) / counts.sum()])
    raise ValueError(f"unknown pose_prior {prior!r}; choose one of {POSE_PRIORS}")


def yaw_from_uniform(s: np.ndarray, yaw_max: float, prior: str) -> np.ndarray:
    """Yaw in degrees from ``s`` uniform in [-1, 1): the sign of ``s`` is the yaw's sign and
    ``|s|`` is mapped through the inverse |yaw| CDF of ``prior`` truncated to ``[0, yaw_max]``.
    Monotone in ``s``; for ``uniform`` it is exactly ``s * yaw_max``."""
    if prior == "uniform":
        return s * yaw_max
    edges, cdf = abs_yaw_cdf(prior)
    top = float(np.interp(yaw_max, edges, cdf))  # the prior's mass within [0, yaw_max]
    return np.sign(s) * np.interp(np.abs(s) * top, cdf, edges)


def sample_angles(rng: np.random.Generator, count: int, yaw_max: float, pitch_max: float,
                  roll_max: float, pose_prior: str = "uniform") -> np.ndarray:
    """``(count, 3)`` (pitch, yaw, roll) in radians (degrees in).

    Pitch and roll are uniform within +-``pitch_max`` / +-``roll_max``. The yaw follows
    ``pose_prior``: ``uniform`` within +-``yaw_max``; ``aflw2000`` a random sign times a
    piecewise-uniform |yaw| with AFLW2000-3D's 10-degree bin masses
    (:data:`AFLW2000_ABS_YAW_COUNTS`), truncated to ``yaw_max``. Both draw the same
    ``count x 3`` uniform numbers (the yaw is a monotone map of the uniform prior's yaw), so the
    prior changes only the yaws: every later draw of a sample stays the same.
    """
    if pose_prior not in POSE_PRIORS:
        raise ValueError(f"unknown pose_prior {pose_prior!r}; choose one of {POSE_PRIORS}")
    u = rng.random((count, 3)) * 2.0 - 1.0
    if pose_prior == "uniform":
        return u * np.radians([pitch_max, yaw_max, roll_max])
    out = u * np.radians([pitch_max, 0.0, roll_max])
    out[:, 1] = np.radians(yaw_from_uniform(u[:, 1], yaw_max, pose_prior))
    return out


def sample_sh(rng: np.random.Generator, count: int, ambient_range: tuple[float, float],
              directional_max: float, tint: float) -> np.ndarray:
    """``(count, 27)`` SH coefficients ``[r0..r8, g0..g8, b0..b8]`` in Deng's convention.

    The irradiance of a normal n is ``ambient + k (d . n) + small second-order terms`` per
    channel, with ``ambient`` uniform in ``ambient_range`` (plus a colour tint), a light
    direction ``d`` in the frontal hemisphere and strength ``k <= directional_max``. Deng's
    ``+0.8`` on the DC coefficient is accounted for.
    """
    amb = rng.uniform(ambient_range[0], ambient_range[1], size=(count, 1))
    amb = amb + rng.standard_normal((count, 3)) * tint
    d = rng.standard_normal((count, 3))
    d[:, 2] = np.abs(d[:, 2]) + 0.3
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    k = rng.random((count, 1)) * directional_max
    second = rng.standard_normal((count, 5)) * 0.04
    out = np.zeros((count, 3, 9))
    out[:, :, 0] = amb / A0C0 - DENG_SH_INIT
    # Y1 = -a1c1 y, Y2 = a1c1 z, Y3 = -a1c1 x  ->  k (dx x + dy y + dz z)
    out[:, :, 1] = (-k * d[:, 1:2]) / A1C1
    out[:, :, 2] = (k * d[:, 2:3]) / A1C1
    out[:, :, 3] = (-k * d[:, 0:1]) / A1C1
    out[:, :, 4:9] = second[:, None, :] / A2C2
    return out.reshape(count, 27)


def first_order_achromatic(sh: np.ndarray) -> np.ndarray:
    """``(count, 27)`` SH coefficients (``sample_sh``'s layout) -> the same light without its
    second-order terms and colour: every channel gets the channel mean of the ambient and
    first-order terms (the irradiance ``ambient + k (d . n)``, equal in r, g and b)."""
    g = sh.reshape(-1, 3, 9).copy()
    g[:, :, 0:4] = g[:, :, 0:4].mean(1, keepdims=True)  # (Deng's +0.8 on the DC term is the same in every channel)
    g[:, :, 4:9] = 0.0
    return g.reshape(-1, 27)


def face_size_px(lm68: np.ndarray) -> np.ndarray:
    """``sqrt(w h)`` of the 68-landmark bounding box, ``(..., 68, 2) -> (...)`` pixels."""
    wh = lm68.max(-2) - lm68.min(-2)
    return np.sqrt(np.maximum(wh[..., 0] * wh[..., 1], 1e-12))


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area + areas - inter)


def multiface_layout(rng: np.random.Generator, width: int, height: int, min_faces: int,
                     max_faces: int, scale_range: tuple[float, float], max_overlap: float,
                     attempts: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Face centres ``(F, 2)`` px and crop-equivalent sizes ``(F,)`` px for a multi-face image.

    Faces are placed one by one (sizes log-uniform in ``scale_range``, capped at 0.9 of the
    image), rejecting positions whose square box (side 0.8 x size) overlaps an earlier box
    with IoU > ``max_overlap`` or whose centre falls in an earlier box (or vice versa).
    A face that finds no place in ``attempts`` tries is dropped; the first always fits.
    """
    target = int(rng.integers(min_faces, max_faces + 1))
    lo, hi = math.log(scale_range[0]), math.log(min(scale_range[1], 0.9 * min(width, height)))
    hi = max(hi, lo)
    centres, sizes, boxes = [], [], []
    for _ in range(target):
        size = math.exp(rng.uniform(lo, hi))
        half = 0.4 * size
        for _try in range(attempts):
            m = 0.75 * half  # up to ~a quarter of the box may leave the frame
            c = np.array([rng.uniform(m, width - m), rng.uniform(m, height - m)])
            box = np.array([c[0] - half, c[1] - half, c[0] + half, c[1] + half])
            if boxes:
                b = np.asarray(boxes)
                pc = np.asarray(centres)
                inside_old = ((c[0] >= b[:, 0]) & (c[0] <= b[:, 2]) & (c[1] >= b[:, 1]) & (c[1] <= b[:, 3])).any()
                old_inside = ((pc[:, 0] >= box[0]) & (pc[:, 0] <= box[2]) & (pc[:, 1] >= box[1]) & (pc[:, 1] <= box[3])).any()
                if inside_old or old_inside or (_iou(box, b) > max_overlap).any():
                    continue
            centres.append(c)
            sizes.append(size)
            boxes.append(box)
            break
    return np.asarray(centres, dtype=np.float64), np.asarray(sizes, dtype=np.float64)
