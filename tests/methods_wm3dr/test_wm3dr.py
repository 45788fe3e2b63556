"""WM3DR: the per-cell camera decoding against the synthetic engine's ground truth, peak
decoding, reconstruct's one-face-per-peak contract and its empty result."""

from __future__ import annotations

import math

import pytest
import torch

from b3f_methods.wm3dr import WM3DR, WM3DRNet, WM3DRStage1, cell_of, coeffs_to_raw, find_peaks, raw_to_coeffs
from benchmark3dface.geometry.camera import PerspectiveCamera

from .conftest import SMALL


def _inject(model: WM3DR, batch, monkeypatch, extra_logit: float = -9.0):
    """Replace the network by GT maps: heat logit +9 at every GT centre cell (``extra_logit``
    elsewhere), the raw outputs that decode to the GT coefficients at those cells."""
    b, _, hh, ww = batch.image.shape
    h, w = math.ceil(hh / 8), math.ceil(ww / 8)
    lay = model.facemodel.layout
    heat = torch.full((b, 1, h, w), extra_logit)
    pmap = torch.zeros(b, lay.size, h, w)
    cam = PerspectiveCamera.global_image(ww, hh)
    for i in range(b):
        cells = cell_of(batch.centers[i], 8, h, w)
        raw = coeffs_to_raw(batch.coeffs[i].double(), cells, cam, 8, lay).float()
        heat[i, 0, cells[:, 0], cells[:, 1]] = 9.0
        pmap[i, :, cells[:, 0], cells[:, 1]] = raw.T
    monkeypatch.setattr(model.net, "forward", lambda image: (heat, pmap))


def test_oracle_parameters_at_gt_cells_reproduce_gt_landmarks_and_translations(multiface_batch, monkeypatch):
    model = WM3DR(**SMALL)
    _inject(model, multiface_batch, monkeypatch)
    recs = model.reconstruct(multiface_batch)
    lay = model.facemodel.layout
    n_faces = 0
    for i, rec in enumerate(recs):
        gt_c, gt_lm = multiface_batch.centers[i], multiface_batch.lm68[i]
        gt_t = multiface_batch.coeffs[i][:, lay.slice("trans")]
        assert len(rec.faces) == gt_c.shape[0] >= 2
        for f in rec.faces:
            k = int((gt_c - f.center).norm(dim=-1).argmin())
            assert (f.center - gt_c[k]).abs().max() < 1e-3  # px: the image of the GT origin
            assert (f.landmarks2d - gt_lm[k]).norm(dim=-1).max() < 0.01  # px, the engine's GT landmarks
            assert (f.translation - gt_t[k]).abs().max() < 0.05 * 1e-3 * gt_t[k].norm() + 1e-3  # mm
            assert f.camera["focal"] == pytest.approx(1015.0) and f.camera["principal"] == (64.0, 64.0)
            assert f.score == pytest.approx(torch.sigmoid(torch.tensor(9.0)).item())
            assert f.validate() is None
            n_faces += 1
    assert n_faces == sum(c.shape[0] for c in multiface_batch.centers)


def test_translation_decoding_is_eq5_and_its_inverse():
    """t from a cell centre and (dx, dy, dz) (Eq. 5) projects back to cell + (dx, dy) at depth dz."""
    from benchmark3dface.facemodel.layout import CoeffLayout

    lay = CoeffLayout()
    cam = PerspectiveCamera.global_image(200, 120)
    cells = torch.tensor([[3, 4], [0, 24], [14, 0]])
    raw = torch.zeros(3, lay.size)
    raw[:, 254:257] = torch.tensor([[0.25, -0.5, 0.0], [0.1, 0.3, 1.2], [-0.4, 0.0, -0.7]])
    coeffs, centres = raw_to_coeffs(raw, cells, cam, 8, lay)
    uvz = cam.project(coeffs[:, 254:257])
    expect_uv = torch.tensor([[(4 + 0.5 + 0.25) * 8, (3 + 0.5 - 0.5) * 8], [(24.5 + 0.1) * 8, (0.5 + 0.3) * 8],
                              [(0.5 - 0.4) * 8, 14.5 * 8]])
    assert torch.allclose(uvz[:, :2], expect_uv, atol=1e-3) and torch.allclose(centres, expect_uv, atol=1e-4)
    dz = 1015.0 * (1000.0 / 1015.0) * torch.exp(raw[:, 256])
    assert torch.allclose(uvz[:, 2], dz, rtol=1e-5)
    back = coeffs_to_raw(coeffs.double(), cells, cam, 8, lay)
    assert torch.allclose(back.float(), raw, atol=1e-5)


