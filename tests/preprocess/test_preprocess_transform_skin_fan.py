"""Scale+translation warps, least-squares fit, skin model, and FAN without weights (no network)."""

from __future__ import annotations

import socket

import pytest
import torch
from torch import nn

from benchmark3dface.data.preprocess import (DEFAULT_SKIN_MODEL, FANLandmarker, MissingWeightsError,
                                             ScaleTranslation, align_face, find_fan_weights,
                                             fit_scale_translation, fit_skin_model, skin_attention,
                                             skin_mask, skin_probability, warp_scale_translation)
from benchmark3dface.data.preprocess.landmarks68 import decode_heatmaps, fan_crop_transform
from benchmark3dface.data.preprocess.skin import face_region_from_lm5, rgb_to_cbcr


def _blob(h, w, u, v, sigma=2.0):
    y, x = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    return torch.exp(-((x - u) ** 2 + (y - v) ** 2) / (2 * sigma ** 2))


def _centroid(img):
    h, w = img.shape
    y, x = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    m = img.clamp(min=0)
    return torch.stack([(m * x).sum() / m.sum(), (m * y).sum() / m.sum()])


def test_scale_translation_algebra():
    a = ScaleTranslation(2.0, (3.0, -1.0))
    b = ScaleTranslation(0.5, (1.0, 4.0))
    p = torch.tensor([[10.0, 20.0], [-3.0, 7.5]])
    torch.testing.assert_close(a.apply_inverse(a.apply(p)), p)
    torch.testing.assert_close(a.then(b).apply(p), b.apply(a.apply(p)))
    torch.testing.assert_close(a.matrix() @ torch.tensor([10.0, 20.0, 1.0], dtype=torch.float64),
                               torch.tensor([23.0, 39.0, 1.0], dtype=torch.float64))
    assert ScaleTranslation.identity().apply(p).equal(p)


@pytest.mark.parametrize("scale", [0.37, 1.0, 2.6])
def test_warp_follows_the_continuous_pixel_convention(scale):
    u, v = 61.3, 44.8
    img = _blob(90, 120, u, v, sigma=3.0)[None]
    tr = ScaleTranslation(scale, (-scale * u + 40.2, -scale * v + 35.7))  # blob -> (40.2, 35.7)
    out = warp_scale_translation(img, tr, (80, 90), "bilinear")[0]
    c = _centroid(out)
    torch.testing.assert_close(c, torch.tensor([40.2, 35.7]), atol=0.05, rtol=0)
    # destination outside the source is filled
    far = warp_scale_translation(img, ScaleTranslation(1.0, (500.0, 0.0)), (10, 10), fill=0.25)
    assert torch.allclose(far, torch.full_like(far, 0.25))


def test_fit_scale_translation_recovers_and_batches():
    g = torch.Generator().manual_seed(0)
    src = torch.rand(4, 5, 2, generator=g) * 300
    s_true = torch.tensor([0.5, 1.0, 2.0, 0.8])
    t_true = torch.rand(4, 2, generator=g) * 50
    dst = s_true[:, None, None] * src + t_true[:, None]
    s, t = fit_scale_translation(src, dst)
    torch.testing.assert_close(s, s_true.double(), atol=1e-6, rtol=0)
    torch.testing.assert_close(t, t_true.double(), atol=1e-4, rtol=0)
    # weights: a point with zero weight does not influence the fit
    noisy = dst[0].clone()
    noisy[4] += 100
    s0, t0 = fit_scale_translation(src[0], noisy, torch.tensor([1.0, 1, 1, 1, 0]))
    assert float(s0) == pytest.approx(0.5) and torch.allclose(t0, t_true[0].double(), atol=1e-4)
    with pytest.raises(ValueError, match="degenerate"):
        fit_scale_translation(torch.ones(5, 2), dst[0])
    with pytest.raises(ValueError, match="non-positive"):
        align_face(torch.zeros(3, 50, 50), -src[0], dst[0], 32)  # upside-down points


def test_skin_probability_on_colours():
    colours = torch.tensor([[0.75, 0.60, 0.55], [0.45, 0.30, 0.22],  # light and dark skin tones
                            [0.1, 0.3, 0.9], [0.1, 0.8, 0.2], [0.5, 0.5, 0.5]])  # blue, green, gray
    img = colours[:, :, None, None]  # (5, 3, 1, 1): batch of 1-pixel images
    p = skin_probability(img)[:, 0, 0]
    assert (p[:2] > 0.5).all() and (p[2:] < 0.2).all()
    # CbCr of gray is (128, 128); of the model mean colour, p = 1
    torch.testing.assert_close(rgb_to_cbcr(torch.full((3, 1, 1), 0.4))[0, 0], torch.tensor([128.0, 128.0]),
                               atol=1e-3, rtol=0)
    a = skin_attention(torch.tensor([0.0, 0.3, 0.5, 0.51, 0.9]))
    assert a.tolist() == pytest.approx([0.0, 0.3, 0.5, 1.0, 1.0])


