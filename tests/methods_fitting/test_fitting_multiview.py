"""The multi-image fitting baselines (issue 12): views tied in one problem (``fitting_mv``),
per-view fits with an aggregate (``fitting`` on triplets, ``set_average``), and the
detect-then-regress geometry (crops placed back in image coordinates)."""

from __future__ import annotations

import pytest
import torch

from benchmark3dface.data.datamodules import SampleCollate, SyntheticDataModule
from benchmark3dface.geometry.camera import PerspectiveCamera

fitting = pytest.importorskip("b3f_methods.fitting", reason="the built-in method plugins are not installed")

FAST = dict(image_size=128, landmark_iters=15, photo_iters=3, fit_size=32)


def _batch(kind: str, n: int, size: int = 128, **options):
    dm = SyntheticDataModule(mode=kind, image_size=size, train_size=0, val_size=0, test_size=n, seed=1,
                             batch_size=n, num_workers=0, options=options, drop_last=False)
    dm.setup("test")
    return SampleCollate(fill_missing=True)([dm.datasets["test"][i] for i in range(n)])


@pytest.fixture(scope="module")
def triplets():
    return _batch("multiview", 2, view_yaws=[-30, 0, 30])


def test_tied_views_share_shape_albedo_light_and_keep_one_pose_per_view(triplets):
    from benchmark3dface.methods.reconstruction import Reconstruction

    mv = fitting.FittingMV(**FAST)
    recs = mv.reconstruct(triplets)
    lay = mv.facemodel.layout
    for rec in recs:
        assert isinstance(rec, Reconstruction) and len(rec.per_view) == 3
        c = rec.extras["coeffs"]  # (V, C)
        for g in fitting.SHARED_GROUPS:
            assert torch.allclose(c[:, lay.slice(g)], c[:1, lay.slice(g)].expand(3, -1), atol=1e-6), g
        angles = c[:, lay.slice("angles")]
        assert (angles[0] - angles[2]).abs().max() > 0.2  # left and right views: different poses
        assert rec.faces[0] is rec.per_view[1]  # aggregated = the front view


def test_single_view_fitting_on_triplets_fits_views_independently(triplets):
    single = fitting.Fitting(**FAST)
    assert "multiview" in single.spec.eval_kinds
    recs = single.reconstruct(triplets)
    lay = single.facemodel.layout
    for rec in recs:
        assert len(rec.per_view) == 3
        ids = rec.extras["coeffs"][:, lay.slice("id")]
        assert not torch.allclose(ids[0], ids[2])  # each view its own identity
    # per view it is the same fit as the view given as a single image
    view1 = _batch("multiview", 2, view_yaws=[-30, 0, 30])
    from benchmark3dface.data.sample import Sample

    one = Sample(kind="single", sample_id=["a"], image=view1.image[0, 1:2], lm68=view1.lm68[0, 1:2],
                 lm5=view1.lm5[0, 1:2])
    alone = single.reconstruct(one)[0].extras["coeffs"]
    assert torch.allclose(alone, recs[0].extras["coeffs"][1], atol=1e-3)


def test_set_average_aggregates_the_mean_identity_with_a_neutral_expression():
    batch = _batch("set", 1, set_size=3)
    sa = fitting.SetAverage(image_size=128, landmark_iters=15, fit_size=32)
    assert sa.spec.input_kind == "set" and sa.stages[1].iterations == 0  # landmark stage only by default
    (rec,) = sa.reconstruct(batch)
    fm = sa.facemodel
    lay = fm.layout
    c = rec.extras["coeffs"]
    ident = c[:, lay.slice("id")].mean(0, keepdim=True)
    expected = fm.shape(ident.to(fm.mean_shape), torch.zeros(1, lay.exp, dtype=fm.mean_shape.dtype))[0]
    assert torch.allclose(rec.faces[0].vertices, expected.float(), atol=1e-3)
    assert len(rec.per_view) == 3


def test_fit_refuses_images_that_are_not_whole_groups_of_views():
    f = fitting.Fitting(**FAST)
    with pytest.raises(ValueError, match="groups of 3 views"):
        f.fit(torch.rand(4, 3, 32, 32), None, torch.ones(4, 32, 32), views=3)


def test_crop_boxes_and_place_back_map_crops_to_image_pixels_exactly():
    from b3f_methods.baselines.detect_regress import crop_boxes, place_back

    from benchmark3dface.methods.reconstruction import FaceReconstruction

    pts = torch.tensor([[[10.0, 20.0], [30.0, 60.0]]])
    box = crop_boxes(pts, 1.5)[0]  # centre (20, 40), side 1.5 x 40 = 60
    assert torch.allclose(box, torch.tensor([-10.0, 10.0, 50.0, 70.0]))
    # a point seen by the crop camera, and the same point seen by the whole-image camera place_back gives
    crop = 128
    cam = PerspectiveCamera.deng(crop)
    x = torch.tensor([[12.0, -7.0, 30.0]])
    trans = torch.tensor([5.0, -3.0, 40.0])
    uv_crop = cam.project(x + trans)[0, :2]
    face = FaceReconstruction(torch.zeros(1, 3), torch.zeros(1, 3, dtype=torch.long), translation=trans,
                              landmarks2d=uv_crop.expand(68, 2).clone(),
                              camera={"kind": "perspective", "focal": cam.focal, "principal": (cam.cx, cam.cy),
                                      "distance": cam.distance})
    out = place_back(face, box, crop, 0.9)
    k = 60.0 / crop
    expected = torch.tensor([-10.0, 10.0]) + uv_crop * k  # crop px -> image px by hand
    assert torch.allclose(out.landmarks2d[0], expected, atol=1e-4)
    c = out.camera
    img_cam = PerspectiveCamera(c["focal"], c["principal"][0], c["principal"][1], c["distance"])
    assert torch.allclose(img_cam.project(x + trans)[0, :2], expected, atol=1e-3)
    assert torch.allclose(out.center, img_cam.project(trans[None])[0, :2]) and out.score == 0.9


def test_detect_regress_places_one_face_per_detected_face():
    from benchmark3dface.evaluation.landmarks import DetectedLandmarks

    if DetectedLandmarks().backend == "mtcnn":
        pytest.skip("the 68-point detector weights are not cached")
    from b3f_methods.baselines.detect_regress import DetectRegress

    batch = _batch("multiface", 1, 256)
    dr = DetectRegress(inner="meanface")
    (rec,) = dr.reconstruct(batch)
    assert 1 <= len(rec.faces) <= len(batch.lm68[0]) + 1
    gt_centres = batch.centers[0]
    for f in rec.faces:
        assert f.center is not None and f.score is not None and 0 <= f.score <= 1
        # each face lands near some GT face centre (within half the typical face size)
        assert (gt_centres - f.center).norm(dim=-1).min() < 40
    assert dr.last_timing["faces"] == len(rec.faces)
