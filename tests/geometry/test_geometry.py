import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from benchmark3dface.facemodel.layout import DENG_LAYOUT, CoeffLayout
from benchmark3dface.geometry.camera import PerspectiveCamera, WeakPerspectiveCamera
from benchmark3dface.geometry.lighting import sh_basis, sh_shading
from benchmark3dface.geometry.mesh import face_normals, umeyama, vertex_normals
from benchmark3dface.geometry.rotation import euler_to_matrix, matrix_to_euler


def test_euler_single_axes_hand_values():
    # yaw +90 deg turns the nose (+z) toward the viewer's right (+x)
    r = euler_to_matrix(torch.tensor([0.0, math.pi / 2, 0.0]))
    assert torch.allclose(r @ torch.tensor([0.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 0.0]), atol=1e-6)
    # pitch +90 deg: +z -> -y (nose down)
    r = euler_to_matrix(torch.tensor([math.pi / 2, 0.0, 0.0]))
    assert torch.allclose(r @ torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.0, -1.0, 0.0]), atol=1e-6)
    # roll +90 deg: +x -> +y
    r = euler_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2]))
    assert torch.allclose(r @ torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)


def test_euler_order_is_rz_ry_rx_and_roundtrip():
    g = torch.Generator().manual_seed(0)
    ang = (torch.rand(50, 3, generator=g, dtype=torch.float64) - 0.5) * torch.tensor([2.0, 2.8, 2.0], dtype=torch.float64)
    r = euler_to_matrix(ang)
    ref = Rotation.from_euler("ZYX", ang.numpy()[:, ::-1]).as_matrix()  # intrinsic Z, Y, X = Rz Ry Rx
    assert np.allclose(r.numpy(), ref, atol=1e-12)
    assert torch.allclose(matrix_to_euler(r), ang, atol=1e-9)
    assert torch.allclose(r @ r.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(50, 3, 3), atol=1e-12)


def test_perspective_camera_hand_values_and_inverse():
    cam = PerspectiveCamera.deng()
    p = cam.project(torch.tensor([[0.0, 0.0, 0.0], [10.0, 5.0, 0.0], [10.0, 5.0, 100.0]]))
    assert torch.allclose(p[0], torch.tensor([112.0, 112.0, 1000.0]))
    assert torch.allclose(p[1], torch.tensor([112 + 10.15, 112 - 5.075, 1000.0]))
    assert torch.allclose(p[2], torch.tensor([112 + 1015 * 10 / 900, 112 - 1015 * 5 / 900, 900.0]))
    back = cam.unproject(p[:, :2], p[:, 2])
    assert torch.allclose(back, torch.tensor([[0.0, 0.0, 0.0], [10.0, 5.0, 0.0], [10.0, 5.0, 100.0]]), atol=1e-4)
    small = PerspectiveCamera.deng(112)
    assert small.focal == pytest.approx(507.5) and small.cx == 56
    # same field of view: a point projects to the same relative position
    q = small.project(torch.tensor([10.0, 5.0, 0.0]))
    assert torch.allclose(q[:2] / 112, p[1, :2] / 224)


def test_ray_directions_hit_projected_points():
    cam = PerspectiveCamera.deng(32)
    d = cam.ray_directions()
    # the ray through pixel (row 3, col 20) hits depth 1000 at a point that projects back to its centre
    origin = torch.tensor([0.0, 0.0, cam.distance])
    t = 1000.0 / -d[3, 20, 2]
    uvz = cam.project(origin + t * d[3, 20])
    assert torch.allclose(uvz[:2], torch.tensor([20.5, 3.5]), atol=1e-4)


def test_global_camera_translation_from_centre():
    cam = PerspectiveCamera.global_image(512, 512)
    t = cam.translation_from_center(torch.tensor([300.0, 200.0]), torch.tensor([0.0, 0.0, 1500.0]))
    # the face origin must project exactly onto the cell centre
    uv = cam.project(t)[:2]
    assert torch.allclose(uv, torch.tensor([300.0, 200.0]), atol=1e-3)


def test_weak_perspective():
    cam = WeakPerspectiveCamera(200, 200)
    p = cam.project(torch.tensor([[[1.0, 2.0, 3.0]]]), torch.tensor([2.0]), torch.tensor([[5.0, -4.0]]))
    assert torch.allclose(p, torch.tensor([[[100 + 2 + 5, 100 - (4 - 4), -6.0]]]))


def test_sh_hand_values():
    # zero coefficients + Deng's 0.8 DC: irradiance 0.8 * a0 c0 = 0.8 * pi / sqrt(4 pi)
    n = torch.tensor([[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]])
    s = sh_shading(n, torch.zeros(1, 27))
    assert torch.allclose(s, torch.full_like(s, 0.8 * math.pi / math.sqrt(4 * math.pi)))
    y = sh_basis(torch.tensor([0.0, 0.0, 1.0]))
    a1c1 = (2 * math.pi / math.sqrt(3)) * (math.sqrt(3) / math.sqrt(4 * math.pi))
    a2c2 = (2 * math.pi / math.sqrt(8)) * (3 * math.sqrt(5) / math.sqrt(12 * math.pi))
    assert y[2].item() == pytest.approx(a1c1)
    assert y[6].item() == pytest.approx(a2c2 * 0.5 / math.sqrt(3) * 2)
    assert y[[1, 3, 4, 5, 7, 8]].abs().max().item() == 0
    # red-only z light brightens red on a +z normal only
    gamma = torch.zeros(1, 27)
    gamma[0, 2] = 1.0
    s = sh_shading(n, gamma)
    assert s[0, 0, 0] - s[0, 0, 1] == pytest.approx(a1c1, rel=1e-5)
    assert s[0, 1, 0] == pytest.approx(s[0, 1, 1].item())


