"""Build the procedural face model's arrays and cache them as an .npz file.

The build is deterministic: float64 numpy math, a fixed ``np.random.Generator(PCG64(SEED))``
(only for jittering the random-field centres), PCA signs fixed by rule, and every float array
rounded to a fixed step before the cast to float32 (``QUANTUM``), so the bytes do not depend on
the thread count and, barring float64 rounding noise landing on a rounding boundary, not on the
CPU either. The cache file name carries the generator version and a hash of the generator's
source code, so editing the generator never reuses a stale cache; the file also stores the
sha256 of its arrays, and a file that fails to load or to match that hash is rebuilt. Files are
written to a temporary name and renamed atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .albedo import ALBEDO_MODES, albedo_modes, mean_albedo
from .anatomy import PARAMS, mean_params, smooth_normals, surface
from .expression import ExpressionContext, expression_modes
from .identity import IDENTITY_MODES, identity_modes
from .linalg import quantize
from .topology import SPACING, build_topology

VERSION = 1
SEED = 20240611

#: Rounding steps before the float32 cast: shapes in mm, albedo in [0, 1] units.
QUANTUM = {"mean_shape": 1e-4, "id_basis": 1e-3, "exp_basis": 1e-3, "mean_albedo": 1e-5,
           "albedo_basis": 1e-5}

ARRAY_KEYS = ("mean_shape", "id_basis", "exp_basis", "mean_albedo", "albedo_basis", "triangles",
              "landmarks68", "regions", "symmetry", "uv", "lip_side")


#: The modules whose source defines the generated arrays (hashed into the cache file name).
GENERATOR_MODULES = ("albedo.py", "anatomy.py", "build.py", "expression.py", "identity.py", "linalg.py",
                     "topology.py")


def source_hash() -> str:
    """sha256 over the generator version, seed and the source of the generator modules."""
    h = hashlib.sha256(f"procedural-face v{VERSION} seed {SEED}".encode())
    here = Path(__file__).resolve().parent
    for name in GENERATOR_MODULES:
        path = here / name
        h.update(path.name.encode())
        h.update(path.read_bytes().replace(b"\r\n", b"\n"))
    return h.hexdigest()


def content_hash(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the arrays (name, dtype, shape, bytes) in ``ARRAY_KEYS`` order."""
    h = hashlib.sha256()
    for k in ARRAY_KEYS:
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}|{a.dtype.str}|{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def build_arrays() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Generate the model. Returns (arrays, meta); shapes in mm, albedo in [0, 1]."""
    t0 = time.perf_counter()
    topo = build_topology()
    p0 = mean_params()
    x0 = surface(p0, topo.uv)
    normals = smooth_normals(p0, topo.uv)  # base-surface normals: smooth, same on both lip copies
    rng = np.random.Generator(np.random.PCG64(SEED))
    id_modes, id_std, _ = identity_modes(topo.uv, normals, rng, IDENTITY_MODES)
    exp, exp_names = expression_modes(ExpressionContext(p0, topo.uv, topo.side, x0, normals))
    alb_mean = mean_albedo(topo.uv, topo.regions)
    alb_modes, alb_std = albedo_modes(topo.uv, topo.regions, rng, ALBEDO_MODES)
    arrays = {
        "mean_shape": x0 - x0.mean(axis=0),
        "id_basis": id_modes,
        "exp_basis": exp,
        "mean_albedo": alb_mean,
        "albedo_basis": alb_modes,
    }
    arrays = {k: quantize(a, QUANTUM[k]) for k, a in arrays.items()}
    arrays.update(triangles=topo.triangles.astype(np.int64), landmarks68=topo.landmarks68.astype(np.int64),
                  regions=topo.regions.astype(np.int64), symmetry=topo.symmetry.astype(np.int64),
                  uv=quantize(topo.uv, 1e-6), lip_side=topo.side.astype(np.int64))
    meta = {
        "generator": "benchmark3dface procedural face", "version": VERSION, "seed": SEED,
        "source_hash": source_hash(), "content_sha256": content_hash(arrays),
        "grid_spacing_mm": SPACING, "exp_names": exp_names,
        "id_std": [round(float(s), 4) for s in id_std],
        "albedo_std": [round(float(s), 6) for s in alb_std],
        "anatomy": {p.name: [p.mean, p.std] for p in PARAMS},
        "build_seconds": round(time.perf_counter() - t0, 2),
    }
    return arrays, meta


def default_cache_dir() -> Path:
    """``$B3F_CACHE_DIR`` or ``~/.cache/benchmark3dface``."""
    env = os.environ.get("B3F_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "benchmark3dface"


def cache_file(cache_dir: str | os.PathLike | None = None) -> Path:
    d = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return d / f"procedural_face_v{VERSION}_{source_hash()[:12]}.npz"


def read_cache(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load and verify a cache file; raises ValueError if it is unreadable or corrupt."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ARRAY_KEYS}
            meta = json.loads(str(z["meta_json"]))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError, json.JSONDecodeError) as e:
        raise ValueError(f"procedural face cache {path} is unreadable ({type(e).__name__}: {e})") from e
    if meta.get("content_sha256") != content_hash(arrays):
        raise ValueError(f"procedural face cache {path} does not match its stored content hash")
    return arrays, meta


def write_cache(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write atomically: a temporary file in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, meta_json=np.array(json.dumps(meta)), **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_or_build(cache_dir: str | os.PathLike | None = None, rebuild: bool = False
                  ) -> tuple[dict[str, np.ndarray], dict[str, Any], Path]:
    """The model arrays from the cache, building (and caching) them when needed."""
    path = cache_file(cache_dir)
    if path.exists() and not rebuild:
        try:
            arrays, meta = read_cache(path)
            return arrays, meta, path
        except ValueError:
            pass  # corrupt or partial: rebuild below
    arrays, meta = build_arrays()
    try:
        write_cache(path, arrays, meta)
        prune_stale(path)
    except OSError as e:  # a read-only cache folder still gives a usable model
        warnings.warn(f"could not cache the procedural face model at {path}: {e}", stacklevel=2)
    return arrays, meta, path


def prune_stale(current: Path, tmp_age_s: float = 3600.0) -> list[Path]:
    """Delete cache files of other generator versions beside ``current`` (each is ~80 MB) and
    temporary files older than ``tmp_age_s``; returns what was removed. A process still using
    a removed file keeps its open handle; one that has not opened it yet simply rebuilds."""
    removed = []
    now = time.time()
    for f in current.parent.glob("procedural_face_v*.npz*"):
        stale = f.suffix == ".npz" and f.name != current.name
        old_tmp = f.name.endswith(".tmp") and now - f.stat().st_mtime > tmp_age_s
        if stale or old_tmp:
            try:
                f.unlink()
                removed.append(f)
            except OSError:
                pass
    return removed