def test_adaptive_skin_model_on_aligned_photos(photos, target224):
    inside, outside, prior_inside = [], [], []
    for s in photos:
        a = align_face(s.image, s.lm5, target224, 224)
        region = face_region_from_lm5(a.lm5, 224, 224)
        assert region.sum() > 1000
        m = skin_mask(a.image, a.lm5)
        assert m.shape == (224, 224) and 0 <= float(m.min()) and float(m.max()) <= 1
        inside.append(float(m[region].mean()))
        prior_inside.append(float(skin_mask(a.image, a.lm5, adaptive=False)[region].mean()))
        ring = torch.ones(224, 224, dtype=torch.bool)
        ring[16:-16, 16:-16] = False  # crop border: mostly background / hair
        outside.append(float(m[ring].mean()))
        model = fit_skin_model(a.image, region)
        assert model != DEFAULT_SKIN_MODEL
    inside_t, outside_t = torch.tensor(inside), torch.tensor(outside)
    print("\nskin attention inside face / crop border:", [f"{i:.2f}/{o:.2f}" for i, o in zip(inside, outside)])
    assert float(inside_t.median()) > 0.85
    assert (inside_t > outside_t + 0.3).float().mean() >= 0.8
    # adapting to the face covers skin tones / lighting the generic prior misses
    assert float(inside_t.mean()) > float(torch.tensor(prior_inside).mean())
    # too small a region -> the prior is returned
    assert fit_skin_model(photos[0].image, torch.zeros_like(photos[0].image[0], dtype=torch.bool)) == DEFAULT_SKIN_MODEL


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    def refuse(*a, **k):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv("B3F_FAN_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch_home" / "hub"))


def test_fan_without_weights_fails_clearly(no_network, tmp_path):
    with pytest.raises(MissingWeightsError) as e:
        FANLandmarker()
    msg = str(e.value)
    assert "2DFAN4-11f355bf06.pth.tar" in msg and "adrianbulat.com" in msg
    assert str(tmp_path / "torch_home" / "hub" / "checkpoints") in msg and "Nothing is downloaded" in msg
    with pytest.raises(MissingWeightsError, match="my_fan.pth"):
        find_fan_weights(tmp_path / "my_fan.pth")
    fake = tmp_path / "torch_home" / "hub" / "checkpoints" / "2DFAN4-11f355bf06.pth.tar"
    fake.parent.mkdir(parents=True)
    fake.write_bytes(b"")
    assert find_fan_weights() == fake  # found in the hub cache, where face_alignment looks


class _DotFinder(nn.Module):
    """Stand-in for FAN: puts every heatmap's peak on the brightest pixel of the crop."""

    def forward(self, x):
        b = x.shape[0]
        g = x.mean(1, keepdim=True)
        pooled = nn.functional.avg_pool2d(g, 4)  # 256 -> 64, heatmap pixel = 4 crop pixels
        hm = torch.softmax(pooled.reshape(b, 1, -1) * 200, -1).reshape(b, 1, 64, 64)
        return [hm.expand(b, 68, 64, 64)]


def test_fan_geometry_maps_heatmaps_back_to_the_photo():
    u, v = 143.0, 97.0
    img = _blob(240, 320, u, v, sigma=5.0).expand(3, 240, 320).clone()
    fan = FANLandmarker(net=_DotFinder(), flip_test=True)
    boxes = torch.tensor([[90.0, 40.0, 210.0, 170.0], [110.0, 60.0, 180.0, 140.0]])
    pts, score = fan(img, boxes)
    assert pts.shape == (2, 68, 2) and score.shape == (2, 68)
    for k in range(2):
        side = 200 * float(boxes[k, 2] - boxes[k, 0] + boxes[k, 3] - boxes[k, 1]) / 195
        tol = side / 64  # one heatmap pixel in photo units
        assert float((pts[k, 0] - torch.tensor([u, v])).norm()) < tol
    t = fan_crop_transform(boxes[0])
    cx = (float(boxes[0, 0]) + float(boxes[0, 2])) / 2
    assert float(t.apply(torch.tensor([[cx, 0.0]]))[0, 0]) == pytest.approx(128.0)


def test_decode_heatmaps_subpixel():
    hm = torch.zeros(1, 2, 64, 64)
    hm[0, 0, 10, 20] = 1.0
    hm[0, 0, 10, 21] = 0.5  # right neighbour larger -> +0.25
    hm[0, 1, 0, 0] = 1.0  # border: no shift
    pts, score = decode_heatmaps(hm)
    torch.testing.assert_close(pts[0, 0], torch.tensor([20.75, 10.5]))
    torch.testing.assert_close(pts[0, 1], torch.tensor([0.5, 0.5]))
    assert score[0].tolist() == [1.0, 1.0]
