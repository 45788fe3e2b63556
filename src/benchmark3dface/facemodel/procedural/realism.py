"""Realism yardstick: compare a morphable model's mean face and identity spread to a reference
face model (the ICT-FaceKit light face, ``ict_face_light.npz``), in millimetres.

Protocol:

1. Similarity alignment (Umeyama, with scale) of the model's mean face to the reference neutral
   on the 68 landmarks; the landmark RMS after alignment is reported.
2. Inner face region: the convex hull, in the reference's frontal (x, y) plane, of its 68
   landmarks plus its brow landmarks raised by ``forehead_mm`` (covering the forehead), and for
   the reference only its "narrow face area" vertices.
3. RMS point-to-surface distance of the model's aligned vertices in that region to the
   reference narrow-face surface, and of the reference's region vertices to the model's surface
   (open3d ``RaycastingScene.compute_distance``).
4. Identity spread: the per-vertex std (mm) of the displacement under N(0, 1) identity weights,
   ``sqrt(sum_k |B_k(v)|^2)``, averaged over the region's vertices, for both models (the model's
   in its own scale and after the alignment scale).

Nothing of the reference is stored or used by the generator; this module only measures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...geometry.mesh import umeyama

REFERENCE_KEYS = ("neutral", "triangles", "identity_modes", "landmarks68", "narrow_face_vertices")


def load_reference(path: str | Path) -> dict[str, np.ndarray]:
    """Load ``ict_face_light.npz`` (see ../shared/data/README.md), checking its keys."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"reference face model {path} not found (the ICT-FaceKit light face "
                                "packed as ict_face_light.npz, see shared/data/README.md)")
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in REFERENCE_KEYS if k not in z.files]
        if missing:
            raise KeyError(f"{path}: missing keys {missing}")
        return {k: z[k] for k in REFERENCE_KEYS}


def _distance_to_surface(vertices: np.ndarray, triangles: np.ndarray, points: np.ndarray) -> np.ndarray:
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.ascontiguousarray(vertices, dtype=np.float32)),
                        o3d.core.Tensor(np.ascontiguousarray(triangles, dtype=np.uint32)))
    return scene.compute_distance(o3d.core.Tensor(np.ascontiguousarray(points, dtype=np.float32))).numpy()


def inner_face_mask(points_xy: np.ndarray, ref_landmarks: np.ndarray, forehead_mm: float = 35.0) -> np.ndarray:
    """(N,) bool: points inside the landmark hull extended up by ``forehead_mm`` (frontal xy)."""
    from matplotlib.path import Path as MplPath
    from scipy.spatial import ConvexHull

    lm = ref_landmarks[:, :2]
    raised = lm[17:27] + np.array([0.0, forehead_mm])
    pts = np.concatenate([lm, raised])
    hull = pts[ConvexHull(pts).vertices]
    return MplPath(hull).contains_points(points_xy)


def compare_to_reference(mean_shape: np.ndarray, triangles: np.ndarray, landmarks68: np.ndarray,
                         id_basis: np.ndarray, reference: dict[str, np.ndarray],
                         forehead_mm: float = 35.0) -> dict[str, float]:
    """Realism figures of a model against the reference (all in mm, reference frame/scale).

    Args:
        mean_shape: (N, 3) mm; triangles (F, 3); landmarks68 (68,); id_basis (K, N, 3) mm per
        unit N(0, 1) coefficient.
    """
    ref_v = reference["neutral"].astype(np.float64)
    ref_f = reference["triangles"].astype(np.int64)
    ref_lm = reference["landmarks68"].astype(np.int64)
    n_narrow = int(reference["narrow_face_vertices"])
    narrow_f = ref_f[(ref_f < n_narrow).all(1)]
    v = np.asarray(mean_shape, dtype=np.float64)
    s, r, t = umeyama(torch.from_numpy(v[landmarks68])[None], torch.from_numpy(ref_v[ref_lm])[None])
    scale, rot, trans = float(s[0]), r[0].numpy(), t[0].numpy()
    va = scale * v @ rot.T + trans
    lm_err = np.linalg.norm(va[landmarks68] - ref_v[ref_lm], axis=1)

    ours_in = inner_face_mask(va[:, :2], ref_v[ref_lm], forehead_mm)
    d_ours = _distance_to_surface(ref_v, narrow_f, va[ours_in])
    ref_in = inner_face_mask(ref_v[:n_narrow, :2], ref_v[ref_lm], forehead_mm)
    d_ref = _distance_to_surface(va, triangles, ref_v[:n_narrow][ref_in])

    ours_std = np.sqrt((np.asarray(id_basis, dtype=np.float64) ** 2).sum(-1).sum(0))
    ref_std = np.sqrt((reference["identity_modes"][:, :n_narrow].astype(np.float64) ** 2).sum(-1).sum(0))
    groups = {"jaw": (0, 17), "brows": (17, 27), "nose": (27, 36), "eyes": (36, 48), "mouth": (48, 68)}
    out = {
        "alignment_scale": scale,
        "landmark_rms_mm": float(np.sqrt((lm_err ** 2).mean())),
        **{f"landmark_rms_{g}_mm": float(np.sqrt((lm_err[a:b] ** 2).mean())) for g, (a, b) in groups.items()},
        "surface_rms_model_to_ref_mm": float(np.sqrt((d_ours ** 2).mean())),
        "surface_rms_ref_to_model_mm": float(np.sqrt((d_ref ** 2).mean())),
        "surface_p95_model_to_ref_mm": float(np.percentile(d_ours, 95)),
        "inner_face_vertices_model": int(ours_in.sum()),
        "inner_face_vertices_ref": int(ref_in.sum()),
        "identity_std_model_mm": float(ours_std[ours_in].mean()),
        "identity_std_model_aligned_mm": float(scale * ours_std[ours_in].mean()),
        "identity_std_ref_mm": float(ref_std[ref_in].mean()),
        "identity_modes_model": int(np.asarray(id_basis).shape[0]),
        "identity_modes_ref": int(reference["identity_modes"].shape[0]),
    }
    out["surface_rms_mm"] = float(np.sqrt(0.5 * (out["surface_rms_model_to_ref_mm"] ** 2
                                                 + out["surface_rms_ref_to_model_mm"] ** 2)))
    return out
