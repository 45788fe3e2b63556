"""``b3f reconstruct``: 3D faces from photos with any installed method.

For each photo: the 5 alignment points come from a landmark file (``NAME.txt`` beside the photo,
5 or 68 lines ``x y`` in photo pixels, or the file / folder given with ``--landmarks``) or from
the detector: BlazeFace + face-api's 68 points when their converted weights are cached
(``b3f weights fetch blazeface faceapi_landmark68``; the 5 points derived from the 68), else
MTCNN's 5 points; the photo is aligned and cropped with Deng's 5-point rule (``data.preprocess``) at
``--size`` pixels; the method reconstructs the crop; the outputs are written to ``--out``:

- ``NAME.obj`` / ``NAME.ply``: the mesh in the model frame (pose removed), millimetres, with the
  albedo as vertex colours (when the method predicts one);
- ``NAME_lm.png``: the photo with the projected 68 landmarks of the reconstruction (green), the
  detected (or given) 68 input landmarks (blue) and the 5 alignment points (red);
- ``NAME.json``: landmarks in photo and crop pixels, pose, camera, the crop transform,
  coefficients (when the method reports them in ``extras["coeffs"]``) and timings.

A photo that cannot be read or has no face is reported and counted; the others go on. The run
ends with ``N reconstructed, K failed: reasons`` and exits 1 when any photo failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LANDMARK_MODES = ("auto", "detect")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "reconstruct", help="reconstruct 3D faces from photos (OBJ/PLY/PNG/JSON per photo)",
        description="Detect (or read) 5 landmarks, align and crop like Deng'19, reconstruct with an installed "
                    "method, and write NAME.obj, NAME.ply, NAME_lm.png and NAME.json per photo.")
    p.add_argument("photos", nargs="+", type=Path, metavar="PHOTO", help="input photos")
    p.add_argument("--method", required=True, help="installed method name (see `b3f methods`)")
    p.add_argument("--ckpt", type=Path, default=None,
                   help="Lightning checkpoint of a trained method (needed by trainable methods)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow a checkpoint that needs full unpickling (weights_only=False): only for files "
                        "you trust")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--size", type=int, default=None, help="crop size in pixels (default: the method's, 224)")
    p.add_argument("--landmarks", default="auto",
                   help="auto: NAME.txt beside each photo if present, else the detector (BlazeFace + 68 points when "
                        "their weights are cached, else MTCNN); detect: always the detector; "
                        "a FILE (one photo) or a DIR holding NAME.txt files with 5 or 68 lines 'x y' (photo pixels)")
    p.add_argument("--facemodel", default=None, help="face model source for the method (procedural | bfm | ict)")
    p.add_argument("--facemodel-path", default=None, help="face model file/folder for bfm / ict")
    p.add_argument("-m", "--method-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="extra constructor argument of the method (value parsed as JSON when possible), "
                        "e.g. -m photo_iters=20; repeatable")
    p.add_argument("--batch-size", type=int, default=8, help="photos reconstructed together")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1 ...)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for PyTorch (intra- and inter-op; default: PyTorch's, one per core)")
    return p


# ---------------------------------------------------------------------------------- helpers
def parse_method_args(items: list[str]) -> dict[str, Any]:
    """``["k=v", ...]`` -> kwargs; values parsed as JSON (numbers, booleans, null, lists, dicts),
    else kept as strings."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--method-arg {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def load_method(name: str, ckpt: Path | None = None, kwargs: dict[str, Any] | None = None,
                device: str = "cpu", trust_checkpoint: bool = False):
    """An installed method, ready for inference (eval mode, on ``device``).

    Trainable methods need ``ckpt`` (a Lightning checkpoint); the checkpoint is loaded with
    ``weights_only=True`` unless ``trust_checkpoint``.
    """
    import torch

    from ..methods import get_method

    cls = get_method(name)
    kwargs = dict(kwargs or {})
    if ckpt is not None:
        if not Path(ckpt).is_file():
            raise FileNotFoundError(f"checkpoint {ckpt} not found (a Lightning .ckpt written when training "
                                    f"the method, e.g. by `b3f fit --config ...`)")
        try:
            model = cls.load_from_checkpoint(str(ckpt), map_location=device, weights_only=not trust_checkpoint,
                                             **kwargs)
        except Exception as exc:  # noqa: BLE001 - unpickling refused by weights_only, or a corrupt file
            if not trust_checkpoint and "weights_only" in str(exc):
                raise ValueError(f"checkpoint {ckpt} holds objects that weights_only loading refuses; if you "
                                 f"trust the file, add --trust-checkpoint ({type(exc).__name__})") from None
            raise ValueError(f"cannot load checkpoint {ckpt} for method {name!r}: {type(exc).__name__}: {exc}") from None
    elif cls.spec.trainable:
        raise ValueError(f"method {name!r} must be trained first: pass its checkpoint with --ckpt PATH (a Lightning "
                         f".ckpt from `b3f fit`); methods usable without one are those with trainable=False "
                         f"in `b3f methods` (e.g. meanface, fitting)")
    else:
        model = cls(**kwargs)
    model.eval()
    return model.to(torch.device(device))


