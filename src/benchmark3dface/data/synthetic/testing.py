"""A tiny analytic morphable model for fast tests of the synthetic engine and data modules.

Not a face model for training: a face-sized height field (dome, nose, eye dents) on a regular
grid with hand-placed iBUG-68 landmarks, smooth random identity/albedo bases and four
expression modes (jaw open, smile, brow raise, pucker). Millimetres, model frame
(docs/conventions.md), deterministic.
"""

from __future__ import annotations

import numpy as np

from ...facemodel.layout import CoeffLayout
from ...facemodel.model import MorphableModel
from ...render.testmesh import grid_faces


def _template68() -> np.ndarray:
    """Approximate iBUG-68 positions (x right, y up; mm) on a 140 mm wide face."""
    t = np.linspace(0.0, np.pi, 17)
    jaw = np.stack([-70 * np.cos(t), 10 - 85 * np.sin(t)], 1)
    bx = np.linspace(-55, -15, 5)
    brow_l = np.stack([bx, 38 + 4 * np.sin((bx + 55) / 40 * np.pi)], 1)
    brow_r = brow_l[::-1] * np.array([-1, 1])
    bridge = np.array([[0, 25], [0, 15], [0, 5], [0, -5]], float)
    base = np.array([[-15, -15], [-8, -17], [0, -18], [8, -17], [15, -15]], float)
    eye_l = np.array([[-46, 25], [-37, 29], [-27, 29], [-18, 25], [-27, 21], [-37, 21]], float)
    eye_r = np.array([[18, 25], [27, 29], [37, 29], [46, 25], [37, 21], [27, 21]], float)
    mouth = np.array([[-25, -40], [-15, -34], [-6, -32], [0, -33], [6, -32], [15, -34], [25, -40],
                      [15, -47], [6, -50], [0, -51], [-6, -50], [-15, -47]], float)
    inner = np.array([[-20, -40], [-7, -38], [0, -38], [7, -38], [20, -40], [7, -43], [0, -44],
                      [-7, -43]], float)
    return np.concatenate([jaw, brow_l, brow_r, bridge, base, eye_l, eye_r, mouth, inner])


def _gauss(x, y, cx, cy, sx, sy):
    return np.exp(-(((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))


def tiny_facemodel(side: int = 49, n_id: int = 8, n_tex: int = 4) -> MorphableModel:
    """A ``side x side`` grid face (``side=49``: 2,401 vertices, 4,608 triangles)."""
    rng = np.random.default_rng(1234)
    xs = np.linspace(-85.0, 85.0, side)
    ys = np.linspace(80.0, -100.0, side)
    y, x = np.meshgrid(ys, xs, indexing="ij")
    x, y = x.reshape(-1), y.reshape(-1)
    dome = 60.0 * np.sqrt(np.clip(1 - (x / 95) ** 2 - ((y + 10) / 115) ** 2, 0, None))
    z = (dome + 22.0 * _gauss(x, y, 0, -2, 11, 22) - 6.0 * _gauss(x, y, -32, 25, 12, 7)
         - 6.0 * _gauss(x, y, 32, 25, 12, 7))
    mean = np.stack([x, y, z], 1)
    mean -= mean.mean(0)
    lm_xy = _template68() + mean[:, :2].mean(0) * 0  # template is already roughly centred
    d = ((mean[None, :, :2] - lm_xy[:, None, :]) ** 2).sum(-1)
    landmarks = d.argmin(1)
    xx, yy = mean[:, 0], mean[:, 1]

    def smooth_field(amplitude: float) -> np.ndarray:
        out = np.zeros(len(xx))
        for _ in range(3):
            a, b = rng.normal(0, 1.0 / 200, 2)
            out += np.cos(a * xx * 2 * np.pi + b * yy * 2 * np.pi + rng.uniform(0, 2 * np.pi))
        return out * amplitude / 3

    id_basis = np.stack([np.stack([smooth_field(3.0), smooth_field(3.0), smooth_field(4.0)], 1)
                         for _ in range(n_id)])
    jaw = np.zeros_like(mean)
    jaw[:, 1] = -12.0 * np.clip((-40 - yy) / 50, 0, 1)
    smile = np.zeros_like(mean)
    for sx in (-25, 25):
        g = _gauss(xx, yy, sx, -40, 12, 10)
        smile[:, 0] += np.sign(sx) * 4.0 * g
        smile[:, 1] += 5.0 * g
    brow = np.zeros_like(mean)
    brow[:, 1] = 5.0 * (_gauss(xx, yy, -35, 38, 20, 8) + _gauss(xx, yy, 35, 38, 20, 8))
    pucker = np.zeros_like(mean)
    pucker[:, 2] = 6.0 * _gauss(xx, yy, 0, -42, 18, 10)
    exp_basis = np.stack([jaw, smile, brow, pucker])
    lips = _gauss(xx, yy, 0, -41, 24, 7)
    mean_alb = np.stack([0.80 - 0.1 * lips, 0.60 - 0.2 * lips, 0.50 - 0.15 * lips], 1)
    tex_basis = np.stack([np.stack([smooth_field(0.06), smooth_field(0.05), smooth_field(0.05)], 1)
                          for _ in range(n_tex)])
    tri = grid_faces(side, side).numpy()
    layout = CoeffLayout(id=n_id, exp=4, tex=n_tex)
    return MorphableModel("tiny", mean, id_basis, exp_basis, tri, landmarks, mean_alb, tex_basis,
                          layout=layout, meta={"note": "analytic test model"})
