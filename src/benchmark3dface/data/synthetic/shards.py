"""Synthetic samples on disk: shards of images + one npz + one JSON per shard, and a manifest.

Layout of an output folder (one split)::

    manifest.json              format, generator config, split, seed, facemodel, shard list
    shard_00000/00000000.png   images (sets/multiview: 00000000_0.png, 00000000_1.png, ...)
    shard_00000.npz            every tensor field, keys "<local index>/<field>"
    shard_00000.json           per-sample scalars, camera and meta (JSON)

With PNG images (default) :class:`ShardDataset` returns samples identical, field by field and
bit by bit, to the ones the generator produced (images are 8-bit by construction). JPEG shards
are smaller; their images differ by the JPEG error, every other field is identical.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ...facemodel.model import MorphableModel
from ..readers.errors import DataError, MissingFileError
from ..sample import Sample
from .config import SynthConfig
from .dataset import SyntheticFaceDataset
from .degrade import u8_to_float

FORMAT_NAME = "b3f-synth-shards"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
IMAGE_FORMATS = ("png", "jpg")
_SCALAR_FIELDS = ("kind", "sample_id", "labelled")


# ---------------------------------------------------------------------------- (de)serialise
def _jsonable(x: Any) -> Any:
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    raise TypeError(f"cannot store a {type(x).__name__} in a shard's JSON")


def sample_to_record(sample: Sample) -> tuple[list[np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    """Split a sample into ``images`` (uint8 HxWx3 arrays), tensor ``arrays`` and JSON ``info``."""
    images: list[np.ndarray] = []
    arrays: dict[str, np.ndarray] = {}
    info: dict[str, Any] = {}
    for f in fields(Sample):
        v = getattr(sample, f.name)
        if v is None:
            continue
        if f.name == "image":
            u8 = (v * 255.0).round().to(torch.uint8)
            if not torch.equal(u8_to_float(u8), v):
                raise ValueError(f"{sample.sample_id}: image is not 8-bit exact; cannot store it losslessly")
            stack = u8 if u8.dim() == 4 else u8[None]
            images = [np.ascontiguousarray(x.permute(1, 2, 0).numpy()) for x in stack]
            info["image_views"] = None if u8.dim() == 3 else len(images)
        elif f.name == "meta":
            meta = {}
            for k, mv in v.items():
                if isinstance(mv, Tensor):
                    arrays[f"meta.{k}"] = mv.numpy()
                else:
                    meta[k] = mv
            info["meta"] = _jsonable(meta)
        elif f.name == "camera":
            info["camera"] = _jsonable(v)
        elif isinstance(v, Tensor):
            arrays[f.name] = v.numpy()
        else:
            info[f.name] = _jsonable(v)
    return images, arrays, info


def record_to_sample(images: list[np.ndarray], arrays: dict[str, np.ndarray], info: dict[str, Any]) -> Sample:
    """Inverse of :func:`sample_to_record`."""
    s = Sample()
    for name in ("kind", "sample_id", "labelled", "identity", "occluded"):
        if name in info:
            setattr(s, name, info[name])
    s.camera = dict(info.get("camera", {}))
    s.meta = dict(info.get("meta", {}))
    names = {f.name for f in fields(Sample)}
    for key, arr in arrays.items():
        t = torch.from_numpy(np.array(arr))
        if key.startswith("meta."):
            s.meta[key[5:]] = t
        elif key in names:
            setattr(s, key, t)
        else:
            raise KeyError(f"unknown field {key!r} in shard")
    if images:
        u8 = torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1).contiguous() for im in images])
        s.image = u8_to_float(u8 if info.get("image_views") is not None else u8[0])
    return s


# ---------------------------------------------------------------------------- writing
def _list_collate(batch: list[Sample]) -> list[Sample]:
    return batch


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def _save_image(arr: np.ndarray, path: Path, fmt: str) -> None:
    im = Image.fromarray(arr)
    if fmt == "png":
        im.save(path, format="PNG", compress_level=1)
    else:
        im.save(path, format="JPEG", quality=95)


def write_shards(out: str | Path, config: SynthConfig | dict[str, Any] | None = None, *,
                 split: str = "train", num_samples: int = 1000, seed: int = 0,
                 facemodel: MorphableModel | str = "procedural", facemodel_path: str | None = None,
                 shard_size: int = 256, workers: int = 0, image_format: str = "png",
                 progress: bool = True, overwrite: bool = False, store_vertices: bool = False) -> Path:
    """Generate ``num_samples`` samples of ``split`` and write them to ``out`` (see module doc).

    Returns the manifest path. ``workers`` > 0 renders in DataLoader worker processes (one
    torch thread each); the files are the same whatever the worker count. The GT meshes
    (``vertices``, ``vertices_cam``; 0.7 MB per face for a 30K-vertex model) are not stored
    unless ``store_vertices`` (forced with ``detail_amplitude`` > 0, whose detail no
    coefficient holds): :class:`ShardDataset` recomputes them, bit-identically, from the
    stored GT coefficients and the face model.
    """
    out = Path(out)
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    if (out / MANIFEST).exists() and not overwrite:
        raise FileExistsError(f"{out / MANIFEST} exists; choose another --out or pass overwrite")
    ds = SyntheticFaceDataset(config, split, num_samples, seed, facemodel, facemodel_path)
    # fine detail is beyond the coefficients: its GT meshes cannot be recomputed from them
    store_vertices = store_vertices or ds.config.detail_amplitude > 0
    out.mkdir(parents=True, exist_ok=True)
    loader = DataLoader(ds, batch_size=min(8, shard_size), num_workers=int(workers),
                        collate_fn=_list_collate, worker_init_fn=_worker_init if workers else None)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=num_samples, desc=f"synth {ds.config.mode} {split}", unit="sample")
    shards: list[dict[str, Any]] = []
    arrays: dict[str, np.ndarray] = {}
    infos: list[dict[str, Any]] = []
    index = 0

    def flush() -> None:
        if not infos:
            return
        k = len(shards)
        name = f"shard_{k:05d}"
        np.savez_compressed(out / f"{name}.npz", **arrays)
        (out / f"{name}.json").write_text(json.dumps(infos))
        shards.append({"name": name, "start": k * shard_size, "count": len(infos)})
        arrays.clear()
        infos.clear()

    for batch in loader:
        for sample in batch:
            local = index % shard_size
            shard_dir = out / f"shard_{index // shard_size:05d}"
            shard_dir.mkdir(exist_ok=True)
            images, arr, info = sample_to_record(sample)
            if not store_vertices:
                arr.pop("vertices", None)
                arr.pop("vertices_cam", None)
            files = []
            for v, im in enumerate(images):
                fname = f"{index:08d}.{image_format}" if info.get("image_views") is None \
                    else f"{index:08d}_{v}.{image_format}"
                _save_image(im, shard_dir / fname, image_format)
                files.append(f"{shard_dir.name}/{fname}")
            info["images"] = files
            arrays.update({f"{local:05d}/{k}": a for k, a in arr.items()})
            infos.append(info)
            index += 1
            if index % shard_size == 0:
                flush()
        if bar is not None:
            bar.update(len(batch))
    flush()
    if bar is not None:
        bar.close()
    model = ds.model
    manifest = {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "config": ds.config.to_dict(),
        "split": split, "seed": int(seed), "num_samples": int(num_samples),
        "shard_size": int(shard_size), "image_format": image_format,
        "vertices": "stored" if store_vertices else "recomputed",
        "facemodel": {"source": ds.facemodel_source, "path": facemodel_path, "name": model.name,
                      "vertices": model.num_vertices, "triangles": model.num_triangles,
                      "layout": model.layout.as_dict()},
        "shards": shards,
    }
    from ... import __version__

    manifest["benchmark3dface"] = __version__
    path = out / MANIFEST
    path.write_text(json.dumps(manifest, indent=2))
    return path


# ---------------------------------------------------------------------------- reading
def read_manifest(root: str | Path) -> dict[str, Any]:
    """The manifest of a shard folder, checked."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise MissingFileError(path, "synthetic shard manifest not found",
                               hint="write shards with `b3f synth --mode ... -n N --out DIR`")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(path, f"unreadable manifest: {e}", "unreadable_annotation") from e
    if manifest.get("format") != FORMAT_NAME:
        raise DataError(path, f"not a synthetic shard manifest (format {manifest.get('format')!r})", "bad_value")
    if int(manifest.get("version", 0)) > FORMAT_VERSION:
        raise DataError(path, f"shard format version {manifest['version']} is newer than this "
                        f"reader ({FORMAT_VERSION})", "bad_value")
    for key in ("config", "split", "num_samples", "shards"):
        if key not in manifest:
            raise DataError(path, f"manifest lacks the {key!r} key", "missing_key")
    return manifest


