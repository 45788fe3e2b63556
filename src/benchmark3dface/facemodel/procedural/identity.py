"""Identity modes of the procedural model: anatomical variation + smooth random fields -> PCA.

The population is a linear Gaussian model around the mean face (mm):

- one direction per anatomical parameter (``anatomy.PARAMS``), its central finite difference
  over +-1 population std: ``(S(p + std e_i) - S(p - std e_i)) / 2``;
- three correlated population directions (sex, age, body weight) that move several anatomical
  parameters together (``POPULATION_DIRECTIONS``, in units of each parameter's std);
- smooth random displacement fields: Gaussian bumps on jittered grids over the canonical chart
  (coarse: 3D displacement; medium: along the surface normal), for local shape variation.

No sampling is involved: the covariance of this model is exact, and its principal components
(``linalg.principal_modes``) are the identity modes, scaled by their std so that identity
coefficients are ~ N(0, 1) and ordered by decreasing variance. Every direction has its
vertex-mean removed first, so identity changes never translate the face.
"""

from __future__ import annotations

import numpy as np

from .anatomy import INDEX, PARAMS, mean_params, param_stds, surface
from .linalg import gaussian_centres, principal_modes

IDENTITY_MODES = 80

#: Correlated directions of the population, each in units of the parameters' stds
#: (+ = more masculine / older / heavier).
POPULATION_DIRECTIONS: dict[str, dict[str, float]] = {
    "sex": {"scale": 0.4, "brow_ridge": 1.2, "jaw_width": 0.8, "nose_projection": 0.6,
            "nose_width": 0.6, "chin_prominence": 0.6, "chin_width": 0.7, "lower_face_height": 0.6,
            "upper_lip_thickness": -0.4, "lower_lip_thickness": -0.3, "forehead_slope": 0.7,
            "orbit_depth": 0.6, "eye_opening": -0.3, "brow_arch": -0.6, "cheek_fullness": -0.3,
            "radix_height": 0.4},
    "age": {"nasolabial_depth": 1.2, "upper_lip_thickness": -0.8, "lower_lip_thickness": -0.6,
            "upper_lip_height": 0.6, "tip_droop": 0.8, "cheek_fullness": -0.4, "temple_hollow": 0.8,
            "orbit_depth": 0.5, "eye_opening": -0.4, "mentolabial_depth": 0.5, "lid_crease": 0.5},
    "weight": {"cheek_fullness": 1.3, "jaw_width": 0.7, "cheek_width": 0.6, "nasolabial_depth": 0.5,
               "temple_hollow": -0.6, "chin_prominence": -0.3, "cheekbone": -0.4,
               "mentolabial_depth": 0.4},
}

#: Smooth random fields: (grid spacing mm, Gaussian sigma as a fraction of it, 3D std mm,
#: normal std mm).
FIELD_SCALES: tuple[tuple[float, float, float, float], ...] = ((34.0, 0.65, 0.7, 1.2), (19.0, 0.6, 0.0, 0.75))


def anatomy_directions(uv: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Finite-difference directions (K, N, 3) of the anatomical parameters and population axes."""
    p0 = mean_params()
    std = param_stds()
    cache: dict = {}
    surface(p0, uv, cache)
    names, cols = [], []

    def central(delta: np.ndarray) -> np.ndarray:
        return 0.5 * (surface(p0 + delta, uv, cache) - surface(p0 - delta, uv, cache))

    for i, prm in enumerate(PARAMS):
        if prm.std > 0:
            d = np.zeros_like(p0)
            d[i] = std[i]
            names.append(prm.name)
            cols.append(central(d))
    for name, direction in POPULATION_DIRECTIONS.items():
        d = np.zeros_like(p0)
        for k, w in direction.items():
            d[INDEX[k]] = w * std[INDEX[k]]
        names.append(name)
        cols.append(central(d))
    return names, np.stack(cols)


def _field_plan(uv: np.ndarray, rng: np.random.Generator):
    plan = []
    for spacing, rel_sigma, std_xyz, std_n in FIELD_SCALES:
        for c in gaussian_centres(uv, spacing, rng):
            plan.append((c, rel_sigma * spacing, std_xyz, std_n))
    count = sum(int(std_n > 0) + 3 * int(std_xyz > 0) for _, _, std_xyz, std_n in plan)
    return plan, count


def field_directions(uv: np.ndarray, normals: np.ndarray, rng: np.random.Generator,
                     out: np.ndarray | None = None) -> np.ndarray:
    """Smooth random displacement fields (K, N, 3) over the canonical chart (written into
    ``out`` when given)."""
    plan, count = _field_plan(uv, rng)
    if out is None:
        out = np.zeros((count, uv.shape[0], 3))
    out[:] = 0.0
    k = 0
    for c, sigma, std_xyz, std_n in plan:
        g = np.exp(-0.5 * ((uv - c) ** 2).sum(1) / sigma ** 2)
        if std_n > 0:
            out[k] = std_n * g[:, None] * normals
            k += 1
        if std_xyz > 0:
            for axis in range(3):
                out[k, :, axis] = std_xyz * g
                k += 1
    return out


def identity_modes(uv: np.ndarray, normals: np.ndarray, rng: np.random.Generator,
                   count: int = IDENTITY_MODES) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Identity basis (count, N, 3) in mm per unit coefficient, its stds (count,), and the
    names of the anatomical directions that went in."""
    names, anat = anatomy_directions(uv)
    state = rng.bit_generator.state
    _, n_fields = _field_plan(uv, rng)
    rng.bit_generator.state = state  # the plan is drawn again below, identically
    cols = np.empty((len(anat) + n_fields, uv.shape[0], 3))
    cols[: len(anat)] = anat
    del anat
    field_directions(uv, normals, rng, out=cols[len(names):])
    cols -= cols.mean(axis=1, keepdims=True)  # identity never translates the face
    modes, stds = principal_modes(cols.reshape(cols.shape[0], -1), count)
    return modes.reshape(count, -1, 3), stds, names
