"""MTCNN 5 points against the reference 5-point files, and Deng alignment of the real photos."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark3dface.data.preprocess import (MTCNN_TO_CONVENTION, AlignCrop, align_face, box_from_lm5,
                                             deng_target_points, deng_target_points_orthographic,
                                             preprocess_photo, select_face)
from benchmark3dface.data.readers import DataError


def _iod(lm5: torch.Tensor) -> float:
    return float((lm5[1] - lm5[0]).norm())


def test_mtcnn_points_match_reference_files(photos, photo_detections):
    assert MTCNN_TO_CONVENTION == (0, 1, 2, 3, 4)
    rel = []
    print("\nMTCNN vs reference 5 points (pixels; mean / max per photo, mean / inter-ocular):")
    for s, dets in zip(photos, photo_detections):
        det = select_face(dets, "largest")
        assert det is not None, s.sample_id
        d = (det.lm5 - s.lm5).norm(dim=-1)
        rel.append(float(d.mean()) / _iod(s.lm5))
        print(f"  {s.sample_id:24s} per point {np.round(d.numpy(), 2)}  mean {float(d.mean()):5.2f}  "
              f"max {float(d.max()):5.2f}  rel {rel[-1]:.3f}")
        # the detection box contains the face
        b = det.box
        assert (b[0] < s.lm5[:, 0]).all() and (s.lm5[:, 0] < b[2]).all()
        assert (b[1] < s.lm5[:, 1]).all() and (s.lm5[:, 1] < b[3]).all()
    rel = np.array(rel)
    print(f"  median rel {np.median(rel):.3f}, max rel {rel.max():.3f}")
    assert np.median(rel) < 0.08
    assert (rel < 0.15).mean() >= 0.9


def test_mtcnn_order_is_the_conventions_order(photos, photo_detections):
    """Swapping left/right would put every point ~1 inter-ocular distance away."""
    for s, dets in zip(photos, photo_detections):
        det = select_face(dets)
        for k, other in ((0, 1), (3, 4)):
            assert (det.lm5[k] - s.lm5[k]).norm() < (det.lm5[k] - s.lm5[other]).norm()


def test_target_points_geometry(ict_mean, target224):
    v, idx = ict_mean
    t = target224
    assert t.shape == (5, 2)
    # symmetric mean face -> eyes and mouth corners symmetric about the crop centre, nose centred
    assert float(t[0, 0] + t[1, 0]) == pytest.approx(224.0, abs=0.5)
    assert float(t[2, 0]) == pytest.approx(112.0, abs=0.5)
    assert t[0, 1] < t[2, 1] < t[3, 1]  # eyes above nose tip above mouth corners (v down)
    # independent computation for the nose tip: u = S/2 + f x / (D - z), v = S/2 - f y / (D - z)
    p = v[idx[30]]
    f = 1015.0 * 448 / 224
    t448 = deng_target_points(v, idx, 448)
    assert float(t448[2, 1]) == pytest.approx(224 - f * float(p[1]) / (1000 - float(p[2])), abs=1e-3)
    torch.testing.assert_close(t448, 2 * t, atol=1e-3, rtol=0)  # scales with the crop size
    # Deng's orthographic rule with 102 px/dm is within a few percent of the perspective targets
    o = deng_target_points_orthographic(v, idx, 224)
    iod_p, iod_o = float((t[1] - t[0]).norm()), float((o[1] - o[0]).norm())
    assert iod_o == pytest.approx(102 / 100 * float(v[idx[42:46]].mean(0)[0] - v[idx[36:40]].mean(0)[0])
                                  , rel=0.05)
    assert 0.9 < iod_p / iod_o < 1.1


def test_aligned_crops_are_centred(photos, target224, detector):
    crops, moved = [], []
    for s in photos:
        a = align_face(s.image, s.lm5, target224, 224)
        assert a.image.shape == (3, 224, 224) and 0 <= float(a.image.min()) and float(a.image.max()) <= 1
        # least squares: the centroid lands exactly on the targets' centroid, the RMS residual
        # (pose and face-shape differences, no rotation) stays small
        torch.testing.assert_close(a.lm5.mean(0), target224.mean(0), atol=1e-3, rtol=0)
        assert a.residual < 0.2 * _iod(target224)
        torch.testing.assert_close(a.transform.apply_inverse(a.lm5).float(), s.lm5, atol=1e-3, rtol=0)
        crops.append(a.image)
        moved.append(a.lm5)
    # the pixels moved with the points: MTCNN on the crops finds the faces where the transformed
    # reference points are
    errs = []
    for dets, lm in zip(detector.detect_batch(crops), moved):
        det = select_face(dets, "central", (224, 224))
        assert det is not None
        errs.append(float((det.lm5 - lm).norm(dim=-1).mean()) / _iod(lm))
    print("\ncrop MTCNN vs transformed reference (rel. to inter-ocular):", np.round(errs, 3))
    assert np.median(errs) < 0.08


def test_align_crop_transform_on_reader_samples(photos, target224):
    import copy

    s = copy.deepcopy(photos[0])
    orig = s.lm5.clone()
    out = AlignCrop(target224 / 2, 112)(s)  # targets are crop pixels for the crop size
    assert out.image.shape == (3, 112, 112) and out.skin_mask.shape == (112, 112)
    torch.testing.assert_close(out.meta["crop_transform"].apply_inverse(out.lm5), orig, atol=1e-3, rtol=0)
    torch.testing.assert_close(out.lm5.mean(0), target224.mean(0) / 2, atol=0.5, rtol=0)
    assert out.meta["align_residual_px"] < 0.2 * _iod(target224) / 2
    none = copy.deepcopy(photos[1])
    none.lm5 = None
    with pytest.raises(DataError, match="no 5-point landmarks"):
        AlignCrop(target224)(none)
    bad = copy.deepcopy(photos[1])
    bad.lm5[0, 0] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        AlignCrop(target224)(bad)


def test_preprocess_photo_with_detection(shared_data, target224, detector):
    path = shared_data("photos_5pt", "000037.jpg")
    ref = torch.from_numpy(np.loadtxt(path.with_suffix(".txt"))).float()
    s = preprocess_photo(path, target224, 224, detector=detector)
    assert s.meta["detection"]["score"] > 0.9 and s.image.shape == (3, 224, 224)
    back = s.meta["crop_transform"].apply_inverse(s.lm5)
    assert float((back - ref).norm(dim=-1).mean()) < 0.1 * _iod(ref)
    blank = torch.full((3, 100, 100), 0.5)
    with pytest.raises(DataError, match="no face"):
        preprocess_photo(blank, target224, detector=detector)


def test_box_from_lm5_contains_the_points(photos):
    for s in photos:
        b = box_from_lm5(s.lm5)
        assert (b[0] < s.lm5[:, 0]).all() and (s.lm5[:, 0] < b[2]).all()
        assert (b[1] < s.lm5[:, 1]).all() and (s.lm5[:, 1] < b[3]).all()
        assert float(b[2] - b[0]) == pytest.approx(float(b[3] - b[1]))


def test_align_crop_as_reader_transform(shared_data, tmp_path, target224):
    from PIL import Image

    from benchmark3dface.data.readers import ImageFolderReader

    r = ImageFolderReader(shared_data("photos_5pt"), transform=AlignCrop(target224, 224), image_size=None)
    s = r[2]
    assert s.image.shape == (3, 224, 224) and s.skin_mask is not None
    torch.testing.assert_close(s.meta["image_transform"].apply_inverse(s.lm5),
                               torch.from_numpy(np.loadtxt(s.meta["annotation_path"])).float(), atol=1e-3, rtol=0)
    # a photo without landmarks and no detector: skipped with reason 'no_face' when not strict
    Image.fromarray(np.zeros((50, 50, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.full((50, 50, 3), 200, np.uint8)).save(tmp_path / "b.png")
    (tmp_path / "b.txt").write_text("15 20\n35 20\n25 28\n18 38\n32 38\n")
    lax = ImageFolderReader(tmp_path, strict=False, transform=AlignCrop(target224 / 4, 56))
    assert lax[0].sample_id == "image_folder/b" and lax.skipped == {"no_face": 1}


def test_fan_on_real_photos_when_weights_exist(photos, detector, photo_detections):
    from benchmark3dface.data.preprocess import FANLandmarker, MissingWeightsError
    from benchmark3dface.data.readers import lm5_from_lm68

    try:
        fan = FANLandmarker()
    except MissingWeightsError as e:
        pytest.skip(f"FAN weights absent: {str(e)[:80]}...")
    errs = []
    for s, dets in zip(photos, photo_detections):
        lm68, _ = fan(s.image, select_face(dets).box)
        errs.append(float((lm5_from_lm68(lm68[0]) - s.lm5).norm(dim=-1).mean()) / _iod(s.lm5))
    assert np.median(errs) < 0.1
