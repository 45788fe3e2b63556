"""ICT-FaceKit ("ICT Face Model Light", USC Institute for Creative Technologies, MIT licence).

Loads the ``FaceXModel/`` folder of the public repository https://github.com/ICT-VGL/ICT-FaceKit
as it is cloned:

- ``generic_neutral_mesh.obj`` -- the neutral mesh (26,719 vertices, quads; 17 geometries, the
  first being "Face", vertices 0..9408);
- ``identity000.obj``, ``identity001.obj``, ... -- one full mesh per identity PCA mode (100 in
  the release); a mode is ``identityXXX - neutral`` and its weight is ~ N(0, 1);
- ``<name>.obj`` for each expression blendshape (ARKit names with ``_L``/``_R``: ``browDown_L``,
  ``jawOpen`` ...); a blendshape is ``<name> - neutral`` with a weight in [0, 1];
- ``vertex_indices.json`` -- the model configuration: ``"expressions"`` (the blendshape names, in
  order; ICT's own loader reads exactly these files), ``"idx_to_landmark_verts"`` (68 0-based
  vertex indices in the Multi-PIE / iBUG-68 order), plus fitting / rigid vertex lists not used
  here.

The OBJ files are in centimetres; the loader converts to millimetres, keeps only the face area
(vertices ``[0, 9409)``, or ``[0, 6706)`` for the "narrow face area"; polygons with all corners
inside), splits quads into triangles ``(a, b, c), (a, c, d)`` (counter-clockwise seen from the
front, like the OBJ's quads) and recentres the mean face (its vertex mean becomes the origin, as
docs/conventions.md requires). ICT's frame already matches the conventions (x to the viewer's
right, y up, z toward the camera). The model has no albedo (a uniform skin tone is used).

Landmarks come from ``vertex_indices.json``; a different file can be given with
``landmarks_path`` (``.json`` list or ``{"landmarks68": [...]}``, ``.txt``/``.npy`` with 68
0-based indices) -- needed only when the folder's json lacks ``idx_to_landmark_verts``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..geometry.meshio import read_obj, read_obj_vertices
from .bfm import check_face_frame, orient_outward
from .layout import CoeffLayout
from .model import MorphableModel

CM_TO_MM = 10.0
#: vertices of the "Face" geometry ([0, 9408]) and of the narrow face area ([0, 6705]).
FACE_VERTICES = 9409
NARROW_FACE_VERTICES = 6706
FACE_AREAS = {"face": FACE_VERTICES, "narrow": NARROW_FACE_VERTICES}
NEUTRAL_FILE = "generic_neutral_mesh.obj"
CONFIG_FILE = "vertex_indices.json"
ICT_SOURCE = "the ICT-FaceKit repository (https://github.com/ICT-VGL/ICT-FaceKit, MIT licence), folder FaceXModel/"

PathLike = str | os.PathLike


class IctFormatError(ValueError):
    """An ICT-FaceKit file with unexpected content (message names the file)."""


def _missing(path: Path, what: str) -> FileNotFoundError:
    return FileNotFoundError(f"{path} is missing: the 'ict' face model needs {what}, which comes from {ICT_SOURCE}")


def resolve_facexmodel_dir(path: PathLike | None) -> Path:
    """The ``FaceXModel`` folder: ``path`` itself or ``path/FaceXModel`` (a repository clone)."""
    if path is None:
        raise FileNotFoundError(f"no path given for the 'ict' face model: pass the FaceXModel folder of {ICT_SOURCE}")
    p = Path(path).expanduser()
    if p.is_dir() and not (p / NEUTRAL_FILE).is_file() and (p / "FaceXModel").is_dir():
        p = p / "FaceXModel"
    if not p.is_dir():
        raise _missing(p, "the FaceXModel folder")
    return p


def _read_config(folder: Path) -> dict:
    p = folder / CONFIG_FILE
    if not p.is_file():
        raise _missing(p, f"{CONFIG_FILE} (expression names and landmark vertices)")
    try:
        cfg = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise IctFormatError(f"{p}: not valid JSON ({exc})") from exc
    if not isinstance(cfg, dict):
        raise IctFormatError(f"{p}: expected a JSON object with key 'expressions'")
    return cfg


def read_landmark_file(path: PathLike) -> np.ndarray:
    """68 0-based vertex indices from ``.json`` (a list, or a dict with ``landmarks68`` or
    ``idx_to_landmark_verts``), ``.npy`` or whitespace/comma separated text."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"landmark file {p} does not exist")
    try:
        if p.suffix == ".json":
            data = json.loads(p.read_text())
            if isinstance(data, dict):
                data = data.get("landmarks68", data.get("idx_to_landmark_verts"))
            arr = np.asarray(data)
        elif p.suffix == ".npy":
            arr = np.load(p)
        else:
            arr = np.asarray(p.read_text().replace(",", " ").split(), dtype=np.float64)
    except (ValueError, json.JSONDecodeError) as exc:
        raise IctFormatError(f"{p}: cannot read landmark indices ({exc})") from exc
    return _landmarks(arr, p)


