"""Albedo (diffuse skin colour) of the procedural model: mean colours and PCA modes, in [0, 1].

The mean albedo paints the canonical chart: skin, slightly redder cheeks/nose/lips, darker
brows, eyes (sclera, iris, pupil, lash lines), darker nostrils. The population is a linear
Gaussian model: semantic colour directions (skin tone, redness, yellowness, lip colour, brow
darkness, beard shadow, under-eye darkness, iris colour ...) plus smooth random colour fields on
jittered grids (blotches at several scales); its principal components, scaled by their std,
are the albedo modes (coefficients ~ N(0, 1)).
"""

from __future__ import annotations

import numpy as np

from ..regions import L_BROW, L_EYE, L_LIP, NOSE, R_BROW, R_EYE, U_LIP
from .anatomy import CANON, bump2, eye_fissure, gauss, window
from .linalg import gaussian_centres, principal_modes

ALBEDO_MODES = 80

SKIN = np.array([0.74, 0.55, 0.46])
LIP = np.array([0.72, 0.42, 0.40])
BROW = np.array([0.36, 0.27, 0.22])
SCLERA = np.array([0.86, 0.83, 0.80])
IRIS = np.array([0.36, 0.26, 0.19])
PUPIL = np.array([0.06, 0.05, 0.05])


def _masks(uv: np.ndarray, regions: np.ndarray) -> dict[str, np.ndarray]:
    """Soft (N,) weights of the painted areas."""
    c = CANON
    u, v = uv[:, 0], uv[:, 1]
    au = np.sqrt(u * u + 1.0)
    xi, _, vup, vlo = eye_fissure(au)
    eye = np.isin(regions, (L_EYE, R_EYE)).astype(float)
    r_iris = np.hypot(au - c.u_eye, v - (c.v_eye + 0.8))
    lips = np.isin(regions, (U_LIP, L_LIP)).astype(float)
    brows = np.isin(regions, (L_BROW, R_BROW)).astype(float)
    lash = (gauss((v - vup) / 0.7) + 0.6 * gauss((v - vlo) / 0.6)) * window(xi, 0.0, 1.0, 0.03)
    return {
        "eye": eye,
        "iris": eye * window(r_iris, -1.0, 5.6, 0.4),
        "pupil": eye * window(r_iris, -1.0, 2.2, 0.3),
        "lash": np.clip(lash, 0.0, 1.0),
        "lips": lips,
        "lip_soft": np.clip(lips + 0.5 * bump2(u, v, 0.0, c.v_sto, c.u_ch, 7.0) * (1 - lips), 0, 1),
        "brows": brows,
        "brow_halo": np.clip(brows + 0.6 * np.maximum(bump2(au, v, c.u_eye + 4.0, c.v_brow - 2.0, 16.0, 5.0) - brows, 0), 0, 1),
        "cheeks": bump2(au, v, c.u_ex - 2.0, c.v_eye - 26.0, 14.0, 12.0),
        "nose": (regions == NOSE).astype(float),
        "nostrils": bump2(au, v, c.u_al - 8.0, c.v_sn + 2.5, 3.0, 2.0),
        "under_eye": bump2(au, v, c.u_eye, c.v_eye - 9.0, 12.0, 4.0),
        "lids": bump2(au, v, c.u_eye, c.v_eye + 8.0, 12.0, 4.0) * (1 - eye),
        "beard": (window(v, c.v_me - 15.0, c.v_sn - 2.0, 3.0) * window(au, -1.0, c.u_ch + 28.0, 8.0)
                  + window(v, c.v_me - 15.0, c.v_sto + 8.0, 4.0) * window(au, -1.0, 100.0, 8.0)) * (1 - lips),
        "skin": ((1 - eye) * (1 - lips) * (1 - brows)),
    }


