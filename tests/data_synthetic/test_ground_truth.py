"""Ground-truth consistency of synthetic samples: landmarks, depth, masks, centres, flags."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmark3dface.facemodel.regions import NOSE, SKIN
from benchmark3dface.geometry.camera import PerspectiveCamera


def _camera(sample) -> PerspectiveCamera:
    c = sample.camera
    assert c["type"] == "perspective"
    return PerspectiveCamera(c["focal"], c["cx"], c["cy"], c["distance"], c["width"], c["height"])


@pytest.mark.parametrize("mode,size", [("single", 64), ("set", 48), ("multiview", 48), ("multiface", 160)])
def test_projected_3d_landmarks_equal_2d_landmarks(make_dataset, mode, size):
    ds = make_dataset(mode=mode, image_size=size, set_size=3)
    for i in range(3):
        s = ds[i]
        cam = _camera(s)
        lm3d = s.vertices_cam[..., s.landmark_indices, :]
        proj = cam.project(lm3d.double())
        assert (proj[..., :2] - s.lm68.double()).abs().max() < 0.01
        # lm68_3d = (u, v, relative depth in px, larger = nearer), like AFLW2000-3D's pt3d
        zref = cam.distance - s.pose[..., 5:6].double()
        zpx = (zref - proj[..., 2]) * cam.focal / zref
        assert (zpx - s.lm68_3d[..., 2].double()).abs().max() < 1e-3
        assert torch.equal(s.lm68_3d[..., :2], s.lm68)
        # the model-frame mesh posed with the GT pose is the camera-frame mesh
        from benchmark3dface.geometry.rotation import euler_to_matrix
        pose = s.pose
        rot = euler_to_matrix(pose[..., :3].double())
        world = s.vertices.double() @ rot.transpose(-1, -2) + pose[..., None, 3:].double()
        assert (world - s.vertices_cam.double()).abs().max() < 1e-2


def test_weak_perspective_grayscale(make_dataset):
    ds = make_dataset(preset="richardson", image_size=80)
    for i in range(3):
        s = ds[i]
        assert s.camera["type"] == "weak_perspective"
        assert torch.equal(s.image[0], s.image[1]) and torch.equal(s.image[1], s.image[2])
        scale, (tx, ty) = s.camera["scale"][0], s.camera["translation"][0]
        v = s.vertices_cam[s.landmark_indices].double()  # R v (no translation), mm
        u = 40 + scale * v[:, 0] + tx
        vv = 40 - (scale * v[:, 1] + ty)
        assert (torch.stack([u, vv], -1) - s.lm68.double()).abs().max() < 0.01
        assert (s.lm68_3d[:, 2].double() - scale * v[:, 2]).abs().max() < 1e-3
        # depth map = -z_world (mm) for weak perspective
        col, row = s.lm68[s.lm68_visible].floor().long().unbind(-1)
        zv = -v[s.lm68_visible, 2]
        assert (s.depth[row, col].double() - zv).abs().max() < 10.0


def _interior(mask: torch.Tensor) -> torch.Tensor:
    m = mask.clone()
    for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        m &= torch.roll(mask, (dr, dc), (0, 1))
    m[0, :] = m[-1, :] = m[:, 0] = m[:, -1] = False
    return m


def test_depth_map_matches_raycast_of_gt_mesh(make_dataset, tiny_model):
    pytest.importorskip("open3d")
    from benchmark3dface.render.reference import RaycastDepth, pinhole_rays

    ds = make_dataset(image_size=72, occlusion_prob=0.0)
    checked = 0
    for i in range(4):
        s = ds[i]
        cam = _camera(s)
        rays, dz = pinhole_rays(72, 72, cam.focal, cam.cx, cam.cy, cam.distance)
        ref = RaycastDepth(s.vertices_cam, tiny_model.triangles).depth(rays, dz)
        inner = _interior(s.face_mask)
        d = s.depth.double().numpy()
        assert np.isnan(d[~s.face_mask.numpy()]).all()
        assert np.isfinite(d[s.face_mask.numpy()]).all()
        sel = inner.numpy() & np.isfinite(ref)
        assert sel.sum() > 100
        err = np.abs(d[sel] - ref[sel])
        assert np.quantile(err, 0.99) < 0.05 and np.median(err) < 0.01
        # unprojecting the depth map gives points on the GT surface (camera frame, mm)
        checked += 1
    assert checked == 4


def test_masks_parse_and_skin_are_consistent(make_dataset):
    ds = make_dataset(image_size=64, occlusion_prob=0.7)
    for i in range(6):
        s = ds[i]
        visible = s.face_mask & ~s.occlusion_mask
        assert ((s.parse > 0) <= visible).all()
        assert (s.occlusion_mask <= s.face_mask).all()
        skin = (s.parse == SKIN) | (s.parse == NOSE)
        assert torch.equal(s.skin_mask > 0.5, skin)
        assert s.parse.max() <= 9 and s.parse.min() >= 0


def test_occlusion_flag_agrees_with_mask(make_dataset):
    ds = make_dataset(mode="set", set_size=4, image_size=48, occlusion_prob=0.5)
    seen = set()
    for i in range(6):
        s = ds[i]
        flags = s.occlusion_mask.flatten(1).any(1)
        assert torch.equal(s.occluded, flags)
        seen.update(flags.tolist())
    assert seen == {True, False}
    none = make_dataset(image_size=48, occlusion_prob=0.0)
    for i in range(3):
        s = none[i]
        assert s.occluded is False and not s.occlusion_mask.any()


def test_multiface_centres_lie_on_their_faces(make_dataset):
    ds = make_dataset(mode="multiface", image_size=192, min_faces=2, max_faces=6, occlusion_prob=0.5)
    faces = 0
    for i in range(5):
        s = ds[i]
        f = s.centers.shape[0]
        assert s.lm68.shape == (f, 68, 2) and s.coeffs.shape[0] == f and s.identity.shape == (f,)
        inst = s.meta["instance_map"].long()
        assert torch.equal(inst >= 0, s.face_mask)
        col, row = s.centers.floor().long().unbind(-1)
        assert (inst[row, col] == torch.arange(f)).all()
        for k in range(f):
            occ = (s.occlusion_mask & (inst == k)).any()
            assert bool(occ) == bool(s.occluded[k])
        faces += f
    assert faces >= 10


def test_visible_landmarks_lie_on_their_face(make_dataset):
    ds = make_dataset(mode="set", set_size=4, image_size=64, occlusion_prob=0.3)
    for i in range(3):
        s = ds[i]
        for v in range(4):
            lm = s.lm68[v][s.lm68_visible[v]]
            col, row = lm.floor().long().unbind(-1)
            assert s.face_mask[v][row, col].all()
            assert not s.occlusion_mask[v][row, col].any()
    frontal = make_dataset(image_size=64, yaw_max=5, pitch_max=5, roll_max=5, occlusion_prob=0.0)
    assert min(int(frontal[i].lm68_visible.sum()) for i in range(3)) >= 60


def test_yaw_distribution_covers_90_degrees(make_dataset):
    ds = make_dataset(size=160, image_size=24, occlusion_prob=0.0, backgrounds=["plain"],
                      blur_prob=0.0, jpeg_prob=0.0)
    yaw = torch.stack([ds[i].yaw for i in range(160)]) * 180 / math.pi
    assert yaw.abs().max() <= 90.0 + 1e-4
    assert yaw.min() < -75 and yaw.max() > 75
    assert (yaw < -30).sum() > 20 and (yaw > 30).sum() > 20 and (yaw.abs() < 30).sum() > 20


def test_sets_and_multiview_share_identity(make_dataset, tiny_model):
    lay = tiny_model.layout
    ds = make_dataset(mode="set", set_size=4, image_size=32)
    s = ds[0]
    ident = s.coeffs[:, lay.slice("id")]
    assert (ident == ident[0]).all()
    assert not (s.coeffs[:, lay.slice("exp")] == s.coeffs[0, lay.slice("exp")]).all()
    mv = make_dataset(mode="multiview", image_size=32, view_yaw=20.0)
    for i in range(2):
        s = mv[i]
        c = s.coeffs
        for g in ("id", "exp", "tex", "sh"):
            assert (c[:, lay.slice(g)] == c[0, lay.slice(g)]).all(), g
        assert torch.allclose(s.yaw * 180 / math.pi, torch.tensor([-20.0, 0.0, 20.0]), atol=1e-4)
        assert torch.equal(s.pose[:, 0], s.pose[0:1, 0].expand(3))  # shared pitch
    rnd = make_dataset(mode="multiview", image_size=32, view_yaw=None)
    yaws = {round(float(rnd[i].yaw[2]) * 180 / math.pi, 3) for i in range(4)}
    assert len(yaws) == 4 and all(10 <= y <= 45 for y in yaws)