@dataclass
class PhotoJob:
    """One photo on its way through the pipeline."""

    path: Path
    name: str
    sample: Any = None
    photo: Any = None  # uint8 HxWx3
    landmarks_source: str = ""
    preprocess_seconds: float = 0.0
    error: str | None = None
    reason: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)


def landmark_file_for(photo: Path, mode: str, n_photos: int) -> Path | None:
    """The landmark file to use for ``photo`` (None = detect). Raises for a missing explicit one."""
    if mode == "detect":
        return None
    if mode == "auto":
        txt = photo.with_suffix(".txt")
        return txt if txt.is_file() else None
    p = Path(mode)
    if p.is_dir():
        return p / f"{photo.stem}.txt"
    if p.is_file():
        if n_photos != 1:
            raise ValueError(f"--landmarks {p} names one file but {n_photos} photos were given; pass a folder "
                             f"of NAME.txt files, 'auto' or 'detect'")
        return p
    raise FileNotFoundError(f"--landmarks {mode}: neither 'auto', 'detect', a landmark file nor a folder")


def unique_names(paths: list[Path]) -> list[str]:
    """Output stems, made unique by a ``_k`` suffix where photos share a stem."""
    seen: dict[str, int] = {}
    out = []
    for p in paths:
        stem = p.stem
        k = seen.get(stem, 0)
        seen[stem] = k + 1
        out.append(stem if k == 0 else f"{stem}_{k}")
    return out


def _tolist(x) -> Any:
    return x.detach().cpu().tolist() if hasattr(x, "detach") else x