def mean_albedo(uv: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """(N, 3) mean albedo in [0, 1]."""
    m = _masks(uv, regions)
    col = np.tile(SKIN, (uv.shape[0], 1))
    col += np.array([0.03, -0.025, -0.02]) * (m["cheeks"] + 0.6 * m["nose"])[:, None]
    col -= np.array([0.05, 0.06, 0.05]) * m["under_eye"][:, None]
    col -= np.array([0.04, 0.05, 0.04]) * m["lids"][:, None]
    col = col * (1 - m["lip_soft"][:, None]) + LIP * m["lip_soft"][:, None]
    col = col * (1 - 0.8 * m["brows"][:, None]) + BROW * 0.8 * m["brows"][:, None]
    col *= 1 - 0.45 * m["nostrils"][:, None]
    eye = m["eye"][:, None]
    col = col * (1 - eye) + SCLERA * eye
    col = col * (1 - m["iris"][:, None]) + IRIS * m["iris"][:, None]
    col = col * (1 - m["pupil"][:, None]) + PUPIL * m["pupil"][:, None]
    col *= 1 - 0.55 * m["lash"][:, None]
    return np.clip(col, 0.02, 0.98)


#: Semantic colour directions: (mask name, RGB change at one std).
COLOUR_DIRECTIONS: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("skin", (-0.125, -0.11, -0.105)),  # melanin: light <-> dark skin
    ("skin", (0.0, 0.018, -0.025)),  # yellowish <-> pinkish undertone
    ("skin", (0.035, -0.01, -0.012)),  # overall redness
    ("cheeks", (0.05, -0.02, -0.015)),  # cheek flush
    ("nose", (0.04, -0.015, -0.01)),  # red nose
    ("lips", (-0.06, -0.055, -0.045)),  # lip darkness
    ("lips", (0.045, -0.03, -0.01)),  # lip redness
    ("brow_halo", (-0.10, -0.08, -0.06)),  # brow darkness and thickness
    ("brows", (0.06, 0.04, 0.01)),  # blond <-> dark brows
    ("beard", (-0.05, -0.04, -0.03)),  # beard shadow
    ("under_eye", (-0.04, -0.05, -0.03)),  # dark circles
    ("lids", (-0.03, -0.04, -0.02)),  # eyelid tone
    ("iris", (0.03, 0.08, 0.14)),  # brown <-> blue/green eyes
    ("iris", (-0.10, -0.08, -0.05)),  # iris darkness
    ("eye", (0.03, -0.03, -0.03)),  # reddish sclera
)

#: Smooth random colour fields: (grid spacing mm, sigma fraction, red-green std, luminance std).
COLOUR_FIELDS: tuple[tuple[float, float, float, float], ...] = ((36.0, 0.6, 0.012, 0.02),
                                                                (18.0, 0.55, 0.008, 0.012))


def albedo_modes(uv: np.ndarray, regions: np.ndarray, rng: np.random.Generator,
                 count: int = ALBEDO_MODES) -> tuple[np.ndarray, np.ndarray]:
    """Albedo basis (count, N, 3) per unit coefficient and its stds (count,)."""
    m = _masks(uv, regions)
    skin = m["skin"]
    plan = [(c, rel_sigma * spacing, std_c, std_l) for spacing, rel_sigma, std_c, std_l in COLOUR_FIELDS
            for c in gaussian_centres(uv, spacing, rng)]
    cols_arr = np.zeros((len(COLOUR_DIRECTIONS) + 2 * len(plan), uv.shape[0], 3))
    for k, (mask, rgb) in enumerate(COLOUR_DIRECTIONS):
        cols_arr[k] = m[mask][:, None] * np.asarray(rgb)[None, :]
    k = len(COLOUR_DIRECTIONS)
    for c, sigma, std_c, std_l in plan:
        g = np.exp(-0.5 * ((uv - c) ** 2).sum(1) / sigma ** 2) * skin
        cols_arr[k] = g[:, None] * np.array([std_l, 0.85 * std_l, 0.7 * std_l])  # lighter/darker
        cols_arr[k + 1] = g[:, None] * np.array([std_c, -std_c, -0.5 * std_c])  # redder/greener
        k += 2
    modes, stds = principal_modes(cols_arr.reshape(cols_arr.shape[0], -1), count)
    return modes.reshape(count, -1, 3), stds