def _landmarks(arr, where) -> np.ndarray:
    try:
        a = np.asarray(arr, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise IctFormatError(f"{where}: landmark indices must be a list of 68 integers") from None
    if a.shape != (68,) or (a != np.round(a)).any():
        raise IctFormatError(f"{where}: expected 68 integer landmark indices, got {a.shape[0]} values")
    return a.astype(np.int64)


def _identity_files(folder: Path, limit: int | None) -> list[Path]:
    files = []
    while limit is None or len(files) < limit:
        p = folder / f"identity{len(files):03d}.obj"
        if not p.is_file():
            break
        files.append(p)
    if not files:
        raise _missing(folder / "identity000.obj", "the identity mode meshes identity000.obj, identity001.obj, ...")
    return files


def _morph_targets(files: list[Path], neutral_cm: np.ndarray, keep: int) -> np.ndarray:
    """(K, keep, 3) offsets ``target - neutral`` in centimetres."""
    out = np.empty((len(files), keep, 3), dtype=np.float64)
    for k, f in enumerate(files):
        v = read_obj_vertices(f)
        if v.shape[0] != neutral_cm.shape[0]:
            raise IctFormatError(f"{f}: has {v.shape[0]} vertices, {NEUTRAL_FILE} has {neutral_cm.shape[0]}; "
                                 "all FaceXModel meshes must share one topology")
        out[k] = v[:keep] - neutral_cm[:keep]
    return out


def load_ict_facekit(path: PathLike | None = None, layout: CoeffLayout | None = None, face_area: str = "face",
                     landmarks_path: PathLike | None = None, num_identities: int | None = None,
                     expressions: list[str] | None = None) -> MorphableModel:
    """Load an ICT-FaceKit ``FaceXModel`` folder as a ``MorphableModel`` (name ``"ict"``).

    Args:
        path: the FaceXModel folder (or a repository clone containing it).
        layout: coefficient layout (default: 80 identity, all (<= 64) expressions, no albedo).
        face_area: "face" (vertices [0, 9409)) or "narrow" ([0, 6706)).
        landmarks_path: optional file with 68 0-based landmark indices (module docstring);
            default: ``idx_to_landmark_verts`` of vertex_indices.json.
        num_identities: read at most this many identity meshes (default: all present).
        expressions: blendshape names to load (default: vertex_indices.json's "expressions").
    Returns:
        Model in millimetres, recentred, ``exp_prior="unit_interval"``, ``exp_names`` set.
    Raises:
        FileNotFoundError: a folder/file is missing (message names it and ICT-FaceKit as its source).
        IctFormatError: inconsistent content (vertex counts, landmarks, unknown face area).
    """
    if face_area not in FACE_AREAS:
        raise ValueError(f"face_area must be one of {sorted(FACE_AREAS)}, got {face_area!r}")
    folder = resolve_facexmodel_dir(path)
    cfg = _read_config(folder)
    cfg_path = folder / CONFIG_FILE
    names = list(expressions) if expressions is not None else cfg.get("expressions")
    if not isinstance(names, list) or not all(isinstance(s, str) for s in names):
        raise IctFormatError(f"{cfg_path}: key 'expressions' must be a list of blendshape names")
    if landmarks_path is not None:
        lm = read_landmark_file(landmarks_path)
        lm_source = str(landmarks_path)
    elif "idx_to_landmark_verts" in cfg:
        lm = _landmarks(cfg["idx_to_landmark_verts"], f"{cfg_path} key 'idx_to_landmark_verts'")
        lm_source = f"{cfg_path}:idx_to_landmark_verts"
    else:
        raise IctFormatError(f"{cfg_path}: key 'idx_to_landmark_verts' is missing; pass landmarks_path= "
                             "(a file with the 68 landmark vertex indices)")

    neutral_path = folder / NEUTRAL_FILE
    if not neutral_path.is_file():
        raise _missing(neutral_path, "the neutral mesh")
    neutral = read_obj(neutral_path)
    keep = FACE_AREAS[face_area]
    if neutral.vertices.shape[0] < keep:
        raise IctFormatError(f"{neutral_path}: has {neutral.vertices.shape[0]} vertices, fewer than the "
                             f"{keep} of the '{face_area}' area")
    if lm.min() < 0 or lm.max() >= keep:
        raise IctFormatError(f"{lm_source}: landmark indices must lie in the '{face_area}' area [0, {keep}), "
                             f"got [{lm.min()}, {lm.max()}]")
    tri = neutral.triangles[(neutral.triangles < keep).all(1)]
    if len(tri) == 0:
        raise IctFormatError(f"{neutral_path}: no polygon lies inside the '{face_area}' area [0, {keep})")

    id_files = _identity_files(folder, num_identities)
    ex_files = []
    for name in names:
        f = folder / f"{name}.obj"
        if not f.is_file():
            raise _missing(f, f"the expression blendshape '{name}' listed in {CONFIG_FILE}")
        ex_files.append(f)

    neutral_cm = neutral.vertices
    mean_mm = neutral_cm[:keep] * CM_TO_MM
    offset = mean_mm.mean(0)
    mean_mm = mean_mm - offset
    id_modes = _morph_targets(id_files, neutral_cm, keep) * CM_TO_MM
    ex_modes = _morph_targets(ex_files, neutral_cm, keep) * CM_TO_MM

    tri, flipped = orient_outward(mean_mm, tri)
    check_face_frame("ict", mean_mm, lm, str(folder))
    if layout is None:
        layout = CoeffLayout(id=min(80, len(id_files)), exp=min(64, len(ex_files)), tex=0)
    meta = {"source_dir": str(folder), "face_area": face_area, "identities": len(id_files),
            "expressions": len(ex_files), "recentred_by_mm": [round(float(x), 4) + 0.0 for x in offset]}
    if flipped:
        meta["winding_flipped"] = True
    return MorphableModel("ict", mean_mm, id_modes, ex_modes, tri, lm, layout=layout,
                          exp_prior="unit_interval", source_units="cm", meta=meta, exp_names=names[: layout.exp])
