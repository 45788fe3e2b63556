"""Baselines on every board (issue 12): the weak-perspective pose fit and decode path, the
meanface / oracle per kind, multi-face landmark sources, depth on weak and perspective samples.

Known answers are computed independently (numpy / the synthetic engine's own ground truth)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmark3dface.data.datamodules import SampleCollate, SyntheticDataModule
from benchmark3dface.evaluation.datasets import synthetic_targets
from benchmark3dface.evaluation.landmarks import GroundTruthLandmarks, NoisyGroundTruthLandmarks
from benchmark3dface.evaluation.loop import EvaluationPlan, evaluate_batch

baselines = pytest.importorskip("b3f_methods.baselines", reason="the built-in method plugins are not installed")


def _batch(kind: str, n: int = 3, size: int = 128, **options):
    dm = SyntheticDataModule(mode=kind, image_size=size, train_size=0, val_size=0, test_size=n, seed=0,
                             batch_size=n, num_workers=0, options=options, drop_last=False)
    dm.setup("test")
    ds = dm.datasets["test"]
    return SampleCollate(fill_missing=True)([ds[i] for i in range(n)]), dm.facemodel


def _score(method, batch, kind, fm, protocols, source=None):
    plan = EvaluationPlan(protocols=protocols, inputs=method.spec.inputs, landmark_source=source,
                          targets=lambda b: synthetic_targets(b, kind, fm))
    metrics = plan.build_metrics()
    evaluate_batch(method.reconstruct, batch, plan, metrics)
    assert not plan.errors, plan.errors
    return {k: m.compute() for k, m in metrics.items()}


def _rot(pitch: float, yaw: float, roll: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = (math.cos(pitch), math.sin(pitch), math.cos(yaw), math.sin(yaw), math.cos(roll),
                              math.sin(roll))
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def test_fit_weak_pose_recovers_a_known_scaled_orthographic_pose():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 30, 3)) * 40
    rots = [_rot(0.1, 0.5, -0.05), _rot(-0.2, -0.3, 0.1)]
    s, t, c = [0.7, 1.3], [[3.0, -5.0], [-10.0, 2.0]], (64.0, 64.0)
    uv = []
    for b in range(2):  # u = cx + s (R X)_x + tx, v = cy - (s (R X)_y + ty), by hand
        w = x[b] @ rots[b].T
        uv.append(np.stack([c[0] + s[b] * w[:, 0] + t[b][0], c[1] - (s[b] * w[:, 1] + t[b][1])], -1))
    rot, scale, t2 = baselines.fit_weak_pose(torch.tensor(x), torch.tensor(np.stack(uv)), c)
    for b in range(2):
        np.testing.assert_allclose(rot[b].numpy(), rots[b], atol=1e-4)
        assert abs(float(scale[b]) - s[b]) < 1e-4
        np.testing.assert_allclose(t2[b].numpy(), t[b], atol=1e-3)


def test_weak_faces_reproduce_the_engine_landmarks_and_carry_their_camera():
    batch, fm = _batch("single", 2, projection="weak_perspective")
    oracle = baselines.Oracle(image_size=128)
    recs = oracle.reconstruct(batch)
    for rec, lm, cam in zip(recs, batch.lm68, batch.camera):
        face = rec.face
        assert face.camera["kind"] == "weak"
        assert abs(face.camera["scale"] - cam["scale"][0]) < 1e-6
        assert torch.allclose(face.landmarks2d, lm, atol=1e-2)  # the engine's own GT landmarks


def test_oracle_is_zero_and_meanface_is_not_on_every_new_board():
    for kind, opts, size, protos in [
        ("single", {"projection": "weak_perspective", "grayscale": True}, 128,
         {"true_error": {}, "depth": {"align": "median"}}),
        ("multiview", {"view_yaws": [-30, 0, 30]}, 128, {"true_error": {}, "depth": {}}),
        ("set", {"set_size": 3}, 128, {"true_error": {}}),
        ("multiface", {}, 256, {"true_error": {}, "detection": {}}),
    ]:
        batch, fm = _batch(kind, 2, size, **opts)
        res = _score(baselines.Oracle(image_size=size), batch, kind, fm, protos)
        assert res["true_error"].metrics["mean"].value < 1e-3, kind
        assert res["true_error"].metrics["mean"].n_failed == 0, kind
        if "depth" in res:
            assert res["depth"].metrics["mean"].value < 1e-2, kind
            assert res["depth"].metrics["coverage"].value > 0.99, kind
        if "detection" in res:
            assert res["detection"].metrics["average_precision"].value == 1.0
            assert res["detection"].metrics["false_positives"].value == 0
        mean = _score(baselines.MeanFace(image_size=size), batch, kind, fm, protos, GroundTruthLandmarks())
        assert mean["true_error"].metrics["mean"].value > 1.0, kind  # the mean face is not the GT
        assert mean["true_error"].metrics["mean"].n_failed == 0, kind


def test_per_view_faces_and_aggregate_of_sets_and_triplets():
    batch, _ = _batch("multiview", 2, view_yaws=[-30, 0, 30])
    recs = baselines.Oracle(image_size=128).reconstruct(batch)
    for rec, verts in zip(recs, batch.vertices):
        assert len(rec.per_view) == 3
        for k in range(3):  # each view's face is that view's GT mesh (model frame)
            assert torch.allclose(rec.per_view[k].vertices, verts[k], atol=1e-3)
        assert rec.faces[0] is rec.per_view[1]  # the front view of (left, front, right)
    batch, fm = _batch("set", 2, set_size=3)
    target = synthetic_targets(batch, "set", fm)
    for rec, t in zip(baselines.Oracle(image_size=128).reconstruct(batch), target):
        assert torch.allclose(rec.faces[0].vertices, t.vertices, atol=1e-3)  # identity, neutral expression


def test_multiface_landmark_sources_return_every_face_as_lists():
    batch, _ = _batch("multiface", 3, 256)
    out = GroundTruthLandmarks()(batch)
    assert isinstance(out["lm68"], list) and len(out["lm68"]) == 3
    assert [len(x) for x in out["lm68"]] == [len(x) for x in batch.lm68]
    assert out["ok"].tolist() == [True, True, True]
    noisy = NoisyGroundTruthLandmarks(sigma=0.04)(batch)
    for a, b in zip(noisy["lm68"], batch.lm68):
        assert a.shape == b.shape and not torch.allclose(a, b)
    again = NoisyGroundTruthLandmarks(sigma=0.04)(batch)
    assert all(torch.equal(a, b) for a, b in zip(noisy["lm68"], again["lm68"]))  # seeded by the sample id


def test_detector_source_finds_several_faces_and_keeps_single_images_per_image():
    from benchmark3dface.evaluation.landmarks import DetectedLandmarks

    src = DetectedLandmarks()
    if src.backend == "mtcnn":
        pytest.skip("the 68-point detector weights are not cached (b3f weights fetch blazeface faceapi_landmark68)")
    batch, _ = _batch("multiface", 2, 256)
    out = src(batch)
    assert isinstance(out["lm68"], list) and len(out["lm68"]) == 2
    assert sum(len(x) for x in out["lm68"]) >= 2  # several faces, not one per image
    for lm, box, score, c, gt in zip(out["lm68"], out["boxes"], out["scores"], out["centers"], batch.lm68):
        assert lm.shape[1:] == (68, 2) and box.shape == (len(lm), 4) and score.shape == (len(lm),)
        assert torch.allclose(c, (box[:, :2] + box[:, 2:]) / 2)
        assert len(lm) <= len(gt) + 1
        assert (score[:-1] >= score[1:]).all()  # by decreasing score
    single, _ = _batch("single", 2)
    one = src(single)
    assert isinstance(one["lm68"], torch.Tensor) and one["lm68"].shape == (2, 68, 2) and one["ok"].shape == (2,)


def test_depth_error_on_weak_and_perspective_samples():
    from benchmark3dface.metrics.depth import DepthError

    # weak perspective: the same pixels, exactly 5 mm deeper; perspective: the face also grows
    # by 1000 / 995 on the image, so the pixels see slightly different surface points
    for opts, align, tol in [({"projection": "weak_perspective"}, "median", 0.05), ({}, "none", 0.5)]:
        batch, fm = _batch("single", 2, **opts)
        oracle = baselines.Oracle(image_size=128).reconstruct(batch)
        metric = DepthError(align=align)
        metric.update(oracle, batch)
        assert metric.compute().metrics["mean"].value < 1e-2
        # a face moved 5 mm toward the camera: exactly 5 mm of depth error without alignment
        # (perspective: D - z; weak: -z), none after the median alignment
        from benchmark3dface.metrics import as_samples

        for rec in oracle:
            f = rec.face
            if f.camera["kind"] == "perspective":
                f.translation = f.translation + torch.tensor([0.0, 0.0, 5.0])
            else:
                f.vertices = f.vertices + (f.rotation.T @ torch.tensor([0.0, 0.0, 5.0]))
        shifted = DepthError(align="none")
        shifted.update(oracle, as_samples(batch))
        got = shifted.compute().metrics["mean"].value
        assert abs(got - 5.0) < tol, (opts, got)
        aligned = DepthError(align="median")
        aligned.update(oracle, as_samples(batch))
        assert aligned.compute().metrics["mean"].value < tol
