"""Test fixtures in the TRUE upstream file formats (not collected as tests).

- ``synthetic_face``: a small front-facing grid face (mm, model frame) with 68 iBUG landmarks.
- ``write_bfm09_dir``: the six BFM09 input files of ``build_bfm_front`` (same keys, dtypes,
  1-based indices and layouts as the real files) around that face, returning the values the built
  and loaded model must reproduce.
- ``write_facexmodel_dir``: an ICT-FaceKit ``FaceXModel`` folder (OBJ in cm, quads with ``v/vt``
  references, ``vertex_indices.json``) written from the shared ``ict_face_light.npz``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.io import savemat

# ----------------------------------------------------------------------------- synthetic face
_EYE_L = [(-50, 25), (-40, 30), (-30, 30), (-20, 25), (-30, 20), (-40, 20)]
_MOUTH_OUT = [(-28, -50), (-18, -42), (-8, -39), (0, -40), (8, -39), (18, -42), (28, -50),
              (18, -58), (8, -62), (0, -63), (-8, -62), (-18, -58)]
_MOUTH_IN = [(-22, -50), (-10, -47), (0, -47), (10, -47), (22, -50), (10, -53), (0, -53), (-10, -53)]


def landmark_template() -> np.ndarray:
    """(68, 2) iBUG-68 positions (mm, x right, y up) of a schematic face."""
    k = np.arange(17)
    jaw = np.stack([-70 * np.cos(np.pi * k / 16), 20 - 110 * np.sin(np.pi * k / 16)], 1)
    brow_l = np.stack([np.linspace(-60, -12, 5), 40 + 6 * np.sin(np.linspace(0, np.pi, 5))], 1)
    brow_r = brow_l[::-1] * [-1, 1]
    nose = [(0, 30), (0, 18), (0, 6), (0, -5), (-16, -20), (-8, -21), (0, -22), (8, -21), (16, -20)]
    eye_r = [(20, 25), (30, 30), (40, 30), (50, 25), (40, 20), (30, 20)]
    pts = np.concatenate([jaw, brow_l, brow_r, np.array(nose), np.array(_EYE_L), np.array(eye_r),
                          np.array(_MOUTH_OUT), np.array(_MOUTH_IN)], 0)
    assert pts.shape == (68, 2)
    return pts.astype(np.float64)


def synthetic_face(nx: int = 33, ny: int = 41):
    """Grid face: vertices (N, 3) mm, CCW triangles (F, 3) 0-based, landmarks (68,) 0-based.

    z is an ellipsoid cap plus a nose bump whose top is the landmark-30 vertex (largest z).
    """
    xs = np.linspace(-80, 80, nx)
    ys = np.linspace(-100, 100, ny)
    gx, gy = np.meshgrid(xs, ys, indexing="ij")  # vertex (i, j) -> index i * ny + j
    z = 80 * np.sqrt(np.clip(1 - (gx / 90) ** 2 - (gy / 130) ** 2, 0.05, 1))
    z = z + 25 * np.exp(-(gx ** 2 / (2 * 8 ** 2) + (gy + 5) ** 2 / (2 * 18 ** 2)))
    verts = np.stack([gx, gy, z], -1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(nx - 1), np.arange(ny - 1), indexing="ij")
    a = (i * ny + j).ravel()
    b = ((i + 1) * ny + j).ravel()
    c = ((i + 1) * ny + j + 1).ravel()
    d = (i * ny + j + 1).ravel()
    tris = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)], 0)
    tmpl = landmark_template()
    lm = np.argmin(((verts[None, :, :2] - tmpl[:, None]) ** 2).sum(-1), axis=1)
    return verts, tris.astype(np.int64), lm.astype(np.int64)


def _point_buf(tris: np.ndarray, n: int, width: int = 8) -> np.ndarray:
    """Deng's point_buf: up to ``width`` adjacent triangles per vertex, 1-based, padded with F+1."""
    buf = np.full((n, width), len(tris) + 1, dtype=np.int64)
    fill = np.zeros(n, dtype=np.int64)
    for f, t in enumerate(tris):
        for v in t:
            if fill[v] < width:
                buf[v, fill[v]] = f + 1
                fill[v] += 1
    return buf