def test_normals_of_a_pyramid():
    v = torch.tensor([[0.0, 0.0, 1.0], [-1.0, -1.0, 0.0], [1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [-1.0, 1.0, 0.0]])
    f = torch.tensor([[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 1]])
    fn = face_normals(v, f)
    assert torch.allclose(fn[0], torch.tensor([0.0, -1.0, 1.0]) / math.sqrt(2), atol=1e-6)
    vn = vertex_normals(v[None], f)[0]
    assert torch.allclose(vn[0], torch.tensor([0.0, 0.0, 1.0]), atol=1e-6)
    assert torch.allclose(vn.norm(dim=-1), torch.ones(5))


def test_umeyama_recovers_similarity():
    g = torch.Generator().manual_seed(1)
    src = torch.randn(4, 30, 3, generator=g, dtype=torch.float64)
    rot = euler_to_matrix(torch.randn(4, 3, generator=g, dtype=torch.float64))
    s = torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=torch.float64)
    t = torch.randn(4, 3, generator=g, dtype=torch.float64)
    dst = s[:, None, None] * src @ rot.transpose(-1, -2) + t[:, None]
    s2, r2, t2 = umeyama(src, dst)
    assert torch.allclose(s2, s) and torch.allclose(r2, rot) and torch.allclose(t2, t)


def test_layout():
    assert DENG_LAYOUT.size == 257
    assert DENG_LAYOUT.slice("sh") == slice(227, 254)
    assert DENG_LAYOUT.slice("trans") == slice(254, 257)
    c = torch.arange(257.0)[None]
    parts = DENG_LAYOUT.split(c)
    assert parts["angles"][0].tolist() == [224.0, 225.0, 226.0]
    assert torch.equal(DENG_LAYOUT.join(parts), c)
    small = CoeffLayout(id=10, exp=5, tex=0)
    assert small.size == 10 + 5 + 3 + 27 + 3
    with pytest.raises(ValueError, match="needs 48"):
        small.split(torch.zeros(3, 47))


def test_fit_pose_recovers_pose_from_landmarks():
    from benchmark3dface.geometry.pose import fit_pose_to_landmarks

    g = torch.Generator().manual_seed(3)
    pts = torch.randn(5, 68, 3, generator=g) * torch.tensor([40.0, 50.0, 20.0])
    ang = torch.tensor([[0.1, 0.3, -0.05], [-0.2, -1.0, 0.1], [0.0, 1.2, 0.0], [0.05, 0.0, 0.2], [0.3, -0.5, -0.2]])
    t = torch.tensor([[5.0, -3.0, 20.0], [-10.0, 4.0, -50.0], [0.0, 0.0, 0.0], [2.0, 2.0, 100.0], [8.0, -8.0, -20.0]])
    cam = PerspectiveCamera.deng()
    obs = cam.project(pts @ euler_to_matrix(ang).transpose(-1, -2) + t[:, None])[..., :2]
    a, tt, rms = fit_pose_to_landmarks(pts, obs, cam)
    assert rms.max() < 0.05
    assert torch.allclose(a, ang, atol=2e-3)
    assert torch.allclose(tt, t, atol=0.5)


def test_similarity_from_covariance_fixes_reflections_and_rigid_mode():
    from benchmark3dface.geometry.mesh import similarity_from_covariance

    g = torch.Generator().manual_seed(3)
    src = torch.randn(40, 3, generator=g, dtype=torch.float64)
    mirrored = src * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)  # no rotation maps src onto it
    s, r, t = umeyama(src, mirrored)
    assert torch.det(r) == pytest.approx(1.0, abs=1e-9)
    assert torch.allclose(r @ r.T, torch.eye(3, dtype=torch.float64), atol=1e-9)
    # rigid mode: a scaled copy keeps s = 1 and the exact rotation (here the identity)
    s1, r1, _ = umeyama(src, 2.0 * src, with_scale=False)
    assert float(s1) == 1.0 and torch.allclose(r1, torch.eye(3, dtype=torch.float64), atol=1e-9)
    # direct use from moments: cov = E[d s^T] of centred points with d = 3 s gives s = 3, R = I
    xs = src - src.mean(0)
    cov = (3.0 * xs).T @ xs / len(xs)
    s3, r3, t3 = similarity_from_covariance(cov, (xs ** 2).sum(1).mean(), src.mean(0), 3.0 * src.mean(0) + 1.0)
    assert float(s3) == pytest.approx(3.0) and torch.allclose(r3, torch.eye(3, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(t3, torch.ones(3, dtype=torch.float64))
