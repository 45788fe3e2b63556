"""The Basel Face Model as used by Deng et al. 2019 (``BFM_model_front.mat``).

``BFM_model_front.mat`` is not distributed; it is built from the BFM09 release and public
expression/index files by ``build_bfm_front`` (``b3f facemodel build-bfm``):

- ``01_MorphableModel.mat`` -- BFM09, University of Basel (https://faces.dmi.unibas.ch/bfm,
  free after registration): ``shapeMU`` (3*53490, 1), ``shapePC`` (3*53490, 199), ``shapeEV``
  (199, 1), ``texMU``, ``texPC``, ``texEV`` likewise, ``tl`` (triangles, 1-based). Lengths in
  micrometres, colours 0..255; PC rows interleave ``x, y, z`` per vertex.
- ``Exp_Pca.bin`` -- the expression PCA of Guo et al., "CNN-based Real-time Dense Face
  Reconstruction with Inverse-rendered Photo-realistic Face Images" (github.com/Juyong/3DFace):
  ``int32 exp_dim``, then ``3*53215`` float32 ``expMU``, then ``exp_dim`` blocks of ``3*53215``
  float32 (one block per component, ``x, y, z`` interleaved per vertex).
- ``std_exp.txt`` (``exp_dim`` standard deviations, the ``expEV``), ``BFM_front_idx.mat`` (key
  ``idx``: 1-based indices of the 35709 front vertices into the 53215 expression vertices),
  ``BFM_exp_idx.mat`` (key ``trimIndex``: 1-based indices of the 53215 expression vertices into
  the 53490 BFM vertices) and ``facemodel_info.mat`` (``frontmask2_idx``, ``skinmask``,
  ``keypoints``, ``tri``, ``tri_mask2``, ``point_buf``) -- from the ``BFM`` folder of Deng's
  Deep3DFaceReconstruction repository (github.com/microsoft/Deep3DFaceReconstruction).

Build (Deng's transfer, reproduced from its description):
``idBase = shapePC * shapeEV / 1e5`` (first 80), ``exBase = expPC * expEV / 1e5`` (first 64),
``texBase = texPC * texEV`` (first 80), ``meanshape = shapeMU / 1e5``, ``meantex = texMU``, all
restricted to the front vertices (BFM vertex ``trimIndex[idx]`` for identity/texture/mean, exp
vertex ``idx`` for the expression basis). Deng's transfer reads ``expMU`` but does **not** add it
to the mean shape (the mean is BFM's neutral ``shapeMU``); ``build_bfm_front`` does the same so
its output matches the file every Deng-based method uses. Arrays are float32 as in Deng's file;
``meanshape``/``meantex`` are saved as rows ``[1, 3N]``.

Load (``load_bfm_front``): lengths decimetres -> millimetres (x100); the mean shape is recentred
(its vertex mean subtracted), as Deng's code does; colours /255; every 1-based index array is
converted to 0-based. BFM's frame already matches docs/conventions.md (x to the viewer's right,
y up, z toward the camera: the nose tip has the largest z) and its triangles are counter-clockwise
seen from the front (Deng's normal ``(v1-v2) x (v2-v3)`` equals ``(v2-v1) x (v3-v1)``); the loader
checks both on the mean face and warns (frame) or fixes the winding if a file disagrees.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .layout import CoeffLayout
from .model import MorphableModel

BFM_FRONT_FILE = "BFM_model_front.mat"
#: Deng's units after /1e5 are decimetres; the framework uses millimetres.
DM_TO_MM = 100.0
#: BFM09 micrometres -> Deng's decimetres.
UM_TO_DM = 1e-5

_DENG_BFM = ("the BFM folder of Deng et al.'s Deep3DFaceReconstruction repository "
             "(github.com/microsoft/Deep3DFaceReconstruction)")
#: where each raw file needed by ``build_bfm_front`` comes from.
BFM09_SOURCES: dict[str, str] = {
    "01_MorphableModel.mat": "the Basel Face Model 2009 (BFM09), University of Basel, "
                             "https://faces.dmi.unibas.ch/bfm (free after registration)",
    "Exp_Pca.bin": "Guo et al., 'CNN-based Real-time Dense Face Reconstruction with Inverse-rendered "
                   "Photo-realistic Face Images' (github.com/Juyong/3DFace), as linked from " + _DENG_BFM,
    "std_exp.txt": _DENG_BFM,
    "BFM_front_idx.mat": _DENG_BFM,
    "BFM_exp_idx.mat": _DENG_BFM,
    "facemodel_info.mat": _DENG_BFM,
}

PathLike = str | os.PathLike


class BfmFormatError(ValueError):
    """A BFM file with missing keys, wrong shapes or invalid values (message names file and key)."""


def _missing_front_message(path: Path | None) -> str:
    where = f"{path} does not exist" if path is not None else "no path was given"
    files = ", ".join(BFM09_SOURCES)
    return (f"{BFM_FRONT_FILE} is needed for the 'bfm' face model but {where}. Build it with "
            f"`b3f facemodel build-bfm --bfm-dir DIR --out {BFM_FRONT_FILE}` from the BFM09 files in DIR "
            f"({files}): 01_MorphableModel.mat comes from {BFM09_SOURCES['01_MorphableModel.mat']}; "
            f"Exp_Pca.bin from {BFM09_SOURCES['Exp_Pca.bin']}; std_exp.txt, BFM_front_idx.mat, "
            f"BFM_exp_idx.mat and facemodel_info.mat from {_DENG_BFM}.")


def _loadmat(path: Path) -> dict[str, Any]:
    from scipy.io import loadmat

    try:
        return loadmat(str(path))
    except NotImplementedError as exc:  # MATLAB v7.3 (HDF5) files
        raise BfmFormatError(f"{path}: MATLAB v7.3 files are not supported ({exc}); re-save it with "
                             "`save(..., '-v7')`") from exc
    except Exception as exc:  # scipy raises several types for corrupt files
        raise BfmFormatError(f"{path}: not a readable MATLAB .mat file ({exc})") from exc


def _get(mat: dict[str, Any], path: Path, key: str) -> np.ndarray:
    if key not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise BfmFormatError(f"{path}: key {key!r} is missing (keys present: {keys})")
    a = np.asarray(mat[key])
    if a.dtype == object or not np.issubdtype(a.dtype, np.number):
        raise BfmFormatError(f"{path}: key {key!r} must be numeric, got dtype {a.dtype}")
    return a


def _floats(mat, path: Path, key: str, rows: int | None = None, cols: int | None = None,
            vector: bool = False) -> np.ndarray:
    """A float array; ``vector`` accepts [n, 1], [1, n] or [n] and returns (n,)."""
    a = _get(mat, path, key).astype(np.float32, copy=False)
    if vector:
        if a.ndim > 2 or (a.ndim == 2 and 1 not in a.shape):
            raise BfmFormatError(f"{path}: key {key!r} must be a vector ([n, 1] or [1, n]), got shape {a.shape}")
        a = a.reshape(-1)
        if rows is not None and a.shape[0] != rows:
            raise BfmFormatError(f"{path}: key {key!r} has {a.shape[0]} values, expected {rows}")
    else:
        if a.ndim != 2 or (rows is not None and a.shape[0] != rows) or (cols is not None and a.shape[1] != cols):
            want = f"({rows if rows is not None else 'n'}, {cols if cols is not None else 'k'})"
            raise BfmFormatError(f"{path}: key {key!r} has shape {a.shape}, expected {want}")
    if not np.isfinite(a).all():
        raise BfmFormatError(f"{path}: key {key!r} contains NaN or infinite values")
    return a


def _indices(mat, path: Path, key: str, upper: int, cols: int | None = None, count: int | None = None) -> np.ndarray:
    """A 1-based MATLAB index array -> 0-based int64 (shape kept for ``cols``, flattened otherwise)."""
    a = _get(mat, path, key)
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all() or (a != np.round(a)).any():
            raise BfmFormatError(f"{path}: key {key!r} must hold whole-number indices")
    a = a.astype(np.int64)
    if cols is not None:
        if a.ndim != 2 or a.shape[1] != cols:
            raise BfmFormatError(f"{path}: key {key!r} has shape {a.shape}, expected (n, {cols})")
    else:
        a = a.reshape(-1)
        if count is not None and a.shape[0] != count:
            raise BfmFormatError(f"{path}: key {key!r} has {a.shape[0]} indices, expected {count}")
    if a.size and (a.min() < 1 or a.max() > upper):
        raise BfmFormatError(f"{path}: key {key!r} has indices in [{a.min()}, {a.max()}], expected 1-based "
                             f"indices in [1, {upper}]")
    return a - 1


# ------------------------------------------------------------------ frame checks (shared)
def orient_outward(vertices: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, bool]:
    """Make triangles counter-clockwise seen from +z (outward for a face looking at +z).

    Uses the area-weighted mean triangle normal of the (open, front-facing) face mesh: when its z
    component is negative every triangle's winding is reversed. Returns (triangles, flipped).
    """
    v = vertices[triangles]
    n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    if n[:, 2].sum() < 0:
        return triangles[:, [0, 2, 1]].copy(), True
    return triangles, False


def check_face_frame(name: str, vertices: np.ndarray, landmarks68: np.ndarray, source: str) -> list[str]:
    """Warn when a mean face does not look like docs/conventions.md's model frame.

    Checks: the nose tip (landmark 30) is among the most frontal vertices (largest z), the
    viewer's-left eye corner (36) has a smaller x than the viewer's-right one (45), and the brows
    (19, 24) are above the mouth (51, 57) in y. Returns the problems found (also warned).
    """
    problems = []
    z = vertices[:, 2]
    lm = vertices[landmarks68]
    if lm[30, 2] < np.percentile(z, 95):
        problems.append("the nose tip (landmark 30) is not among the most frontal vertices (largest z)")
    if lm[36, 0] >= lm[45, 0]:
        problems.append("landmark 36 (viewer's-left eye corner) is not left (-x) of landmark 45")
    if min(lm[19, 1], lm[24, 1]) <= max(lm[51, 1], lm[57, 1]):
        problems.append("the brows are not above the mouth (y up)")
    for p in problems:
        warnings.warn(f"{name} model from {source}: {p}; the file may use another axis convention",
                      stacklevel=3)
    return problems


# ------------------------------------------------------------------ loading
def resolve_bfm_front_path(path: PathLike | None) -> Path:
    """A file path, or a folder holding ``BFM_model_front.mat``; raises FileNotFoundError with
    instructions when it is absent."""
    if path is None:
        raise FileNotFoundError(_missing_front_message(None))
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / BFM_FRONT_FILE
    if not p.is_file():
        raise FileNotFoundError(_missing_front_message(p))
    return p


def load_bfm_front(path: PathLike | None = None, layout: CoeffLayout | None = None,
                   recenter: bool = True) -> MorphableModel:
    """Load Deng's ``BFM_model_front.mat`` as a ``MorphableModel`` (name ``"bfm"``).

    Args:
        path: the .mat file or a folder containing it.
        layout: coefficient layout (default: Deng's 80/64/80 capped at the file's basis sizes).
        recenter: subtract the mean shape's vertex mean (Deng's code does; conventions require it).
    Returns:
        Model in millimetres (model frame of docs/conventions.md), albedo in [0, 1], 0-based
        triangles/landmarks, ``skin`` from the file's ``skinmask`` when present, plus a ``front_mask``
        buffer ((N,) bool, Deng's ``frontmask2_idx`` photometric region; all True when absent).
    Raises:
        FileNotFoundError: the file is missing (the message says how to build it).
        BfmFormatError: a key is missing or has a wrong shape/value (message names file and key).
    """
    p = resolve_bfm_front_path(path)
    mat = _loadmat(p)
    mean = _floats(mat, p, "meanshape", vector=True)
    if mean.shape[0] % 3:
        raise BfmFormatError(f"{p}: key 'meanshape' has {mean.shape[0]} values, not a multiple of 3")
    n = mean.shape[0] // 3
    id_base = _floats(mat, p, "idBase", rows=3 * n)
    ex_base = _floats(mat, p, "exBase", rows=3 * n)
    mean_tex = _floats(mat, p, "meantex", rows=3 * n, vector=True)
    tex_base = _floats(mat, p, "texBase", rows=3 * n)
    tri = _indices(mat, p, "tri", n, cols=3)
    keypoints = _indices(mat, p, "keypoints", n, count=68)

    mean_mm = mean.reshape(n, 3).astype(np.float64) * DM_TO_MM
    offset = mean_mm.mean(0) if recenter else np.zeros(3)
    mean_mm = mean_mm - offset

    def basis(b: np.ndarray, scale: float) -> np.ndarray:  # (3N, K) interleaved -> (K, N, 3)
        return np.ascontiguousarray(b.reshape(n, 3, -1).transpose(2, 0, 1)) * np.float32(scale)

    tri, flipped = orient_outward(mean_mm, tri)
    check_face_frame("bfm", mean_mm, keypoints, str(p))

    skin = None
    if "skinmask" in mat:
        skin = _skin_mask(mat, p, n)
    front = np.ones(n, dtype=bool)
    if "frontmask2_idx" in mat:
        front[:] = False
        front[_indices(mat, p, "frontmask2_idx", n)] = True

    meta = {"source_file": str(p), "recentred_by_mm": [round(float(x), 4) + 0.0 for x in offset]}
    if flipped:
        meta["winding_flipped"] = True
    model = MorphableModel(
        "bfm", mean_mm, basis(id_base, DM_TO_MM), basis(ex_base, DM_TO_MM), tri, keypoints,
        mean_albedo=mean_tex.reshape(n, 3) / 255.0, albedo_basis=basis(tex_base, 1.0 / 255.0),
        layout=layout, exp_prior="gaussian", source_units="dm", meta=meta,
    )
    if skin is not None:
        model.skin = _torch_bool(skin)
    model.register_buffer("front_mask", _torch_bool(front))
    return model


def _torch_bool(a: np.ndarray):
    import torch

    return torch.as_tensor(np.asarray(a, dtype=bool))


def _skin_mask(mat, path: Path, n: int) -> np.ndarray:
    """Deng's ``skinmask`` is a per-vertex 0/1 row ([1, N]); an index list (1-based) is accepted too."""
    a = _get(mat, path, "skinmask").reshape(-1)
    if a.shape[0] == n and np.isin(a, (0, 1)).all():
        return a.astype(bool)
    idx = _indices(mat, path, "skinmask", n)
    mask = np.zeros(n, dtype=bool)
    mask[idx] = True
    return mask


# ------------------------------------------------------------------ building from BFM09
def _require(bfm_dir: Path, name: str) -> Path:
    p = bfm_dir / name
    if not p.is_file():
        raise FileNotFoundError(f"{p} is missing; building {BFM_FRONT_FILE} needs {name}, which comes from "
                                f"{BFM09_SOURCES[name]}")
    return p


def read_exp_pca(path: PathLike, num_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """Read Guo et al.'s ``Exp_Pca.bin``.

    Layout: int32 ``exp_dim``; float32 ``expMU`` (3 * num_vertices); float32 ``expPC`` as
    ``exp_dim`` consecutive blocks of 3 * num_vertices values (x, y, z interleaved per vertex).
    Returns (expMU (3V,), expPC (3V, exp_dim)), both float32, micrometres.
    """
    path = Path(path)
    raw = path.read_bytes()
    if len(raw) < 4:
        raise BfmFormatError(f"{path}: file too short ({len(raw)} bytes) for the int32 exp_dim header")
    exp_dim = int(np.frombuffer(raw[:4], dtype="<i4")[0])
    expected = 4 + 4 * 3 * num_vertices * (1 + exp_dim)
    if exp_dim <= 0 or len(raw) != expected:
        raise BfmFormatError(f"{path}: header says exp_dim={exp_dim}; with {num_vertices} expression vertices "
                             f"(from BFM_exp_idx.mat) the file should have {expected} bytes, it has {len(raw)}")
    data = np.frombuffer(raw[4:], dtype="<f4")
    mu = data[: 3 * num_vertices].copy()
    pc = data[3 * num_vertices:].reshape(exp_dim, 3 * num_vertices).T.copy()
    if not (np.isfinite(mu).all() and np.isfinite(pc).all()):
        raise BfmFormatError(f"{path}: contains NaN or infinite values")
    return mu, pc


def _read_std_exp(path: Path, exp_dim: int) -> np.ndarray:
    try:
        ev = np.loadtxt(path, dtype=np.float64).reshape(-1)
    except ValueError as exc:
        raise BfmFormatError(f"{path}: not a list of numbers ({exc})") from exc
    if ev.shape[0] != exp_dim:
        raise BfmFormatError(f"{path}: has {ev.shape[0]} values, Exp_Pca.bin has exp_dim={exp_dim}")
    if not np.isfinite(ev).all():
        raise BfmFormatError(f"{path}: contains NaN or infinite values")
    return ev.astype(np.float32)


def build_bfm_front(bfm_dir: PathLike, out_path: PathLike, n_id: int = 80, n_exp: int = 64,
                    n_tex: int = 80) -> Path:
    """Build Deng's ``BFM_model_front.mat`` from the BFM09 files in ``bfm_dir`` (module docstring).

    Args:
        bfm_dir: folder with 01_MorphableModel.mat, Exp_Pca.bin, std_exp.txt, BFM_front_idx.mat,
            BFM_exp_idx.mat and facemodel_info.mat.
        out_path: the .mat file to write (a folder -> ``folder/BFM_model_front.mat``).
        n_id / n_exp / n_tex: components kept (Deng: 80 / 64 / 80; capped at what the files hold).
    Returns:
        The path written.
    """
    bfm_dir = Path(bfm_dir).expanduser()
    if not bfm_dir.is_dir():
        raise FileNotFoundError(f"BFM folder {bfm_dir} does not exist; it must hold "
                                f"{', '.join(BFM09_SOURCES)} (sources: see `b3f facemodel build-bfm --help`)")
    paths = {name: _require(bfm_dir, name) for name in BFM09_SOURCES}

    # index chain: front vertex -> expression vertex (idx) -> BFM vertex (trimIndex)
    p_trim = paths["BFM_exp_idx.mat"]
    m_trim = _loadmat(p_trim)
    p_bfm = paths["01_MorphableModel.mat"]
    bfm = _loadmat(p_bfm)
    shape_mu = _floats(bfm, p_bfm, "shapeMU", vector=True)
    if shape_mu.shape[0] % 3:
        raise BfmFormatError(f"{p_bfm}: key 'shapeMU' has {shape_mu.shape[0]} values, not a multiple of 3")
    n_bfm = shape_mu.shape[0] // 3
    trim = _indices(m_trim, p_trim, "trimIndex", n_bfm)
    n_expv = trim.shape[0]
    p_front = paths["BFM_front_idx.mat"]
    front = _indices(_loadmat(p_front), p_front, "idx", n_expv)
    front_bfm = trim[front]
    n = front.shape[0]

    shape_pc = _floats(bfm, p_bfm, "shapePC", rows=3 * n_bfm)
    shape_ev = _floats(bfm, p_bfm, "shapeEV", rows=shape_pc.shape[1], vector=True)
    tex_mu = _floats(bfm, p_bfm, "texMU", rows=3 * n_bfm, vector=True)
    tex_pc = _floats(bfm, p_bfm, "texPC", rows=3 * n_bfm)
    tex_ev = _floats(bfm, p_bfm, "texEV", rows=tex_pc.shape[1], vector=True)
    _exp_mu, exp_pc = read_exp_pca(paths["Exp_Pca.bin"], n_expv)  # expMU is not used (as in Deng's transfer)
    exp_ev = _read_std_exp(paths["std_exp.txt"], exp_pc.shape[1])

    def gather(a: np.ndarray, rows: np.ndarray) -> np.ndarray:  # (3V, K) rows of vertices `rows`
        return a.reshape(-1, 3, a.shape[-1])[rows].reshape(3 * len(rows), -1)

    k_id, k_exp, k_tex = min(n_id, shape_pc.shape[1]), min(n_exp, exp_pc.shape[1]), min(n_tex, tex_pc.shape[1])
    id_base = gather(shape_pc[:, :k_id], front_bfm) * (shape_ev[:k_id] * np.float32(UM_TO_DM))
    ex_base = gather(exp_pc[:, :k_exp], front) * (exp_ev[:k_exp] * np.float32(UM_TO_DM))
    tex_base = gather(tex_pc[:, :k_tex], front_bfm) * tex_ev[:k_tex]
    meanshape = gather(shape_mu[:, None], front_bfm).reshape(1, -1) * np.float32(UM_TO_DM)
    meantex = gather(tex_mu[:, None], front_bfm).reshape(1, -1)

    p_info = paths["facemodel_info.mat"]
    info = _loadmat(p_info)
    out: dict[str, np.ndarray] = {
        "meanshape": meanshape.astype(np.float32), "meantex": meantex.astype(np.float32),
        "idBase": id_base.astype(np.float32), "exBase": ex_base.astype(np.float32),
        "texBase": tex_base.astype(np.float32),
    }
    for key in ("tri", "point_buf", "tri_mask2", "keypoints", "frontmask2_idx", "skinmask"):
        out[key] = _get(info, p_info, key)
    # validate the topology against the front vertex count before writing
    _indices(info, p_info, "tri", n, cols=3)
    _indices(info, p_info, "keypoints", n, count=68)
    _indices(info, p_info, "frontmask2_idx", n)
    if _get(info, p_info, "point_buf").reshape(-1).shape[0] % n:
        raise BfmFormatError(f"{p_info}: key 'point_buf' does not have a row per front vertex ({n})")

    from scipy.io import savemat

    out_path = Path(out_path).expanduser()
    if out_path.is_dir():
        out_path = out_path / BFM_FRONT_FILE
    out_path.parent.mkdir(parents=True, exist_ok=True)
    savemat(str(out_path), out, do_compression=False)
    return out_path
