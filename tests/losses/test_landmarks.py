import math

import pytest
import torch

from benchmark3dface.geometry.rotation import euler_to_matrix
from benchmark3dface.losses import (
    DENG_HIGH_WEIGHT_INDICES,
    GDL_PAIRS_68,
    aligned_landmark3d_loss,
    landmark_gdl_loss,
    landmark_loss,
    landmark_weights,
)


def test_landmark_weights_indices():
    w = landmark_weights()
    assert w.shape == (68,)
    high = set(torch.nonzero(w == 20).flatten().tolist())
    assert high == {28, 29, 30, 60, 61, 62, 63, 64, 65, 66, 67}
    assert (w[[0, 27, 31, 36, 48, 59]] == 1).all()
    with pytest.raises(ValueError):
        landmark_weights(10, high_indices=(12,))


@pytest.mark.parametrize("idx,weight", [(0, 1.0), (29, 20.0), (63, 20.0), (45, 1.0)])
def test_landmark_loss_applies_weight_to_the_right_point(idx, weight):
    target = torch.rand(2, 68, 2) * 224
    pred = target.clone()
    pred[1, idx] += torch.tensor([3.0, 4.0])  # distance 5
    val = landmark_loss(pred, target, landmark_weights())
    assert val.item() == pytest.approx(weight * 25.0 / (2 * 68), rel=1e-5)
    assert landmark_loss(pred, target, landmark_weights(), squared=False).item() == pytest.approx(
        weight * 5.0 / (2 * 68), rel=1e-3)
    assert landmark_loss(pred, target, landmark_weights(), reduction="sum").item() == pytest.approx(
        weight * 25.0 / 2, rel=1e-5)


def test_landmark_loss_visibility_and_gradients():
    target = torch.zeros(1, 4, 2)
    pred = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [10.0, 0.0], [0.0, 0.0]]], requires_grad=True)
    vis = torch.tensor([[True, True, False, True]])
    val = landmark_loss(pred, target, visible=vis)
    assert val.item() == pytest.approx((1 + 4) / 3)
    val.backward()
    assert pred.grad[0, 2].abs().sum() == 0 and pred.grad[0, 1].abs().sum() > 0
    with pytest.raises(ValueError, match="weights"):
        landmark_loss(pred, target, torch.ones(5))


def test_landmark_gdl_translation_invariant_and_sensitive_to_opening():
    g = torch.Generator().manual_seed(1)
    target = torch.rand(3, 68, 2, generator=g) * 200
    assert landmark_gdl_loss(target + torch.tensor([5.0, -7.0]), target).item() == pytest.approx(0.0, abs=1e-8)
    pred = target.clone()
    pred[:, 62, 1] -= 2.0  # open the mouth: upper inner lip point moves up by 2 px
    npairs = len(GDL_PAIRS_68)
    n_touch = sum(1 for a, b in GDL_PAIRS_68 if 62 in (a, b))
    assert landmark_gdl_loss(pred, target).item() == pytest.approx(n_touch * 4.0 / npairs, rel=1e-4)
    assert (62, 66) in GDL_PAIRS_68 and (37, 41) in GDL_PAIRS_68


def test_landmark_gdl_visibility():
    target = torch.zeros(1, 3, 2)
    pred = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [5.0, 0.0]]])
    pairs = [(0, 1), (1, 2)]
    assert landmark_gdl_loss(pred, target, pairs).item() == pytest.approx((1 + 16) / 2)
    vis = torch.tensor([[True, True, False]])
    assert landmark_gdl_loss(pred, target, pairs, vis).item() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        landmark_gdl_loss(pred, target, [(0, 3)])


def _similarity(x, s, angles, t):
    r = euler_to_matrix(torch.tensor(angles, dtype=x.dtype))
    return s * x @ r.T + torch.tensor(t, dtype=x.dtype)


def test_aligned_landmark3d_loss_invariant_to_similarity():
    g = torch.Generator().manual_seed(2)
    target = torch.randn(2, 12, 3, generator=g, dtype=torch.float64) * 30
    pred = _similarity(target, 0.7, [0.1, -0.3, 0.2], [5.0, -2.0, 40.0])
    assert aligned_landmark3d_loss(pred, target, align_indices=None).item() < 1e-2
    assert aligned_landmark3d_loss(pred, target, align_indices=(0, 2, 4, 6, 8, 10, 11)).item() < 1e-2
    # a local error on a non-alignment point shows up as its distance / K
    pred2 = pred.clone()
    pred2[:, 5] += torch.tensor([0.0, 0.0, 0.7 * 3.0], dtype=torch.float64)  # 3 mm after undoing s
    val = aligned_landmark3d_loss(pred2, target, align_indices=(0, 2, 4, 6, 8, 10, 11))
    assert val.item() == pytest.approx(3.0 / 12, rel=1e-3)


def test_aligned_landmark3d_loss_gradients():
    g = torch.Generator().manual_seed(3)
    target = torch.randn(2, 10, 3, generator=g, dtype=torch.float64) * 30
    for detach in (False, True):
        pred = (target + torch.randn(2, 10, 3, generator=g, dtype=torch.float64)).requires_grad_(True)
        aligned_landmark3d_loss(pred, target, align_indices=(0, 1, 2, 3, 4, 5, 6),
                                detach_alignment=detach).backward()
        assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    assert math.isclose(len(DENG_HIGH_WEIGHT_INDICES), 11)