class ShardDataset(Dataset):
    """Samples written by :func:`write_shards` (``b3f synth``), read back identically.

    Args:
        root: the folder holding ``manifest.json``.
        facemodel / facemodel_path: the face model the shards were rendered from, needed to
            recompute the GT meshes when they were not stored; default: the manifest's source
            (``procedural``, or ``bfm``/``ict`` with their recorded path). Shards of a custom
            model instance need that instance here.
    """

    def __init__(self, root: str | Path, facemodel: MorphableModel | str | None = None,
                 facemodel_path: str | None = None) -> None:
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        self.config = SynthConfig.from_dict(self.manifest["config"])
        self.split = self.manifest["split"]
        self.seed = int(self.manifest.get("seed", 0))
        self._starts = [int(s["start"]) for s in self.manifest["shards"]]
        self._size = sum(int(s["count"]) for s in self.manifest["shards"])
        self._npz: dict[int, Any] = {}
        self._info: dict[int, list[dict[str, Any]]] = {}
        self._recompute = (self.manifest.get("vertices", "stored") == "recomputed"
                           and self.config.return_vertices)
        self._facemodel = facemodel
        self._facemodel_path = facemodel_path
        self._engine = None

    def _gt_engine(self):
        """The engine used to recompute GT meshes (face model loaded on first use)."""
        if self._engine is None:
            from .dataset import resolve_facemodel
            from .engine import SyntheticEngine

            info = self.manifest.get("facemodel", {})
            model = self._facemodel
            if model is None:
                source = info.get("source")
                from ...facemodel import SOURCES

                if source not in SOURCES:
                    raise ValueError(f"{self.root}: shards were rendered from a custom face model "
                                     f"({info.get('name')!r}); pass it as ShardDataset(..., facemodel=model)")
                model = source
            model = resolve_facemodel(model, self._facemodel_path or info.get("path"))
            want = (info.get("vertices"), info.get("layout"))
            if want[0] is not None and (model.num_vertices, model.layout.as_dict()) != want:
                raise ValueError(f"{self.root}: shards were rendered from a face model with "
                                 f"{want[0]} vertices and layout {want[1]}, got {model.name!r} with "
                                 f"{model.num_vertices} vertices and {model.layout.as_dict()}")
            self._engine = SyntheticEngine(model, self.config)
        return self._engine

    @property
    def kind(self) -> str:
        return self.config.mode

    def __len__(self) -> int:
        return self._size

    def __getstate__(self) -> dict[str, Any]:  # open npz handles stay in their process
        state = dict(self.__dict__)
        state["_npz"], state["_info"] = {}, {}
        return state

    def _shard(self, k: int) -> tuple[Any, list[dict[str, Any]]]:
        if k not in self._npz:
            name = self.manifest["shards"][k]["name"]
            npz_path, json_path = self.root / f"{name}.npz", self.root / f"{name}.json"
            for p in (npz_path, json_path):
                if not p.is_file():
                    raise MissingFileError(p, "synthetic shard file not found",
                                           hint=f"the folder {self.root} is incomplete; rewrite it with `b3f synth`")
            self._npz[k] = np.load(npz_path)
            self._info[k] = json.loads(json_path.read_text())
        return self._npz[k], self._info[k]

    def __getitem__(self, index: int) -> Sample:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"shard index {index} out of range for {n} samples in {self.root}")
        index %= n
        k = bisect.bisect_right(self._starts, index) - 1
        local = index - self._starts[k]
        npz, infos = self._shard(k)
        info = dict(infos[local])
        prefix = f"{local:05d}/"
        arrays = {key[len(prefix):]: npz[key] for key in npz.files if key.startswith(prefix)}
        images = []
        for rel in info.pop("images", []):
            path = self.root / rel
            if not path.is_file():
                raise MissingFileError(path, "synthetic shard image not found",
                                       hint=f"the folder {self.root} is incomplete; rewrite it with `b3f synth`")
            with Image.open(path) as im:
                images.append(np.asarray(im.convert("RGB")))
        sample = record_to_sample(images, arrays, info)
        if self._recompute and sample.coeffs is not None and sample.vertices is None:
            c = sample.coeffs
            verts, world = self._gt_engine().gt_meshes(c if c.dim() == 2 else c[None])
            single = c.dim() == 1
            sample.vertices = verts[0] if single else verts
            sample.vertices_cam = world[0] if single else world
        return sample