def test_peak_decoding_recovers_injected_peaks_including_adjacent_faces():
    heat = torch.full((2, 1, 12, 12), 0.05)
    h = heat[0, 0]
    h[2, 2], h[2, 4] = 0.9, 0.8  # two faces side by side: peaks two cells apart
    h[2, 3] = 0.6  # the valley between them, above the threshold but not a local maximum
    h[1:4, 1] = 0.7  # the first face's blob
    h[6, 6], h[7, 8] = 0.7, 0.65  # diagonal neighbours two columns apart
    h[10, 10] = 0.45  # below the threshold
    h[11, 0] = 0.55  # a border peak
    peaks = find_peaks(heat, threshold=0.5)
    assert [tuple(c) for c in peaks[0].cells.tolist()] == [(2, 2), (2, 4), (6, 6), (7, 8), (11, 0)]
    assert torch.allclose(peaks[0].scores, torch.tensor([0.9, 0.8, 0.7, 0.65, 0.55]))
    assert peaks[1].cells.shape == (0, 2)  # the second image: nothing above the threshold
    assert find_peaks(heat, threshold=0.5, max_peaks=2)[0].cells.tolist() == [[2, 2], [2, 4]]
    # a 5x5 window merges the side-by-side faces (the paper's alternative kernel)
    assert [tuple(c) for c in find_peaks(heat, 0.5, kernel=5)[0].cells.tolist()] == [(2, 2), (6, 6), (11, 0)]


def test_an_image_without_a_face_gives_an_empty_counted_result(multiface_batch, monkeypatch):
    model = WM3DR(**SMALL)
    _inject(model, multiface_batch, monkeypatch)
    heat, pmap = model.net.forward(multiface_batch.image)
    heat[1] = -9.0  # nothing above the threshold in the second image
    recs = model.reconstruct(multiface_batch)
    assert len(recs) == 3 and recs[1].faces == [] and recs[1].extras["n_faces"] == 0
    assert model.empty_images == 1 and len(recs[0].faces) == multiface_batch.centers[0].shape[0]
    assert recs[1].sample_id == multiface_batch.sample_id[1]


def test_untrained_network_shapes_and_init():
    net = WM3DRNet("resnet18", 257, width=16)
    heat, params = net(torch.rand(2, 3, 100, 72))
    assert heat.shape == (2, 1, 13, 9) and params.shape == (2, 257, 13, 9)
    assert torch.sigmoid(heat).mean().item() == pytest.approx(0.01, rel=0.5)  # the focal-loss prior
    assert params.abs().max() < 0.5  # small-normal init: near the mean face everywhere


def test_stage1_reconstructs_one_face_per_crop(single_batch):
    model = WM3DRStage1(image_size=64, **SMALL)
    recs = model.reconstruct(single_batch)
    assert [len(r.faces) for r in recs] == [1, 1, 1, 1]
    assert all(r.face.validate() is None and r.face.landmarks2d.shape == (68, 2) for r in recs)


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="unknown WM3DR loss term 'perceptul'"):
        WM3DR(loss_weights={"perceptul": 1.0}, **SMALL)
    with pytest.raises(ValueError, match="heatmap_target"):
        WM3DR(heatmap_target="box", **SMALL)
    with pytest.raises(FileNotFoundError, match="stage-1 checkpoint"):
        WM3DR(stage1_checkpoint="/nonexistent/last.ckpt", **SMALL)
