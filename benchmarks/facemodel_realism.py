"""Realism and build-time figures of the embedded procedural face model.

Usage:
    python benchmarks/facemodel_realism.py [--reference PATH] [--cache-dir DIR] [--no-build-timing]

Prints: a fresh build's time (in a temporary cache folder) and the cache load time; vertex and
triangle counts; then, against the ICT-FaceKit light face (``ict_face_light.npz`` from the
read-only ``../shared/data`` folder, or ``$B3F_SHARED_DATA``) after a similarity alignment on
the 68 landmarks: the landmark RMS, the RMS point-to-surface distance over the inner face in
both directions, and the per-vertex identity spread (std of the displacement under N(0, 1)
identity weights) of both models. Skips the comparison with a message when the reference file
is absent. Expression sanity figures (1-sigma jaw open, eye close) are printed too.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmark3dface.facemodel.procedural import (
    load_procedural_model,
    procedural_arrays,
)
from benchmark3dface.facemodel.procedural.realism import (
    compare_to_reference,
    load_reference,
)

ROOT = Path(__file__).resolve().parents[1]


def default_reference() -> Path:
    shared = Path(os.environ.get("B3F_SHARED_DATA", ROOT.parent / "shared" / "data"))
    return shared / "ict_face_model" / "ict_face_light.npz"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", type=Path, default=default_reference())
    ap.add_argument("--cache-dir", default=None, help="model cache folder (default: $B3F_CACHE_DIR or ~/.cache)")
    ap.add_argument("--no-build-timing", action="store_true", help="skip timing a fresh build")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)

    if not args.no_build_timing:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            procedural_arrays(tmp, rebuild=True)
            build_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            load_procedural_model(tmp)
            load_s = time.perf_counter() - t0
        print(f"fresh build + cache write: {build_s:.1f} s; load from cache: {load_s:.2f} s "
              f"(cpu threads: torch {torch.get_num_threads()}, os {os.cpu_count()})")
    arrays, meta = procedural_arrays(args.cache_dir)
    model = load_procedural_model(args.cache_dir)
    print(f"procedural model v{meta['version']} ({meta['content_sha256'][:16]}): "
          f"{model.num_vertices} vertices, {model.num_triangles} triangles, "
          f"modes id/exp/tex = {model.id_basis.shape[0]}/{model.exp_basis.shape[0]}/{model.albedo_basis.shape[0]}")

    # expression sanity: 1-sigma jaw open and eye close
    names = model.exp_names
    zero_id = torch.zeros(1, model.layout.id)
    lm = model.landmarks68

    def landmarks_with(name: str, amount: float = 1.0) -> torch.Tensor:
        e = torch.zeros(1, model.layout.exp)
        e[0, names.index(name)] = amount
        return model.shape(zero_id, e)[0, lm]

    neutral = model.mean_shape[lm]
    jaw = landmarks_with("jaw_open")
    eye = landmarks_with("eye_close_left")
    print(f"1-sigma jaw_open: inner-lip gap 62-66 {float((jaw[62] - jaw[66]).norm()):.1f} mm "
          f"(neutral {float((neutral[62] - neutral[66]).norm()):.1f}); "
          f"1-sigma eye_close_left: lid gap 37-41 {float((eye[37] - eye[41]).norm()):.1f} mm "
          f"(neutral {float((neutral[37] - neutral[41]).norm()):.1f})")

    if not args.reference.exists():
        print(f"SKIP realism comparison: reference {args.reference} is absent "
              "(the read-only ../shared/data folder; set B3F_SHARED_DATA to point elsewhere)")
        return 0
    ref = load_reference(args.reference)
    t0 = time.perf_counter()
    r = compare_to_reference(arrays["mean_shape"], arrays["triangles"], arrays["landmarks68"],
                             arrays["id_basis"], ref)
    print(f"realism vs ICT-FaceKit light face ({args.reference.name}), after similarity alignment on "
          f"68 landmarks (scale {r['alignment_scale']:.3f}), {time.perf_counter() - t0:.1f} s:")
    print(f"  landmark RMS            {r['landmark_rms_mm']:.2f} mm  (jaw {r['landmark_rms_jaw_mm']:.2f}, "
          f"brows {r['landmark_rms_brows_mm']:.2f}, nose {r['landmark_rms_nose_mm']:.2f}, "
          f"eyes {r['landmark_rms_eyes_mm']:.2f}, mouth {r['landmark_rms_mouth_mm']:.2f})")
    print(f"  surface RMS model->ICT  {r['surface_rms_model_to_ref_mm']:.2f} mm  "
          f"(p95 {r['surface_p95_model_to_ref_mm']:.2f}; {r['inner_face_vertices_model']} inner-face vertices)")
    print(f"  surface RMS ICT->model  {r['surface_rms_ref_to_model_mm']:.2f} mm  "
          f"({r['inner_face_vertices_ref']} ICT inner-face vertices)")
    print(f"  surface RMS (both)      {r['surface_rms_mm']:.2f} mm  (target <= 5 mm)")
    print(f"  identity spread (mean per-vertex std over the inner face): model {r['identity_std_model_mm']:.2f} mm "
          f"({r['identity_std_model_aligned_mm']:.2f} at the alignment scale, {r['identity_modes_model']} modes), "
          f"ICT {r['identity_std_ref_mm']:.2f} mm ({r['identity_modes_ref']} modes); "
          f"ratio {r['identity_std_model_aligned_mm'] / r['identity_std_ref_mm']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