# ----------------------------------------------------------------------------- BFM09
def write_bfm09_dir(folder: Path, seed: int = 0, n_shape: int = 199, n_exp: int = 79,
                    extra_exp: int = 150, extra_bfm: int = 200) -> dict:
    """Write 01_MorphableModel.mat, Exp_Pca.bin, std_exp.txt, BFM_front_idx.mat, BFM_exp_idx.mat
    and facemodel_info.mat for a synthetic face; return the expected front-model values in
    framework units (mm, [0, 1] colours, 0-based indices).

    The front values are placed into the full arrays by scattering through random index maps
    (front -> expression vertex -> BFM vertex), so a wrong gather in the builder shows up.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    verts, tris, lm = synthetic_face()
    n = len(verts)
    n_expv, n_bfm = n + extra_exp, n + extra_exp + extra_bfm
    idx = rng.permutation(n_expv)[:n]          # front vertex i -> expression vertex idx[i]
    trim = rng.permutation(n_bfm)[:n_expv]     # expression vertex e -> BFM vertex trim[e]
    front_bfm = trim[idx]
    offset_mm = np.array([3.0, -4.0, 100.0])   # BFM's mean is not centred

    # expected front-model quantities (mm per unit coefficient, colours in [0, 1])
    id_field = rng.normal(0, 2.0, (n_shape, n, 3)) / np.arange(1, n_shape + 1)[:, None, None] ** 0.5
    exp_field = rng.normal(0, 1.5, (n_exp, n, 3))
    albedo = rng.uniform(0.3, 0.8, (n, 3))
    tex_field = rng.normal(0, 0.02, (n_shape, n, 3))
    shape_ev = rng.uniform(1e3, 5e4, n_shape)
    tex_ev = rng.uniform(5.0, 80.0, n_shape)
    exp_ev = rng.uniform(1e3, 2e4, n_exp)

    def scatter(front_vals: np.ndarray, rows: np.ndarray, total: int, fill_scale: float) -> np.ndarray:
        """(K, n, 3) front values -> (3*total, K) interleaved array with random filler elsewhere."""
        k = front_vals.shape[0]
        full = rng.normal(0, fill_scale, (total, 3, k))
        full[rows] = front_vals.transpose(1, 2, 0)
        return full.reshape(3 * total, k)

    um = 1e3  # mm -> micrometres
    shape_mu = scatter((verts + offset_mm)[None] * um, front_bfm, n_bfm, 5e4)
    shape_pc = scatter(id_field * um / shape_ev[:, None, None], front_bfm, n_bfm, 1e-2)
    tex_mu = scatter(albedo[None] * 255.0, front_bfm, n_bfm, 50.0)
    tex_pc = scatter(tex_field * 255.0 / tex_ev[:, None, None], front_bfm, n_bfm, 1e-2)
    exp_pc = scatter(exp_field * um / exp_ev[:, None, None], idx, n_expv, 1e-2)
    exp_mu = rng.normal(0, 3e3, 3 * n_expv)   # Deng's transfer does not use it

    full_tris = rng.integers(1, n_bfm + 1, (500, 3))
    savemat(folder / "01_MorphableModel.mat", {
        "shapeMU": shape_mu.astype(np.float32), "shapePC": shape_pc.astype(np.float32),
        "shapeEV": shape_ev[:, None].astype(np.float32), "texMU": tex_mu.astype(np.float32),
        "texPC": tex_pc.astype(np.float32), "texEV": tex_ev[:, None].astype(np.float32),
        "tl": full_tris.astype(np.float64), "segbin": np.zeros((4, n_bfm), np.uint8),
    })
    with open(folder / "Exp_Pca.bin", "wb") as fh:
        np.array([n_exp], dtype="<i4").tofile(fh)
        exp_mu.astype("<f4").tofile(fh)
        # one block of 3*V values per component (the file's component-major layout)
        np.ascontiguousarray(exp_pc.T).astype("<f4").tofile(fh)
    np.savetxt(folder / "std_exp.txt", exp_ev, fmt="%.8f")
    savemat(folder / "BFM_front_idx.mat", {"idx": (idx + 1)[:, None].astype(np.float64)})
    savemat(folder / "BFM_exp_idx.mat", {"trimIndex": (trim + 1)[:, None].astype(np.int32)})

    skin = np.zeros(n, dtype=np.float64)
    skin[rng.choice(n, n // 2, replace=False)] = 1
    front_idx = np.sort(rng.choice(n, int(n * 0.8), replace=False))
    tri_mask2 = tris[: len(tris) // 2]
    savemat(folder / "facemodel_info.mat", {
        "frontmask2_idx": (front_idx + 1)[:, None].astype(np.float64),
        "skinmask": skin[None],
        "keypoints": (lm + 1)[None].astype(np.float64),
        "tri": (tris + 1).astype(np.float64),
        "tri_mask2": (tri_mask2 + 1).astype(np.float64),
        "point_buf": _point_buf(tris, n).astype(np.float64),
    })
    return {
        "vertices": verts, "offset_mm": offset_mm, "triangles": tris, "landmarks": lm,
        "id_field": id_field[:80], "exp_field": exp_field[:64], "albedo": albedo, "tex_field": tex_field[:80],
        "skin": skin.astype(bool), "front_idx": front_idx, "n": n,
    }


# ----------------------------------------------------------------------------- ICT-FaceKit
def _obj_text(vertices_cm: np.ndarray, quads: np.ndarray) -> str:
    """Upstream style: mtllib, v lines, one vt per vertex, ``f v/vt ...`` quads (1-based)."""
    n = len(vertices_cm)
    uv = np.stack([np.linspace(0, 1, n), np.linspace(1, 0, n)], 1)
    parts = ["mtllib ICTFaceModelMaterial.mtl\n"]
    parts.append("\n".join(["v %.9f %.9f %.9f"] * n) % tuple(vertices_cm.ravel().tolist()) + "\n")
    parts.append("\n".join(["vt %.6f %.6f"] * n) % tuple(uv.ravel().tolist()) + "\n")
    parts.append("usemtl face\n")
    q = np.repeat(quads + 1, 2, axis=1)  # v/vt with vt == v
    parts.append("\n".join(["f %d/%d %d/%d %d/%d %d/%d"] * len(q)) % tuple(q.ravel().tolist()) + "\n")
    return "".join(parts)


def quads_from_triangles(tris: np.ndarray) -> np.ndarray:
    """Pairs (a, b, c), (a, c, d) of consecutive triangles -> quads (a, b, c, d)."""
    t1, t2 = tris[0::2], tris[1::2]
    assert (t1[:, 0] == t2[:, 0]).all() and (t1[:, 2] == t2[:, 1]).all()
    return np.concatenate([t1, t2[:, 2:]], 1)


def write_facexmodel_dir(folder: Path, npz: dict, n_id: int = 3, exp_names: tuple[str, ...] | None = None,
                         seed: int = 0, with_landmarks: bool = True) -> dict:
    """Write an ICT-FaceKit FaceXModel folder from the packed npz (mm) in upstream form (cm).

    The meshes get 12 extra "head" vertices after the 9409 face vertices, with quads among them and
    quads joining them to the face; both must be dropped by the face-area crop.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    neutral = npz["neutral"].astype(np.float64)
    nf = len(neutral)
    head = np.array([[x, y, -60.0] for x in (-60, -20, 20, 60) for y in (-40, 0, 40)])
    face_quads = quads_from_triangles(npz["triangles"].astype(np.int64))
    hq = nf + np.array([[0, 3, 4, 1], [1, 4, 5, 2], [3, 6, 7, 4], [6, 9, 10, 7]])
    mixed = np.array([[0, 1, nf, nf + 1]])  # face/head mixed polygon
    quads = np.concatenate([face_quads, hq, mixed], 0)
    names = list(exp_names if exp_names is not None else npz["expression_names"][:4])

    def write(name: str, verts_mm: np.ndarray) -> None:
        (folder / f"{name}.obj").write_text(_obj_text(verts_mm / 10.0, quads))

    write("generic_neutral_mesh", np.concatenate([neutral, head], 0))
    for k in range(n_id):
        moved_head = head + rng.normal(0, 2, head.shape)
        write(f"identity{k:03d}", np.concatenate([neutral + npz["identity_modes"][k], moved_head], 0))
    all_names = [str(s) for s in npz["expression_names"]]
    for name in names:
        k = all_names.index(name)
        write(name, np.concatenate([neutral + npz["expression_modes"][k], head], 0))
    cfg = {"expressions": names, "fitting_expressions": names, "incompatibilities": [],
           "idx_to_fitting_verts": list(range(0, nf, 7)), "idx_to_rigid_verts": list(range(0, nf, 11))}
    if with_landmarks:
        cfg["idx_to_landmark_verts"] = [int(i) for i in npz["landmarks68"]]
    cfg["idx_to_rigid_landmark_idx"] = [0, 36, 39, 42, 45, 16, 28, 31, 35]
    (folder / "vertex_indices.json").write_text(json.dumps(cfg, indent=4))
    (folder / "ICTFaceModelMaterial.mtl").write_text("newmtl face\n")
    return {"names": names, "n_id": n_id}
