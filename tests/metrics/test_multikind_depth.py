"""Depth protocol on weak-perspective and perspective synthetic samples: the validity test is
finite-ness (weak-perspective depth is negative over the face), rendered meshes reproduce the
engine's GT depth (oracle = 0), per-view / per-face units, the common mask across methods and
the median alignment."""

from __future__ import annotations

import math

import pytest
import torch

from benchmark3dface.data.sample import Sample
from benchmark3dface.data.synthetic import SyntheticFaceDataset
from benchmark3dface.data.synthetic.testing import tiny_facemodel
from benchmark3dface.geometry.rotation import euler_to_matrix
from benchmark3dface.methods.reconstruction import FaceReconstruction, Reconstruction
from benchmark3dface.metrics import DepthError, compare_depth_methods, render_depth
from benchmark3dface.metrics.depth import valid_depth


@pytest.fixture(scope="module")
def model():
    return tiny_facemodel()


def _samples(model, n=2, **cfg):
    cfg = {"image_size": 64, "occlusion_prob": 0.0, "backgrounds": ("plain",), **cfg}
    ds = SyntheticFaceDataset(cfg, "test", n, 0, model)
    return [ds[i] for i in range(n)]


def _oracle(sample: Sample, tri: torch.Tensor, k: int | None = None, depth: bool = False) -> FaceReconstruction:
    """The GT face of ``sample`` (view / face ``k``) with its GT pose, as a method would return it."""
    pick = (lambda x: x) if k is None else (lambda x: x[k])
    pose = pick(sample.pose)
    cam = sample.camera
    if cam["type"] == "weak_perspective":
        j = 0 if k is None else k
        camera = {"kind": "weak", "scale": cam["scale"][j], "translation2d": tuple(cam["translation"][j])}
        trans = None
    else:
        camera, trans = {"kind": "perspective"}, pose[3:]
    return FaceReconstruction(pick(sample.vertices), tri, rotation=euler_to_matrix(pose[:3]), translation=trans,
                              camera=camera, center=None if sample.centers is None else sample.centers[k],
                              depth=pick(sample.depth) if depth else None)


def test_valid_depth_is_finite_not_positive():
    d = torch.tensor([[-30.0, 0.0, 12.0], [math.nan, math.inf, -1e-3]])
    assert valid_depth(d).tolist() == [[True, True, True], [False, False, True]]
    assert valid_depth(d, torch.tensor([[True, False, True], [True, True, False]])).tolist() == \
        [[True, False, True], [False, False, False]]


@pytest.mark.parametrize("projection", ["weak_perspective", "perspective"])
def test_rendered_oracle_scores_zero_on_all_gt_pixels(model, projection):
    samples = _samples(model, projection=projection)
    for s in samples:
        ok = torch.isfinite(s.depth)
        if projection == "weak_perspective":  # -z_world: negative over the front of the face
            assert (s.depth[ok] < 0).float().mean() > 0.5
        else:
            assert (s.depth[ok] > 0).all()  # camera depth D - z_world
        rendered = render_depth(_oracle(s, model.triangles), s.camera, s.depth.shape)
        both = ok & torch.isfinite(rendered)
        assert both.sum() >= 0.99 * ok.sum() and both.sum() >= 0.99 * torch.isfinite(rendered).sum()
        assert (rendered[both] - s.depth[both]).abs().max() < 1e-3
    m = DepthError()
    m.update([Reconstruction(s.sample_id, [_oracle(s, model.triangles)]) for s in samples], samples)
    res = m.compute()
    assert not res.failures and res.metrics["mean"].value < 1e-4 and res.metrics["p90"].value < 1e-3
    assert res.metrics["coverage"].value > 0.99
    for s in samples:  # every valid GT pixel is scored: none dropped for its sign
        assert res.per_sample["n_pixels"][s.sample_id] >= 0.99 * int(torch.isfinite(s.depth).sum())


def test_known_offset_and_median_alignment_on_weak_depth(model):
    s = _samples(model, n=1, projection="weak_perspective")[0]
    face = FaceReconstruction(None, None, depth=s.depth + 2.5)
    none, median = DepthError(), DepthError(align="median")
    for m in (none, median):
        m.update([Reconstruction(s.sample_id, [face])], [s])
    n_valid = int(torch.isfinite(s.depth).sum())
    got = none.compute()
    assert got.per_sample["mean"][s.sample_id] == pytest.approx(2.5, abs=1e-5)
    assert got.per_sample["n_pixels"][s.sample_id] == n_valid and got.per_sample["coverage"][s.sample_id] == 1.0
    assert median.compute().per_sample["mean"][s.sample_id] == pytest.approx(0.0, abs=1e-5)
    assert got.config["align"] == "none" and median.compute().config["align"] == "median"