def _rounded(x: Any, digits: int = 5) -> Any:
    """Floats rounded to ``digits`` decimals, recursively (smaller JSON files)."""
    if isinstance(x, float):
        return round(x, digits)
    if isinstance(x, dict):
        return {k: _rounded(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_rounded(v, digits) for v in x]
    return x


def _jsonable_extras(extras: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in extras.items():
        if k == "coeffs":
            continue
        if isinstance(v, (int, float, str, bool)) or v is None:
            out[k] = v
        elif hasattr(v, "numel") and v.numel() <= 64:
            out[k] = _tolist(v)
    return out


def draw_landmarks(photo, lm68, lm5=None, path: Path | None = None, lm68_input=None):
    """The photo (uint8 HxWx3) with the 68 landmarks (green dots), optional 68 input landmarks
    (blue dots: detected or given) and optional 5 input points (red crosses) drawn, as a Pillow
    image (saved to ``path`` when given)."""
    import numpy as np
    from PIL import Image, ImageDraw

    im = Image.fromarray(np.ascontiguousarray(photo))
    draw = ImageDraw.Draw(im)
    r = max(1.5, max(im.size) / 300)
    if lm68_input is not None:
        for x, y in np.asarray(lm68_input, dtype=float).reshape(-1, 2):
            draw.ellipse([x - r, y - r, x + r, y + r], fill=(40, 120, 255), outline=(0, 0, 120))
    for x, y in np.asarray(lm68, dtype=float).reshape(-1, 2):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(0, 255, 0), outline=(0, 90, 0))
    if lm5 is not None:
        for x, y in np.asarray(lm5, dtype=float).reshape(-1, 2):
            draw.line([x - 2 * r, y - 2 * r, x + 2 * r, y + 2 * r], fill=(255, 0, 0), width=max(1, int(r / 2)))
            draw.line([x - 2 * r, y + 2 * r, x + 2 * r, y - 2 * r], fill=(255, 0, 0), width=max(1, int(r / 2)))
    if path is not None:
        im.save(path)
    return im


# ---------------------------------------------------------------------------------- pipeline
def preprocess(job: PhotoJob, target5, size: int, landmarks_mode: str, n_photos: int, get_detector) -> None:
    """Load, find landmarks, align and crop ``job.path`` (fills ``job.sample``; errors propagate)."""
    import torch

    from ..data.preprocess.pipeline import check_photo_size, preprocess_photo
    from ..data.readers.annotations import read_points_txt
    from ..data.readers.imageio import load_image

    t0 = time.perf_counter()
    photo = load_image(job.path, exif_transpose=True)
    check_photo_size(photo.shape[0], photo.shape[1], job.path)  # before a detector is built for a 1x1 image
    lm_file = landmark_file_for(job.path, landmarks_mode, n_photos)
    lm5 = lm68 = None
    if lm_file is not None:
        pts = torch.as_tensor(read_points_txt(lm_file, n_points=(5, 68)), dtype=torch.float32)
        lm5, lm68 = (pts, None) if pts.shape[0] == 5 else (None, pts)
        job.landmarks_source = f"file:{lm_file}"
    detector = get_detector() if lm_file is None else None
    if detector is not None:
        job.landmarks_source = getattr(detector, "name", "mtcnn")
    job.sample = preprocess_photo(photo, target5, size, lm5=lm5, lm68=lm68, detector=detector, compute_skin=True,
                                  sample_id=job.name, path=job.path)
    job.photo = photo
    job.preprocess_seconds = time.perf_counter() - t0


def write_outputs(job: PhotoJob, rec, out_dir: Path, method, method_name: str, ckpt: Path | None,
                  reconstruct_seconds: float) -> None:
    """Write the mesh, landmark image and JSON of one reconstruction (raises on an unusable one)."""
    import torch

    from ..geometry.meshio import write_obj, write_ply
    from ..geometry.rotation import matrix_to_euler

    face = rec.face
    problem = face.validate()
    if problem:
        raise RuntimeError(f"the method returned no usable face ({problem})")
    tr = job.sample.meta["crop_transform"]
    colors = face.albedo
    obj = write_obj(out_dir / f"{job.name}.obj", face.vertices, face.triangles, colors)
    ply = write_ply(out_dir / f"{job.name}.ply", face.vertices, face.triangles, colors)
    lm_crop = face.landmarks2d
    lm_photo = tr.apply_inverse(lm_crop.double()) if lm_crop is not None else None
    lm5_photo = tr.apply_inverse(job.sample.lm5.double())
    lm68_in = tr.apply_inverse(job.sample.lm68.double()) if job.sample.lm68 is not None else None
    png = out_dir / f"{job.name}_lm.png"
    draw_landmarks(job.photo, lm_photo if lm_photo is not None else torch.zeros(0, 2), lm5_photo, png, lm68_in)
    info: dict[str, Any] = {
        "photo": str(job.path), "method": method_name, "checkpoint": None if ckpt is None else str(ckpt),
        "facemodel": getattr(method.facemodel, "name", None), "crop_size": int(job.sample.image.shape[-1]),
        "landmarks_source": job.landmarks_source,
        "detection": {k: _tolist(v) for k, v in job.sample.meta.get("detection", {}).items()},
        "crop_transform": {"scale": tr.scale, "offset": list(tr.offset),
                           "meaning": "crop_px = scale * photo_px + offset"},
        "lm5_input_photo_px": _tolist(lm5_photo),
        "lm68_input_photo_px": _tolist(lm68_in),
        "landmarks2d_photo_px": _tolist(lm_photo), "landmarks2d_crop_px": _tolist(lm_crop),
        "mesh": {"vertices": int(face.vertices.shape[0]), "triangles": int(face.triangles.shape[0]),
                 "units": "mm", "frame": "model (pose removed)", "vertex_colors": "albedo" if colors is not None else None},
        "pose": None, "camera": face.camera,
        "timing": {"preprocess_seconds": job.preprocess_seconds, "reconstruct_seconds": reconstruct_seconds},
        "extras": _jsonable_extras(rec.extras),
        "files": {"obj": obj.name, "ply": ply.name, "landmarks_png": png.name, "json": f"{job.name}.json"},
    }
    if face.rotation is not None:
        info["pose"] = {"rotation": _tolist(face.rotation),
                        "angles_rad_pitch_yaw_roll": _tolist(matrix_to_euler(face.rotation.double())),
                        "translation_mm": _tolist(face.translation)}
    if "fit_seconds" in rec.extras:
        info["timing"]["fit_seconds"] = rec.extras["fit_seconds"]
    coeffs = rec.extras.get("coeffs")
    if coeffs is not None:
        layout = method.facemodel.layout
        c = torch.as_tensor(coeffs).detach().cpu().float()
        info["coefficients"] = ({g: v.tolist() for g, v in layout.split(c).items()}
                                if c.shape[-1] == layout.size else c.tolist())
    path = out_dir / f"{job.name}.json"
    path.write_text(json.dumps(_rounded(info), indent=1))
    job.outputs = {"obj": str(obj), "ply": str(ply), "png": str(png), "json": str(path)}


def _fail(job: PhotoJob, exc: BaseException) -> None:
    from ..data.readers.errors import DataError

    if isinstance(exc, DataError):
        job.reason, job.error = exc.reason, str(exc)
    elif isinstance(exc, FileNotFoundError):
        job.reason, job.error = "missing_file", f"{job.path}: {exc}"
    else:
        job.reason, job.error = type(exc).__name__, f"{job.path}: {exc}"
    print(f"b3f reconstruct: {job.error}", file=sys.stderr)


def run_multiface(args, method) -> int:
    """A multi-face method on whole photos (no crop: the method finds the faces): per photo
    ``NAME_face<k>.obj`` / ``.ply`` for each face, ``NAME_lm.png`` with every face's landmarks and
    ``NAME.json`` (centre, score, pose, camera per face); a photo without a face is reported
    and counted, not an error for the others."""
    import numpy as np
    import torch

    from ..data.preprocess.pipeline import check_photo_size
    from ..data.readers.imageio import load_image
    from ..data.sample import Sample
    from ..geometry.meshio import write_obj, write_ply

    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [PhotoJob(p, n) for p, n in zip(args.photos, unique_names(list(args.photos)))]
    no_face = 0
    for job in jobs:
        try:
            photo = load_image(job.path, exif_transpose=True)
            check_photo_size(photo.shape[0], photo.shape[1], job.path)
            image = torch.from_numpy(np.ascontiguousarray(photo)).permute(2, 0, 1).float()[None] / 255.0
            sample = Sample(kind="multiface", sample_id=[job.name], image=image.to(args.device))
            t0 = time.perf_counter()
            with torch.no_grad():
                rec = method.reconstruct(sample)[0]
            seconds = time.perf_counter() - t0
            faces, info_faces = [f for f in rec.faces if f.validate() is None], []
            for k, face in enumerate(faces):
                obj = write_obj(args.out / f"{job.name}_face{k}.obj", face.vertices, face.triangles, face.albedo)
                write_ply(args.out / f"{job.name}_face{k}.ply", face.vertices, face.triangles, face.albedo)
                info_faces.append({"obj": obj.name, "center_px": _tolist(face.center), "score": face.score,
                                   "translation_mm": _tolist(face.translation), "camera": face.camera,
                                   "landmarks2d_photo_px": _tolist(face.landmarks2d)})
            lms = [f.landmarks2d for f in faces if f.landmarks2d is not None]
            draw_landmarks(photo, torch.cat(lms) if lms else torch.zeros(0, 2), None, args.out / f"{job.name}_lm.png")
            info = {"photo": str(job.path), "method": args.method, "checkpoint": None if args.ckpt is None
                    else str(args.ckpt), "faces": info_faces, "reconstruct_seconds": seconds,
                    "extras": _jsonable_extras(rec.extras)}
            (args.out / f"{job.name}.json").write_text(json.dumps(_rounded(info), indent=1))
            no_face += not faces
            print(f"{job.path} -> {len(faces)} face(s): {args.out / job.name}_face*.{{obj,ply}}, {job.name}.json "
                  f"({seconds:.2f} s)")
        except Exception as exc:  # noqa: BLE001 - one bad photo must not stop the others
            _fail(job, exc)
    failed = [j for j in jobs if j.error is not None]
    summary = f"{len(jobs) - len(failed)} reconstructed ({no_face} without a face), {len(failed)} failed"
    if failed:
        summary += "\n" + "\n".join(f"  {j.error}" for j in failed)
    print(summary)
    return 1 if failed else 0


def run(args) -> int:
    import torch

    from ..data.collate import collate_samples
    from ..data.preprocess import deng_target_points, make_detector

    from ..threads import set_threads

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    set_threads(getattr(args, "threads", None))
    if args.landmarks not in LANDMARK_MODES and not Path(args.landmarks).exists():
        raise FileNotFoundError(f"--landmarks {args.landmarks}: no such file or folder (or use 'auto' / 'detect')")
    if Path(args.landmarks).is_file() and args.landmarks not in LANDMARK_MODES and len(args.photos) != 1:
        raise ValueError(f"--landmarks {args.landmarks} names one file but {len(args.photos)} photos were given; "
                         f"pass a folder of NAME.txt files, 'auto' or 'detect'")
    kwargs = parse_method_args(args.method_arg)
    if args.facemodel is not None:
        kwargs["facemodel"] = args.facemodel
    if args.facemodel_path is not None:
        kwargs["facemodel_path"] = args.facemodel_path
    method = load_method(args.method, args.ckpt, kwargs, args.device, args.trust_checkpoint)
    if method.spec.input_kind == "multiface":  # whole photos, one mesh per face (WM3DR)
        return run_multiface(args, method)
    size = int(args.size or getattr(method, "image_size", 224))
    if size < 32:
        raise ValueError(f"--size must be >= 32 pixels, got {size}")
    fm = method.facemodel
    target5 = deng_target_points(fm.mean_shape.detach().cpu().double(), fm.landmarks68.cpu(), size)
    args.out.mkdir(parents=True, exist_ok=True)

    detector: list = []

    def get_detector():
        """BlazeFace + 68 points when their weights are cached, else MTCNN (created once)."""
        if not detector:
            detector.append(make_detector("auto", device=args.device))
        return detector[0]

    jobs = [PhotoJob(p, n) for p, n in zip(args.photos, unique_names(list(args.photos)))]
    for job in jobs:
        try:
            preprocess(job, target5, size, args.landmarks, len(jobs), get_detector)
        except ImportError:  # a missing dependency (e.g. facenet-pytorch) concerns every photo
            raise
        except Exception as exc:  # noqa: BLE001 - one bad photo must not stop the others
            _fail(job, exc)
    ready = [j for j in jobs if j.error is None]
    for start in range(0, len(ready), args.batch_size):
        chunk = ready[start:start + args.batch_size]
        batch = collate_samples([j.sample for j in chunk])
        batch = method.transfer_batch_to_device(batch, torch.device(args.device), 0)
        t0 = time.perf_counter()
        try:
            with torch.no_grad():
                recs = method.reconstruct(batch)
        except Exception as exc:  # noqa: BLE001 - a method failure fails its photos, not the run
            for j in chunk:
                _fail(j, RuntimeError(f"method {args.method!r} failed: {type(exc).__name__}: {exc}"))
            continue
        per_image = (time.perf_counter() - t0) / len(chunk)
        for j, rec in zip(chunk, recs):
            try:
                write_outputs(j, rec, args.out, method, args.method, args.ckpt, per_image)
                print(f"{j.path} -> {args.out / j.name}.{{obj,ply,json}}, {j.name}_lm.png "
                      f"({per_image:.2f} s)")
            except Exception as exc:  # noqa: BLE001 - e.g. an unusable face or an unwritable file
                _fail(j, exc)
    failed = [j for j in jobs if j.error is not None]
    ok = len(jobs) - len(failed)
    counts: dict[str, int] = {}
    for j in failed:
        counts[j.reason or "error"] = counts.get(j.reason or "error", 0) + 1
    summary = f"{ok} reconstructed, {len(failed)} failed"
    if failed:
        summary += ": " + ", ".join(f"{r} x{n}" for r, n in sorted(counts.items()))
        summary += "\n" + "\n".join(f"  {j.error}" for j in failed)
    print(summary)
    return 1 if failed else 0
