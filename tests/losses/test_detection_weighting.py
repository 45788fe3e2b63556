import math

import pytest
import torch

from benchmark3dface.losses import LossWeights, draw_gaussian_heatmap, focal_heatmap_loss, weighted_sum


def _reference_heatmap(centers, radii, bidx, b, h, w):
    out = torch.zeros(b, 1, h, w, dtype=torch.float64)
    for (u, v), r, bi in zip(centers.tolist(), radii.tolist(), bidx.tolist()):
        cj, ci = min(max(math.floor(u), 0), w - 1), min(max(math.floor(v), 0), h - 1)
        s = (2 * r + 1) / 6
        for i in range(h):
            for j in range(w):
                if abs(i - ci) <= r and abs(j - cj) <= r:
                    val = math.exp(-((i - ci) ** 2 + (j - cj) ** 2) / (2 * s * s))
                    out[bi, 0, i, j] = max(out[bi, 0, i, j].item(), val)
    return out


def test_draw_gaussian_heatmap_matches_reference():
    centers = torch.tensor([[3.7, 4.2], [5.1, 5.9], [0.2, 0.3], [9.9, 7.5]], dtype=torch.float64)
    radii = torch.tensor([2.0, 1.0, 3.0, 2.0], dtype=torch.float64)
    bidx = torch.tensor([0, 0, 1, 1])
    heat = draw_gaussian_heatmap(centers, radii, bidx, 3, 8, 10)
    assert heat.shape == (3, 1, 8, 10)
    assert torch.allclose(heat, _reference_heatmap(centers, radii, bidx, 3, 8, 10))
    assert heat[0, 0, 4, 3] == 1.0 and heat[0, 0, 5, 5] == 1.0 and heat[1, 0, 0, 0] == 1.0
    assert heat[2].abs().sum() == 0  # no faces in image 2
    assert (heat == 1.0).sum() == 4
    empty = draw_gaussian_heatmap(torch.zeros(0, 2), torch.zeros(0), torch.zeros(0, dtype=torch.long), 2, 4, 4)
    assert empty.shape == (2, 1, 4, 4) and empty.sum() == 0


def test_focal_loss_hand_value():
    target = torch.tensor([1.0, 0.5, 0.0]).view(1, 1, 1, 3)
    pred = torch.tensor([0.8, 0.3, 0.1]).view(1, 1, 1, 3)
    expected = -((0.2 ** 2) * math.log(0.8)
                 + (0.5 ** 4) * (0.3 ** 2) * math.log(0.7)
                 + 1.0 * (0.1 ** 2) * math.log(0.9)) / 1.0
    assert focal_heatmap_loss(pred, target).item() == pytest.approx(expected, rel=1e-5)
    logits = torch.logit(pred)
    assert focal_heatmap_loss(logits, target, logits=True).item() == pytest.approx(expected, rel=1e-5)
    # beta = 0: plain binary focal loss of WM3DR Eq. 7 on the negatives
    expected0 = -((0.2 ** 2) * math.log(0.8) + (0.3 ** 2) * math.log(0.7) + (0.1 ** 2) * math.log(0.9))
    assert focal_heatmap_loss(pred, target, beta=0.0).item() == pytest.approx(expected0, rel=1e-5)


def test_focal_loss_minimal_at_target_peaks_and_normalised_by_faces():
    centers = torch.tensor([[4.5, 4.5], [10.5, 3.5], [6.5, 6.5]])
    radii = torch.tensor([2.0, 2.0, 2.0])
    target = draw_gaussian_heatmap(centers, radii, torch.tensor([0, 0, 1]), 2, 12, 14)
    ideal = (target == 1).float().clamp(1e-4, 1 - 1e-4)
    moved = ideal.roll(1, dims=-1)
    blurry = target.clamp(1e-4, 1 - 1e-4)
    l_ideal, l_moved, l_blurry = (focal_heatmap_loss(p, target).item() for p in (ideal, moved, blurry))
    assert l_ideal < 1e-3 and l_ideal < l_blurry < l_moved
    # gradient raises the peak and lowers the background
    logits = torch.zeros_like(target, requires_grad=True)
    focal_heatmap_loss(logits, target, logits=True).backward()
    assert logits.grad[0, 0, 4, 4] < 0 and logits.grad[0, 0, 11, 0] > 0
    assert torch.isfinite(logits.grad).all()
    # doubling the batch (same faces per image) keeps the per-face value
    twice = focal_heatmap_loss(blurry.repeat(2, 1, 1, 1), target.repeat(2, 1, 1, 1)).item()
    assert twice == pytest.approx(l_blurry, rel=1e-5)


def test_weighted_sum_skips_zero_weights_and_logs():
    a = torch.tensor(2.0, requires_grad=True)
    b = torch.tensor(3.0, requires_grad=True)
    c = torch.tensor(float("nan"))  # weight 0: skipped, so it cannot poison the total
    out = weighted_sum({"a": a, "b": b, "c": c}, {"a": 0.5, "b": 2.0, "c": 0.0, "unused": 1.0})
    assert out.total.item() == pytest.approx(7.0)
    assert set(out.terms) == {"a", "b"} and out.terms["b"].item() == 3.0
    assert out.weighted["b"].item() == 6.0 and not out.terms["a"].requires_grad
    out.total.backward()
    assert a.grad.item() == 0.5 and b.grad.item() == 2.0
    with pytest.raises(KeyError, match="no weight"):
        weighted_sum({"typo": a}, {"a": 1.0})
    with pytest.raises(KeyError, match="not computed"):
        weighted_sum({"a": a}, {"a": 1.0, "b": 2.0}, strict=True)
    with pytest.raises(ValueError, match="scalar"):
        weighted_sum({"a": torch.ones(2)}, {"a": 1.0})


def test_loss_weights_helper():
    lw = LossWeights({"photo": 1.9, "lm": 1.6e-3, "gamma": 0.0})
    assert lw.active("photo") and not lw.active("gamma") and not lw.active("absent")
    assert lw["lm"] == pytest.approx(1.6e-3)
    out = lw({"photo": torch.tensor(1.0), "lm": torch.tensor(100.0)})
    assert out.total.item() == pytest.approx(1.9 + 0.16)
    assert weighted_sum({}, {"a": 1.0}).total.item() == 0.0
