"""Real-photo check of a method's 2D landmarks against reference 5 points (pixels of the photo).

Photos come with reference 5 points (``NAME.txt``, Deng's order, photo pixels). So that a method
cannot simply reproduce its own input, the *input* landmarks are the ones MTCNN detects on the
photo, and the reference points are only the *target*:

- **detected-input protocol** (:func:`detected_input_errors`): the photo is aligned and cropped
  with the MTCNN 5 points (Deng's rule), the method gets the crop with those points as ``lm5``;
  its predicted 68 landmarks are reduced to the 5 points (``lm68_to_lm5``), mapped back to the
  photo with the crop transform and compared with the reference points;
- **leave-one-out protocol** (:func:`leave_one_out_errors`, fitting vs. mean face only): for
  each of the 5 points, the crop is aligned with the other 4 MTCNN points, both methods fit
  with that point's weight set to 0, and the error of the held-out point against its reference
  is measured; it shows what the photometric term adds beyond the landmarks themselves.

Errors are Euclidean distances in photo pixels, averaged over the 5 points (detected-input) or
over the held-out points (leave-one-out).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from benchmark3dface.data.collate import collate_samples
from benchmark3dface.data.preprocess import (
    AlignCrop,
    MTCNNDetector,
    ScaleTranslation,
    deng_target_points,
    fit_scale_translation,
    select_face,
    skin_mask,
    warp_scale_translation,
)
from benchmark3dface.data.readers.annotations import read_points_txt
from benchmark3dface.data.readers.imageio import IMAGE_EXTENSIONS, load_image, to_tensor
from benchmark3dface.data.sample import Sample
from benchmark3dface.facemodel import lm68_to_lm5
from benchmark3dface.geometry.camera import PerspectiveCamera
from benchmark3dface.geometry.pose import fit_pose_to_landmarks
from benchmark3dface.losses import landmark_weights


@dataclass
class PhotoCase:
    """One photo: ``image`` (3, H, W) in [0, 1]; ``reference5`` / ``detected5`` (5, 2) photo px."""

    name: str
    path: Path
    image: Tensor
    reference5: Tensor
    detected5: Tensor


def load_cases(folder: str | Path, detector: MTCNNDetector | None = None) -> list[PhotoCase]:
    """Photos of ``folder`` that have a ``NAME.txt`` with 5 points, with MTCNN's 5 points
    (largest face). Raises ``ValueError`` naming a photo where no face is detected."""
    folder = Path(folder)
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS
                    and p.with_suffix(".txt").is_file())
    if not photos:
        raise FileNotFoundError(f"{folder}: no photos with a NAME.txt 5-point file")
    detector = detector or MTCNNDetector()
    images = [to_tensor(load_image(p)) for p in photos]
    dets = detector.detect_batch(images)
    cases = []
    for p, img, d in zip(photos, images, dets):
        face = select_face(d, "largest")
        if face is None:
            raise ValueError(f"{p}: MTCNN found no face")
        ref = torch.as_tensor(read_points_txt(p.with_suffix(".txt"), n_points=(5,)), dtype=torch.float32)
        cases.append(PhotoCase(p.stem, p, img, ref, face.lm5.float()))
    return cases


def point_errors(pred5: Tensor, ref5: Tensor) -> Tensor:
    """(..., 5, 2) predictions and references -> (..., 5) distances (px)."""
    return (pred5.double() - ref5.double()).norm(dim=-1)


def detected_input_errors(method, cases: list[PhotoCase], size: int = 224, batch_size: int = 10) -> dict:
    """Run ``method`` on the MTCNN-aligned crops (detected-input protocol).

    Returns ``{"errors": (P,) mean 5-point error per photo (px), "pred5": (P, 5, 2) photo px,
    "seconds": (P,) reconstruct wall time per photo, "cpu_seconds": (P,) process CPU time per photo
    (``extras["fit_cpu_seconds"]``, NaN for methods that do not report it)}``.
    """
    fm = method.facemodel
    target5 = deng_target_points(fm.mean_shape.detach().cpu().double(), fm.landmarks68.cpu(), size)
    align = AlignCrop(target5, size, detector=None, compute_skin=True)
    preds, secs, cpu = [], [], []
    for start in range(0, len(cases), batch_size):
        chunk = cases[start:start + batch_size]
        samples = [align(Sample(kind="single", sample_id=c.name, image=c.image.clone(), lm5=c.detected5.clone(),
                                labelled=False, meta={"path": str(c.path)})) for c in chunk]
        t0 = time.perf_counter()
        with torch.no_grad():
            recs = method.reconstruct(collate_samples(samples))
        dt = (time.perf_counter() - t0) / len(chunk)
        for s, r in zip(samples, recs):
            lm5 = lm68_to_lm5(r.face.landmarks2d.double())
            preds.append(s.meta["crop_transform"].apply_inverse(lm5))
            secs.append(r.extras.get("fit_seconds", dt))
            cpu.append(r.extras.get("fit_cpu_seconds", float("nan")))
    pred = torch.stack(preds)
    ref = torch.stack([c.reference5 for c in cases])
    return {"errors": point_errors(pred, ref).mean(-1), "pred5": pred, "seconds": torch.tensor(secs),
            "cpu_seconds": torch.tensor(cpu)}


def _weighted_crop(case: PhotoCase, target5: Tensor, size: int, weights: Tensor) -> tuple[Tensor, ScaleTranslation]:
    s, t = fit_scale_translation(case.detected5.double(), target5.double(), weights.double())
    tr = ScaleTranslation(float(s), (float(t[0]), float(t[1])))
    crop = warp_scale_translation(case.image, tr, (size, size), "bicubic").clamp(0, 1)
    return crop, tr


def leave_one_out_errors(fitting, cases: list[PhotoCase], size: int = 224) -> dict:
    """Held-out-point errors of the fitting method and of the mean face (see module docstring).

    Returns ``{"fitting": (P, 5), "meanface": (P, 5)}`` distances (px) of each held-out point
    and ``"seconds"`` (fitting time per fit).
    """
    from .objective import LandmarkTarget, five_point_weights

    fm = fitting.facemodel
    target5 = deng_target_points(fm.mean_shape.detach().cpu().double(), fm.landmarks68.cpu(), size)
    cam = PerspectiveCamera.deng(size)
    base_w = five_point_weights(landmark_weights())
    out_fit = torch.zeros(len(cases), 5, dtype=torch.float64)
    out_mf = torch.zeros(len(cases), 5, dtype=torch.float64)
    seconds = []
    mean5 = lm68_to_lm5(fm.mean_shape[fm.landmarks68])
    for k in range(5):
        keep = torch.ones(5)
        keep[k] = 0
        crops, trs, pts = [], [], []
        for c in cases:
            crop, tr = _weighted_crop(c, target5, size, keep)
            crops.append(crop)
            trs.append(tr)
            pts.append(tr.apply(c.detected5.double()).float())
        image = torch.stack(crops).to(mean5.device)
        points = torch.stack(pts).to(mean5.device)
        weights = (base_w * keep).expand(len(cases), 5).to(mean5.device)
        # mean face: pose from the 4 kept points
        angles, trans, _ = fit_pose_to_landmarks(mean5.expand(len(cases), 5, 3), points, cam, weights=keep.expand(len(cases), 5))
        coeffs = fm.layout.zeros(len(cases))
        coeffs[:, fm.layout.slice("angles")] = angles
        coeffs[:, fm.layout.slice("trans")] = trans
        mf5 = lm68_to_lm5(fm.decode(coeffs, cam).landmarks2d)
        # fitting with the held-out point's weight 0
        att = torch.stack([skin_mask(image[i], points[i]) for i in range(len(cases))])
        t0 = time.perf_counter()
        with torch.enable_grad():
            fit_coeffs, _ = fitting.fit(image, LandmarkTarget(points, weights, size), att)
        seconds.append((time.perf_counter() - t0) / len(cases))
        fit5 = lm68_to_lm5(fm.decode(fit_coeffs, cam).landmarks2d)
        for i, c in enumerate(cases):
            ref = c.reference5[k].double()
            out_fit[i, k] = (trs[i].apply_inverse(fit5[i, k].double().cpu()) - ref).norm()
            out_mf[i, k] = (trs[i].apply_inverse(mf5[i, k].double().cpu()) - ref).norm()
    return {"fitting": out_fit, "meanface": out_mf, "seconds": torch.tensor(seconds)}