def test_multiview_weak_depth_per_view(model):
    s = _samples(model, n=1, mode="multiview", projection="weak_perspective")[0]
    views = [_oracle(s, model.triangles, k) for k in range(3)]
    m = DepthError()
    m.update([Reconstruction(s.sample_id, [views[1]], per_view=views)], [s])
    res = m.compute()
    assert sorted(res.per_sample["mean"]) == [f"{s.sample_id}#v{k}" for k in range(3)]
    assert max(res.per_sample["mean"].values()) < 1e-4
    # the front view's face rendered in every view is wrong for the side views
    wrong = DepthError(align="median")
    wrong.update([Reconstruction(s.sample_id, [views[1]], per_view=[views[1]] * 3)], [s])
    got = wrong.compute().per_sample["mean"]
    assert got[f"{s.sample_id}#v1"] < 1e-4 and got[f"{s.sample_id}#v0"] > 1.0


def test_multiface_depth_per_face_and_false_positive(model):
    s = _samples(model, n=1, mode="multiface", image_size=160, min_faces=3, max_faces=3)[0]
    n = s.lm68.shape[0]
    faces = [_oracle(s, model.triangles, k) for k in reversed(range(n))]
    faces.append(FaceReconstruction(s.vertices[0], model.triangles, rotation=torch.eye(3),
                                    translation=s.pose[0, 3:], camera={"kind": "perspective"},
                                    center=torch.tensor([-100.0, -100.0])))
    m = DepthError()
    m.update([Reconstruction(s.sample_id, faces)], [s])
    res = m.compute()
    assert sorted(res.per_sample["mean"]) == [f"{s.sample_id}#{k}" for k in range(n)]
    assert max(res.per_sample["mean"].values()) < 1e-3
    assert res.metrics["false_positives"].value == 1


def test_unrenderable_faces_fail_with_a_reason(model):
    s = _samples(model, n=1, projection="weak_perspective")[0]
    no_pose = FaceReconstruction(s.vertices, model.triangles)
    no_scale = FaceReconstruction(s.vertices, model.triangles, rotation=torch.eye(3), camera={"kind": "weak"})
    m = DepthError()
    m.update([Reconstruction("a", [no_pose]), Reconstruction("b", [no_scale])],
             [Sample(sample_id="a", depth=s.depth, camera=s.camera), Sample(sample_id="b", depth=s.depth, camera=s.camera)])
    res = m.compute()
    assert "rotation" in res.failures["a"] and "scale" in res.failures["b"]
    off = DepthError(render_mesh=False)
    off.update([Reconstruction("a", [_oracle(s, model.triangles)])], [Sample(sample_id="a", depth=s.depth)])
    assert off.compute().failures == {"a": "no predicted depth map"}


def test_compare_depth_methods_uses_the_common_mask():
    gt = torch.full((10, 10), 500.0, dtype=torch.float64)
    gt[0] = math.nan
    a = gt + 1.0
    a[5:] = math.nan  # method a covers rows 1-4 only
    b = gt - 2.0
    b[5:] += 10.0  # method b is much worse where a has nothing
    recs = {"a": [Reconstruction("s", [FaceReconstruction(None, None, depth=a)])],
            "b": [Reconstruction("s", [FaceReconstruction(None, None, depth=b)])],
            "none": [Reconstruction("s", [FaceReconstruction(None, None)])]}
    res = compare_depth_methods(recs, [Sample(sample_id="s", depth=gt)], render_mesh=False)
    assert res["a"].per_sample["mean"]["s"] == pytest.approx(1.0)
    assert res["b"].per_sample["mean"]["s"] == pytest.approx(2.0)  # only where a is valid too
    assert res["a"].per_sample["n_pixels"]["s"] == res["b"].per_sample["n_pixels"]["s"] == 40
    assert res["b"].per_sample["coverage"]["s"] == pytest.approx(40 / 90)
    assert "s" in res["none"].failures  # no depth: a failure, not an empty common mask for the others
    alone = DepthError()
    alone.update(recs["b"], [Sample(sample_id="s", depth=gt)])
    assert alone.compute().per_sample["mean"]["s"] == pytest.approx((4 * 2 + 5 * 8) / 9)  # 2 mm on rows 1-4, 8 mm on rows 5-9
    # the same through update(..., common_masks=) keyed by unit id
    keyed = DepthError()
    keyed.update(recs["b"], [Sample(sample_id="s", depth=gt)], common_masks={"s": torch.isfinite(a)})
    assert keyed.compute().per_sample["mean"]["s"] == pytest.approx(2.0)
