import math

import pytest
import torch

from benchmark3dface.losses import (
    dfmvr_weight_map,
    dilate_mask,
    gradient_difference_loss,
    parse_cross_entropy,
    photometric_loss,
    skin_attention,
)


def test_skin_attention_threshold():
    p = torch.tensor([0.0, 0.3, 0.5, 0.51, 0.9])
    assert torch.allclose(skin_attention(p), torch.tensor([0.0, 0.3, 0.5, 1.0, 1.0]))


def test_photometric_constant_offset_is_offset_norm():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 3, 5, 6, generator=g)
    offset = torch.tensor([0.3, -0.4, 0.12]).view(1, 3, 1, 1)
    weight = torch.rand(2, 5, 6, generator=g)
    for red in ("batch", "per_image"):
        val = photometric_loss(img + offset, img, weight, reduction=red, eps=0.0)
        assert val.item() == pytest.approx(math.sqrt(0.09 + 0.16 + 0.0144), rel=1e-6)


def test_photometric_weights_select_pixels_and_pool_over_batch():
    img = torch.zeros(2, 3, 2, 2)
    pred = img.clone()
    pred[0, 0, 0, 0] = 1.0  # error 1 at one pixel of image 0
    pred[1, :, 1, 1] = 2.0  # error 2*sqrt(3) at one pixel of image 1
    w = torch.zeros(2, 2, 2)
    w[0, 0, 0] = 1.0
    w[0, 1, 0] = 1.0  # a correct pixel with weight 1
    w[1, 1, 1] = 2.0
    e1, e2 = 1.0, 2 * math.sqrt(3.0)
    batch = photometric_loss(pred, img, w, eps=0.0)
    assert batch.item() == pytest.approx((e1 + 2 * e2) / 4.0, rel=1e-6)
    per = photometric_loss(pred, img, w.unsqueeze(1), reduction="none", eps=0.0)
    assert torch.allclose(per, torch.tensor([e1 / 2, e2]), atol=1e-6)
    # a pixel with zero weight does not matter
    pred2 = pred.clone()
    pred2[0, :, 1, 1] = 5.0
    assert photometric_loss(pred2, img, w, eps=0.0).item() == pytest.approx(batch.item())


def test_photometric_gradient_finite_at_zero_error():
    img = torch.rand(1, 3, 4, 4)
    pred = img.clone().requires_grad_(True)
    photometric_loss(pred, img).backward()
    assert torch.isfinite(pred.grad).all()


def test_photometric_shape_errors():
    with pytest.raises(ValueError, match="same shape"):
        photometric_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))
    with pytest.raises(ValueError, match="weight"):
        photometric_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 3))


def test_gdl_hand_computed():
    # horizontal ramp prediction vs flat target: |grad_x| = 1 on 2 rows x 2 steps, |grad_y| = 0
    pred = torch.tensor([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]]).view(1, 1, 2, 3)
    tgt = torch.zeros_like(pred)
    # 4 horizontal differences of 1, 3 vertical of 0 -> 4 / 7
    assert gradient_difference_loss(pred, tgt).item() == pytest.approx(4 / 7)
    assert gradient_difference_loss(pred, tgt, alpha=2.0).item() == pytest.approx(4 / 7)
    # Mathieu form compares magnitudes: a mirrored ramp has the same |grad| -> 0; signed -> 2 per step
    assert gradient_difference_loss(pred, pred.flip(-1)).item() == pytest.approx(0.0)
    assert gradient_difference_loss(pred, pred.flip(-1), signed=True).item() == pytest.approx(8 / 7)
    # constant offset between images -> 0
    assert gradient_difference_loss(pred + 3.0, pred).item() == pytest.approx(0.0)


def test_gdl_mask_drops_differences_touching_outside():
    pred = torch.zeros(1, 1, 3, 3)
    pred[0, 0, 1, 1] = 1.0  # a spike
    tgt = torch.zeros_like(pred)
    mask = torch.ones(1, 3, 3, dtype=torch.bool)
    mask[0, 1, 1] = False  # the spike is masked out
    assert gradient_difference_loss(pred, tgt, mask).item() == 0.0
    assert gradient_difference_loss(pred, tgt).item() > 0.0


def test_gdl_gradients():
    pred = torch.rand(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    tgt = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    gradient_difference_loss(pred, tgt, alpha=2.0).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_dilate_mask_radius():
    m = torch.zeros(1, 9, 9, dtype=torch.bool)
    m[0, 4, 4] = True
    d = dilate_mask(m, 2)
    assert d.sum().item() == 25 and d[0, 2, 2] and d[0, 6, 6] and not d[0, 1, 4]


def test_dfmvr_weight_map_levels_and_dilation():
    parse = torch.zeros(1, 9, 12, dtype=torch.long)
    parse[0, 1:8, 1:11] = 1  # skin
    parse[0, 4, 5] = 6  # nose pixel
    parse[0, 7, 2] = 8  # lower-lip pixel on the face border
    wmap = dfmvr_weight_map(parse, dilation_px=2, levels=(1.0, 0.5, 0.25))
    assert wmap[0, 0, 0] == 0.25  # background
    assert wmap[0, 4, 5] == 1.0  # the feature
    assert wmap[0, 2, 7] == 1.0  # 2 px away (Chebyshev): dilated feature
    assert wmap[0, 4, 8] == 0.5  # 3 px away: rest of face
    assert wmap[0, 8, 2] == 0.25  # within the dilation radius but background: stays background
    assert wmap[0, 6, 3] == 1.0
    assert set(wmap.unique().tolist()) == {0.25, 0.5, 1.0}


def test_parse_cross_entropy_ce_and_bce():
    target = torch.tensor([[[0, 1], [2, 1]]])
    probs = torch.full((1, 3, 2, 2), 0.25)
    probs.scatter_(1, target[:, None], 0.5)  # p_true = 0.5 everywhere
    ce = parse_cross_entropy(probs, target, inputs="probs")
    assert ce.item() == pytest.approx(math.log(2.0), rel=1e-5)
    bce = parse_cross_entropy(probs, target, inputs="probs", mode="bce")
    assert bce.item() == pytest.approx(-(math.log(0.5) + 2 * math.log(0.75)), rel=1e-5)
    # logits path agrees with torch's cross-entropy
    logits = torch.randn(2, 4, 3, 3)
    tgt = torch.randint(0, 4, (2, 3, 3))
    ref = torch.nn.functional.cross_entropy(logits, tgt)
    assert parse_cross_entropy(logits, tgt).item() == pytest.approx(ref.item(), rel=1e-5)
    # masking averages over the selected pixels only
    mask = torch.zeros(2, 3, 3, dtype=torch.bool)
    mask[1, 2, 0] = True
    one = torch.nn.functional.cross_entropy(logits[1:, :, 2, 0], tgt[1:, 2, 0])
    assert parse_cross_entropy(logits, tgt, mask).item() == pytest.approx(one.item(), rel=1e-5)


def test_parse_cross_entropy_minimal_at_target():
    tgt = torch.randint(0, 3, (1, 4, 4))
    good = torch.nn.functional.one_hot(tgt, 3).permute(0, 3, 1, 2).float() * 20
    bad = good.roll(1, dims=1)
    assert parse_cross_entropy(good, tgt) < 1e-6 < parse_cross_entropy(bad, tgt)
    logits = torch.zeros(1, 3, 4, 4, requires_grad=True)
    parse_cross_entropy(logits, tgt, mode="bce").backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
