"""Per-view and per-face scoring: the shared matcher, ``iter_scored_faces`` and ``TrueError`` on
multi-view, set and multi-face samples (permuted faces, a missing face, a false positive)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmark3dface.data.sample import Sample
from benchmark3dface.methods.reconstruction import FaceReconstruction, Reconstruction
from benchmark3dface.metrics import MatchRule, TrueError, iter_scored_faces, match_faces
from benchmark3dface.metrics.synthetic import face_surface, random_similarity


def _square_lm(cx: float, cy: float, size: float, seed: int) -> torch.Tensor:
    """68 points spread over the square of side ``size`` centred on (cx, cy), the corners
    included (so the GT box is exactly that square)."""
    g = torch.Generator().manual_seed(seed)
    pts = (torch.rand(68, 2, generator=g, dtype=torch.float64) - 0.5) * size
    pts[:4] = torch.tensor([[-0.5, -0.5], [0.5, 0.5], [-0.5, 0.5], [0.5, -0.5]], dtype=torch.float64) * size
    return pts + torch.tensor([cx, cy], dtype=torch.float64)


def _meshes(n: int):
    """n different GT meshes of one topology (mm)."""
    faces = [face_surface(12, seed=k) for k in range(n)]
    return torch.stack([f.vertices for f in faces]), faces[0].triangles


def _moved(verts: torch.Tensor, seed: int) -> torch.Tensor:
    """``verts`` under a random similarity: true error 0 against ``verts``."""
    s, r, t = random_similarity(np.random.default_rng(seed))
    return s * verts @ r.T + t


# ------------------------------------------------------------------------------ match_faces
def test_hungarian_prefers_more_matches_then_shorter_distances():
    gt = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    # prediction 0 sits between both GT faces but nearer GT 0; prediction 1 only reaches GT 0:
    # the only way to match both GT faces is 0 -> GT 1 and 1 -> GT 0
    pred = torch.tensor([[4.0, 0.0], [-5.0, 0.0]])
    assert match_faces(pred, gt, 6.0) == [1, 0]
    # greedy by score lets the best-scored prediction take its nearest face first
    assert match_faces(pred, gt, 6.0, scores=np.array([0.9, 0.1])) == [0, None]
    assert match_faces(pred, gt, 6.0, scores=np.array([0.1, 0.9])) == [1, 0]
    # NaN centres never match; nothing predicted: every face missed
    assert match_faces(torch.tensor([[math.nan, 0.0]]), gt, 100.0) == [None, None]
    assert match_faces(torch.zeros(0, 2), gt, 10.0) == [None, None]


def test_iou_rule_against_centre_rule():
    gt = _square_lm(20, 20, 40, 0)[None]  # box [0, 40] x [0, 40]
    near = FaceReconstruction(None, None, landmarks2d=gt[0] + torch.tensor([10.0, 0.0]))  # IoU 1200/2000 = 0.6
    far = FaceReconstruction(None, None, landmarks2d=gt[0] + torch.tensor([20.0, 0.0]))  # IoU 800/2400 = 1/3
    iou = MatchRule("iou", min_iou=0.5)
    assert iou.match([near], gt) == [0]
    assert iou.match([far], gt) == [None]
    # centre rule: 20 px = 0.5 x sqrt(40 * 40) is still a match, 21 px is not
    centre = MatchRule("center", radius=0.5)
    assert centre.match([far], gt) == [0]
    farther = FaceReconstruction(None, None, landmarks2d=gt[0] + torch.tensor([21.0, 0.0]))
    assert centre.match([farther], gt) == [None]
    with pytest.raises(ValueError, match="match rule"):
        MatchRule("nearest")


def test_centres_are_compared_like_with_like():
    """A prediction's own ``center`` is compared with ``Sample.centers``; a landmark-only
    prediction with the GT landmark box centre."""
    gt = _square_lm(100, 100, 40, 1)[None]
    origin = torch.tensor([[100.0, 120.0]])  # e.g. the image of the face origin, 20 px lower
    with_center = FaceReconstruction(None, None, center=torch.tensor([100.0, 121.0]))
    lm_only = FaceReconstruction(None, None, landmarks2d=gt[0] + torch.tensor([0.0, 1.0]))
    rule = MatchRule(radius=0.1)  # 4 px
    assert rule.match([with_center], gt, origin) == [0]
    assert rule.match([lm_only], gt, origin) == [0]
    assert rule.match([with_center], gt, None) == [None]  # 21 px from the box centre


# -------------------------------------------------------------------------- scored units
def test_units_of_each_kind_and_per_view_camera():
    verts, tri = _meshes(3)
    cam = {"type": "weak_perspective", "scale": [1.0, 2.0, 3.0], "translation": [[1, 2], [3, 4], [5, 6]]}
    mv = Sample(kind="multiview", sample_id="t", image=torch.zeros(3, 3, 8, 8), vertices=verts,
                depth=torch.arange(3.0)[:, None, None].expand(3, 8, 8), yaw=torch.tensor([-0.5, 0.0, 0.5]),
                identity=7, camera=cam)
    views = [FaceReconstruction(verts[k], tri) for k in range(3)]
    units = iter_scored_faces(Reconstruction("t", [views[1]], per_view=views), mv)
    assert [u[0] for u in units] == ["t#v0", "t#v1", "t#v2"]
    for k, (_, face, view) in enumerate(units):
        assert face is views[k] and view.kind == "single" and view.identity == 7
        assert torch.equal(view.vertices, verts[k]) and view.image.shape == (3, 8, 8)
        assert float(view.depth[0, 0]) == k and float(view.yaw) == pytest.approx([-0.5, 0.0, 0.5][k])
        assert view.camera["scale"] == [cam["scale"][k]] and view.camera["translation"] == [cam["translation"][k]]
        assert view.meta["unit_of"] == "t" and view.meta["unit_index"] == k
    # no per-view faces: every view is scored with the aggregated face
    agg = iter_scored_faces(Reconstruction("t", [views[1]]), mv)
    assert all(face is views[1] for _, face, _ in agg)
    # too few per-view faces: the last view has none, with a reason
    short = iter_scored_faces(Reconstruction("t", [views[1]], per_view=views[:2]), mv)
    assert short[2][1] is None and "view 2" in short.missing["t#v2"]
    # one unit for the whole sample when asked (a GT shared by the views)
    whole = iter_scored_faces(Reconstruction("t", [views[1]], per_view=views), mv, views=False)
    assert [(u[0], u[1]) for u in whole] == [("t", views[1])]
    # no reconstruction
    none = iter_scored_faces(None, Sample(sample_id="s"))
    assert none[0][1] is None and none.missing == {"s": "no reconstruction"}


def _multiface_sample(verts):
    centres = [(100.0, 100.0), (300.0, 120.0), (200.0, 300.0)]
    lm = torch.stack([_square_lm(cx, cy, 60, k) for k, (cx, cy) in enumerate(centres)])
    inst = torch.full((16, 16), -1, dtype=torch.int16)
    inst[:5], inst[5:10], inst[10:] = 0, 1, 2
    depth = torch.full((16, 16), 500.0)
    return Sample(kind="multiface", sample_id="img", lm68=lm, centers=torch.tensor(centres), vertices=verts,
                  identity=torch.tensor([10, 11, 12]), depth=depth, face_mask=torch.ones(16, 16, dtype=torch.bool),
                  meta={"instance_map": inst})


def test_multiface_units_mask_depth_to_their_face():
    verts, tri = _meshes(3)
    sample = _multiface_sample(verts)
    faces = [FaceReconstruction(verts[k], tri, center=sample.centers[k]) for k in range(3)]
    units = iter_scored_faces(Reconstruction("img", faces), sample)
    for k, (uid, face, view) in enumerate(units):
        assert uid == f"img#{k}" and face is faces[k] and view.identity == 10 + k
        own = sample.meta["instance_map"] == k
        assert torch.isfinite(view.depth).eq(own).all() and view.face_mask.eq(own).all()
        assert torch.equal(view.lm68, sample.lm68[k]) and torch.equal(view.centers, sample.centers[k])
    assert units.false_positives == []


# ------------------------------------------------------------------------------- TrueError
def test_true_error_multiface_permuted_missing_and_false_positive():
    verts, tri = _meshes(3)
    sample = _multiface_sample(verts)
    c = sample.centers
    # GT faces 2 and 0 predicted (in that order, each exact up to a similarity), GT face 1 missed,
    # one spurious face far from every GT face
    faces = [FaceReconstruction(_moved(verts[2], 1), tri, center=c[2] + 3.0),
             FaceReconstruction(_moved(verts[0], 2), tri, center=c[0] - 2.0),
             FaceReconstruction(_moved(verts[1], 3), tri, center=torch.tensor([900.0, 900.0]))]
    m = TrueError()
    m.update([Reconstruction("img", faces)], [sample])
    res = m.compute()
    assert res.failures == {"img#1": "face not detected"}
    assert res.per_sample["mean"]["img#0"] < 1e-9 and res.per_sample["mean"]["img#2"] < 1e-9
    fp = res.metrics["false_positives"]
    assert fp.value == 1 and fp.n == 1
    assert "centre distance" in res.config["match"]
    # a face matched to the wrong GT mesh would score far from 0 (the meshes differ)
    swapped = TrueError()
    swapped.update([Reconstruction("img", [FaceReconstruction(verts[2], tri, center=c[0])])],
                   [_multiface_sample(verts)])
    assert swapped.compute().per_sample["mean"]["img#0"] > 0.5


def test_true_error_false_positives_counted_once_per_image():
    verts, tri = _meshes(3)
    faces = [FaceReconstruction(verts[k], tri, center=_multiface_sample(verts).centers[k]) for k in range(3)]
    faces += [FaceReconstruction(verts[0], tri, center=torch.tensor([-500.0, 0.0]))] * 2
    m = TrueError()
    for _ in range(2):  # a repeated image (DistributedSampler padding) counts once
        m.update([Reconstruction("img", faces)], [_multiface_sample(verts)])
    res = m.compute()
    assert res.metrics["false_positives"].value == 2 and res.metrics["mean"].n == 3
    # single-image boards carry no false-positive count
    single = TrueError()
    single.update([Reconstruction("s", [FaceReconstruction(verts[0], tri)])], [Sample(sample_id="s", vertices=verts[0])])
    assert "false_positives" not in single.compute().metrics


def test_true_error_per_view_for_multiview_and_sets():
    verts, tri = _meshes(3)  # per-view GT meshes differ (a set's expressions)
    for kind in ("multiview", "set"):
        sample = Sample(kind=kind, sample_id="t", image=torch.zeros(3, 3, 4, 4), vertices=verts)
        per_view = [FaceReconstruction(_moved(verts[k], k), tri) for k in range(3)]
        m = TrueError()
        m.update([Reconstruction("t", [per_view[0]], per_view=per_view)], [sample])
        res = m.compute()
        assert sorted(res.per_sample["mean"]) == ["t#v0", "t#v1", "t#v2"], kind
        assert max(res.per_sample["mean"].values()) < 1e-9, kind
        # the aggregated face alone: exact for view 0 only
        agg = TrueError()
        agg.update([Reconstruction("t", [per_view[0]])], [sample])
        got = agg.compute().per_sample["mean"]
        assert got["t#v0"] < 1e-9 and got["t#v1"] > 0.5 and got["t#v2"] > 0.5
        # a missing per-view face is a failure of that view
        short = TrueError()
        short.update([Reconstruction("t", [per_view[0]], per_view=per_view[:2])], [sample])
        assert list(short.compute().failures) == ["t#v2"]


def test_true_error_set_with_one_identity_gt_scores_the_aggregated_face():
    """The runner's set board: GT (N, 3) = the identity, scored with ``faces[0]`` as one unit."""
    verts, tri = _meshes(2)
    sample = Sample(kind="set", sample_id="t", image=torch.zeros(2, 3, 4, 4), vertices=verts[0])
    rec = Reconstruction("t", [FaceReconstruction(_moved(verts[0], 5), tri)],
                         per_view=[FaceReconstruction(verts[1], tri)] * 2)
    m = TrueError()
    m.update([rec], [sample])
    res = m.compute()
    assert list(res.per_sample["mean"]) == ["t"] and res.per_sample["mean"]["t"] < 1e-9
