import numpy as np
import pytest
import torch

from benchmark3dface.facemodel import CoeffLayout, MorphableModel, lm68_to_lm5
from benchmark3dface.facemodel.regions import L_EYE, MOUTH, NOSE, R_EYE, SKIN
from benchmark3dface.geometry.camera import PerspectiveCamera


@pytest.fixture(scope="module")
def ict(shared_data):
    d = np.load(shared_data("ict_face_model", "ict_face_light.npz"))
    neutral = d["neutral"] - d["neutral"].mean(0)
    return d, MorphableModel("ict-test", neutral, d["identity_modes"][:20], d["expression_modes"][:10],
                             d["triangles"], d["landmarks68"])


def test_decode_zero_is_mean_face_and_pose(ict):
    d, m = ict
    c = m.layout.zeros(2)
    c[1, m.layout.slice("trans")] = torch.tensor([10.0, -5.0, 20.0])
    g = m.decode(c, PerspectiveCamera.deng())
    assert torch.allclose(g.vertices[0], m.mean_shape)
    assert torch.allclose(g.world[1], m.mean_shape + torch.tensor([10.0, -5.0, 20.0]))
    # landmarks2d are the projected landmark vertices
    assert torch.allclose(g.landmarks2d, g.projected[:, m.landmarks68, :2])
    # identity coefficient 3 moves vertices by basis 3
    c2 = m.layout.zeros(1)
    c2[0, 3] = 2.0
    v = m.decode(c2).vertices[0]
    assert torch.allclose(v - m.mean_shape, 2.0 * torch.as_tensor(d["identity_modes"][3]), atol=1e-4)


def test_regions_are_anatomical(ict):
    _, m = ict
    lm = m.mean_shape[m.landmarks68]
    reg = m.regions
    nose_tip = int(m.landmarks68[30])
    assert reg[nose_tip] == NOSE
    for r in (L_EYE, R_EYE, NOSE, MOUTH):
        assert (reg == r).sum() > 10
    # left eye region lies on the viewer's left (smaller x) of the right eye region
    assert m.mean_shape[reg == L_EYE, 0].mean() < m.mean_shape[reg == R_EYE, 0].mean()
    # the forehead (well above the brows) is skin
    top = m.mean_shape[:, 1] > lm[19, 1] + 25
    assert (reg[top] == SKIN).float().mean() > 0.95


def test_symmetry_map_mirrors(ict):
    _, m = ict
    v = m.mean_shape
    mirrored = v[m.symmetry] * torch.tensor([-1.0, 1.0, 1.0])
    # the ICT mesh is close to symmetric: most vertices have a mirror partner within 2 mm
    assert ((mirrored - v).norm(dim=-1) < 2.0).float().mean() > 0.9


def test_five_points_and_layout_errors(ict):
    _, m = ict
    lm = torch.arange(68 * 2, dtype=torch.float32).reshape(68, 2)
    five = lm68_to_lm5(lm)
    assert torch.equal(five[2], lm[30]) and torch.equal(five[0], (lm[36] + lm[39]) / 2)
    with pytest.raises(ValueError, match="layout asks for 90 id"):
        MorphableModel("x", m.mean_shape.numpy(), m.id_basis.numpy(), m.exp_basis.numpy(),
                       m.triangles.numpy(), m.landmarks68.numpy(), layout=CoeffLayout(id=90))
    with pytest.raises(ValueError, match="68 landmark"):
        MorphableModel("x", m.mean_shape.numpy(), m.id_basis.numpy(), m.exp_basis.numpy(),
                       m.triangles.numpy(), m.landmarks68.numpy()[:60])
