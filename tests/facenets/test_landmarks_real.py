"""Detection and 68 landmarks on the real images of ../shared/data with the converted networks
(skipped when the weights are not cached or the data is absent)."""

from __future__ import annotations

import pytest
import torch

from benchmark3dface.facenets.landmarks import lm68_to_lm5, nme_68, square_box

from .conftest import need_weights


def _nme(pred: torch.Tensor, gt: torch.Tensor) -> float:
    """AFLW2000-3D NME computed here: mean point distance / sqrt(w h) of the GT 68-point box."""
    w, h = (gt.max(0).values - gt.min(0).values).tolist()
    return float((pred - gt).norm(dim=1).mean()) / (w * h) ** 0.5


def test_nme_helper_by_hand():
    gt = torch.tensor([[0.0, 0.0], [4.0, 0.0], [4.0, 9.0]])
    pred = gt + torch.tensor([3.0, 4.0])  # every point 5 px off; box 4 x 9 -> sqrt 36 = 6
    assert float(nme_68(pred[None], gt[None])[0]) == pytest.approx(5 / 6)
    assert square_box(torch.tensor([0.0, 0.0, 4.0, 2.0]), 1.5).tolist() == [-1.0, -2.0, 5.0, 4.0]


def test_blazeface_finds_every_photo_face(photos, face_detector):
    for s in photos:
        dets = face_detector(s.image)
        assert dets, f"no face found in {s.meta['path']}"
        d = dets[0]
        assert d.score > 0.8 and d.box.shape == (4,) and d.keypoints.shape == (6, 2)
        lm5 = s.lm5  # given points: left eye, right eye (viewer's), nose, mouth corners
        x0, y0, x1, y1 = d.box.tolist()
        assert ((lm5[:, 0] > x0) & (lm5[:, 0] < x1) & (lm5[:, 1] > y0) & (lm5[:, 1] < y1)).all()
        iod = float((lm5[1] - lm5[0]).norm())
        # keypoint order: 0 is the eye on the viewer's left, 1 the other, 2 the nose tip
        for k, ref in ((0, lm5[0]), (1, lm5[1]), (2, lm5[2])):
            assert float((d.keypoints[k] - ref).norm()) < 0.3 * iod, (s.meta["path"], k)


def test_landmarker_nme_on_aflw2000_with_blazeface_boxes(aflw_samples, landmarker):
    images = [s.image for s in aflw_samples]
    errs = []
    for s, img in zip(aflw_samples, images):
        lm, ok = landmarker(img[None])
        assert bool(ok[0]), f"no face found in {s.meta['path']}"
        errs.append(_nme(lm[0], s.lm68))
    mean = sum(errs) / len(errs)
    print(f"\nface-api 68, BlazeFace boxes: NME {100 * mean:.2f} % per image {[round(100 * e, 1) for e in errs]}")
    assert mean <= 0.06


def test_landmarker_with_given_boxes_and_a_batch(aflw_samples, landmarker):
    gts = torch.stack([s.lm68 for s in aflw_samples[:3]])
    boxes = torch.cat([gts.amin(1), gts.amax(1)], -1)  # tight GT landmark boxes
    images = torch.stack([s.image for s in aflw_samples[:3]])
    lm, ok = landmarker(images, boxes)
    assert lm.shape == (3, 68, 2) and bool(ok.all())
    errs = [_nme(lm[i], gts[i]) for i in range(3)]
    assert sum(errs) / 3 <= 0.06
    # a face-free image: not ok, NaN landmarks
    lm, ok = landmarker(torch.full((1, 3, 200, 160), 0.5))
    assert not bool(ok[0]) and torch.isnan(lm).all()
    # bad input: one clear error
    with pytest.raises(ValueError, match="float images in \\[0, 1\\], got torch.uint8"):
        landmarker.detector(torch.zeros(3, 50, 50, dtype=torch.uint8))
    with pytest.raises(ValueError, match="2 boxes for 3 images"):
        landmarker(images, boxes[:2])


def test_facemesh_68_nme_on_aflw2000(aflw_samples, face_detector):
    need_weights("facemesh")
    from benchmark3dface.facenets.landmarks import Landmarker68

    lmk = Landmarker68(method="facemesh", detector=face_detector)
    errs = []
    for s in aflw_samples:
        lm, ok = lmk(s.image[None])
        assert bool(ok[0])
        errs.append(_nme(lm[0], s.lm68))
    mean = sum(errs) / len(errs)
    print(f"\nFaceMesh -> 68, BlazeFace boxes: NME {100 * mean:.2f} %")
    assert mean <= 0.065


def test_five_points_from_68_on_photos(photos, landmarker):
    per_photo = []
    for s in photos:
        lm, ok = landmarker(s.image[None])
        assert bool(ok[0])
        l5 = lm68_to_lm5(lm[0])
        iod = float((s.lm5[1] - s.lm5[0]).norm())
        per_photo.append(float((l5 - s.lm5).norm(dim=1).mean()) / iod)
    mean = sum(per_photo) / len(per_photo)
    print(f"\n5 points from 68 vs given: mean {100 * mean:.2f} % of the eye distance, "
          f"per photo {[round(100 * e, 1) for e in per_photo]}")
    assert mean <= 0.06 and max(per_photo) <= 0.10


def test_blazeface_detector_option_in_preprocessing(photos):
    need_weights("blazeface", "faceapi_landmark68")
    from benchmark3dface.data.preprocess import AlignCrop, BlazeFaceDetector, make_detector
    from benchmark3dface.data.preprocess.landmarks68 import FaceNetLandmarker, make_landmarker
    from benchmark3dface.data.sample import Sample

    det = make_detector("auto")
    assert isinstance(det, BlazeFaceDetector) and det.name == "blazeface+faceapi68"
    s = photos[0]
    faces = det.detect(s.image)
    assert len(faces) == 1 and faces[0].lm68.shape == (68, 2)
    iod = float((s.lm5[1] - s.lm5[0]).norm())
    assert float((faces[0].lm5 - s.lm5).norm(dim=1).max()) < 0.15 * iod
    # the 68-point default of the preprocessing, FAN's call signature
    lmk = make_landmarker("auto")
    assert isinstance(lmk, FaceNetLandmarker)
    pts, score = lmk(s.image, faces[0].box)
    assert pts.shape == (1, 68, 2) and torch.allclose(pts[0], faces[0].lm68, atol=1e-4) and score.shape == (1, 68)
    # AlignCrop keeps the detector's 68 points (mapped into the crop)
    target = torch.tensor([[38.0, 51.0], [74.0, 51.0], [56.0, 71.0], [42.0, 92.0], [70.0, 92.0]])
    sample = Sample(kind="single", sample_id="p", image=s.image.clone(), labelled=False, meta={"path": "p"})
    out = AlignCrop(target, 112, detector=det, compute_skin=False)(sample)
    assert out.lm68 is not None and out.lm68.shape == (68, 2)
    assert float((lm68_to_lm5(out.lm68) - out.lm5).norm(dim=1).max()) < 1e-3
