"""The optimisation-fitting baseline on synthetic faces rendered from known coefficients."""

from __future__ import annotations

import math

import pytest
import torch
from b3f_methods.baselines import MeanFace
from b3f_methods.fitting import Fitting, Stage, run_stage
from b3f_methods.fitting.appearance import init_appearance
from b3f_methods.fitting.objective import (
    DEFAULT_REG_WEIGHTS,
    LandmarkDecoder,
    coefficient_prior,
    landmark_target,
    landmark_term,
    photometric_terms,
)
from synthetic import render_batch, synthetic_coeffs, with_model

from benchmark3dface.data.sample import Sample
from benchmark3dface.facemodel import lm68_to_lm5
from benchmark3dface.geometry.camera import PerspectiveCamera
from benchmark3dface.geometry.rotation import matrix_to_euler
from benchmark3dface.losses import (
    coefficient_regularization,
    landmark_loss,
    landmark_weights,
)
from benchmark3dface.methods import get_method

SIZE = 96


@pytest.fixture(scope="module")
def fitting(tiny_model):
    return with_model(Fitting, tiny_model, landmark_iters=60, photo_iters=12, fit_size=None)


@pytest.fixture(scope="module")
def meanface(tiny_model):
    return with_model(MeanFace, tiny_model)


def _angles(recs) -> torch.Tensor:
    return torch.stack([matrix_to_euler(r.face.rotation) for r in recs])


def _photo_error(model, coeffs: torch.Tensor, batch: Sample, mask: torch.Tensor) -> torch.Tensor:
    """(B,) mean absolute colour error of the rendered coefficients over the true face pixels."""
    from benchmark3dface.render import render_passes

    geo = model.decode(coeffs, PerspectiveCamera.deng(SIZE))
    out = render_passes(geo.projected, model.triangles, SIZE, ("rgb",), vertex_colors=geo.colors.clamp(0, 1),
                        background=0.35, cull_backfaces=True)
    return ((out["rgb"] - batch.image).abs().sum(1) * mask).sum((1, 2)) / mask.sum((1, 2))


def _meanface_coeffs(model, recs) -> torch.Tensor:
    c = model.layout.zeros(len(recs))
    c[:, model.layout.slice("angles")] = _angles(recs)
    c[:, model.layout.slice("trans")] = torch.stack([r.face.translation for r in recs])
    return c


@pytest.mark.parametrize("five_points", [False, True], ids=["lm68", "lm5"])
def test_fitting_beats_meanface_and_recovers_pose(tiny_model, fitting, meanface, five_points):
    gt = synthetic_coeffs(tiny_model, 3, seed=2)
    batch, mask = render_batch(tiny_model, gt, SIZE, five_points=five_points)
    gt_lm = tiny_model.decode(gt, PerspectiveCamera.deng(SIZE)).landmarks2d
    mf, fit = meanface.reconstruct(batch), fitting.reconstruct(batch)
    lm_err = {k: (torch.stack([r.face.landmarks2d for r in v]) - gt_lm).norm(dim=-1).mean(-1)
              for k, v in (("mf", mf), ("fit", fit))}
    # with 5 input points the other 63 landmarks are predictions of the fit, not its input
    assert lm_err["fit"].mean() < 0.7 * lm_err["mf"].mean(), lm_err
    fit_coeffs = torch.stack([r.extras["coeffs"] for r in fit])
    photo_fit = _photo_error(tiny_model, fit_coeffs, batch, mask)
    photo_mf = _photo_error(tiny_model, _meanface_coeffs(tiny_model, mf), batch, mask)
    assert (photo_fit < 0.6 * photo_mf).all(), (photo_fit, photo_mf)
    ang_err = (_angles(fit) - gt[:, tiny_model.layout.slice("angles")]).abs().amax(-1)
    assert ang_err.max() < math.radians(5), torch.rad2deg(ang_err)
    trans_err = (torch.stack([r.face.translation for r in fit]) - gt[:, tiny_model.layout.slice("trans")]).norm(dim=-1)
    assert trans_err.max() < 20.0, trans_err  # mm, at 1 m from the camera
    assert (_angles(fit) - gt[:, tiny_model.layout.slice("angles")]).abs().amax(-1).mean() <= \
        (_angles(mf) - gt[:, tiny_model.layout.slice("angles")]).abs().amax(-1).mean() + math.radians(0.5)
    ex = fit[0].extras
    assert ex["fit_seconds"] > 0 and ex["fit_batch_size"] == 3
    assert ex["fit_landmarks"] == ("lm5" if five_points else "lm68")
    assert ex["coeffs"].shape == (tiny_model.layout.size,)
    assert fit[0].face.validate() is None


def test_fit_is_independent_per_image_and_works_under_inference_mode(tiny_model):
    method = with_model(Fitting, tiny_model, landmark_iters=15, photo_iters=3, fit_size=None)
    gt = synthetic_coeffs(tiny_model, 2, seed=5)
    batch, _ = render_batch(tiny_model, gt, 64)
    single, _ = render_batch(tiny_model, gt[1:], 64)
    with torch.inference_mode():  # Lightning's test/predict loops run under inference mode
        both = method.reconstruct(batch)
        alone = method.reconstruct(single)
    assert torch.allclose(both[1].extras["coeffs"], alone[0].extras["coeffs"], atol=2e-4, rtol=1e-4)
    assert not torch.allclose(both[0].extras["coeffs"], both[1].extras["coeffs"])


def test_without_landmarks_fits_photometrically(tiny_model):
    """A Deng-aligned crop without landmarks: identity pose init, photometric stage only."""
    method = with_model(Fitting, tiny_model, photo_iters=10, fit_size=None)
    gt = synthetic_coeffs(tiny_model, 1, seed=3, yaw_deg=5.0)
    batch, mask = render_batch(tiny_model, gt, SIZE)
    batch.lm68 = None
    rec = method.reconstruct(batch)[0]
    assert rec.extras["fit_landmarks"] == "none" and math.isnan(rec.extras["fit_landmark_rms_px"])
    start = _photo_error(tiny_model, tiny_model.layout.zeros(1), batch, mask)
    end = _photo_error(tiny_model, rec.extras["coeffs"][None], batch, mask)
    assert end < 0.6 * start


def test_lbfgs_option_fits_landmarks(tiny_model):
    method = with_model(Fitting, tiny_model, landmark_iters=30, photo_iters=0, optimizer="lbfgs")
    gt = synthetic_coeffs(tiny_model, 2, seed=4)
    batch, _ = render_batch(tiny_model, gt, SIZE)
    recs = method.reconstruct(batch)
    init = with_model(MeanFace, tiny_model).reconstruct(batch)
    err = [float((r.face.landmarks2d - batch.lm68[i]).norm(dim=-1).mean()) for i, r in enumerate(recs)]
    err0 = [float((r.face.landmarks2d - batch.lm68[i]).norm(dim=-1).mean()) for i, r in enumerate(init)]
    assert all(e < 0.5 * e0 for e, e0 in zip(err, err0)), (err, err0)


def test_objective_terms_are_the_library_losses_per_image(tiny_model):
    g = torch.Generator().manual_seed(0)
    c = torch.randn(3, tiny_model.layout.size, generator=g) * 0.3
    cam = PerspectiveCamera.deng(SIZE)
    pred = LandmarkDecoder(tiny_model)(c, cam)
    assert torch.allclose(pred, tiny_model.decode(c, cam).landmarks2d, atol=1e-4)
    target = torch.rand(3, 68, 2, generator=g) * SIZE
    vis = torch.rand(3, 68, generator=g) > 0.2
    tgt = landmark_target(target, vis, None, SIZE)
    per = landmark_term(pred, tgt)
    k = 224 / SIZE
    for i in range(3):
        ref = landmark_loss(pred[i:i + 1] * k, target[i:i + 1] * k, landmark_weights()[None] * vis[i:i + 1])
        assert torch.allclose(per[i], ref, rtol=1e-5)
    five = landmark_target(None, None, lm68_to_lm5(target), SIZE)
    assert five.five and five.weights[0].tolist() == [1.0, 1.0, 20.0, 1.0, 1.0]
    p = tiny_model.layout.split(c)
    reg = coefficient_prior(c, tiny_model, DEFAULT_REG_WEIGHTS)
    ref = coefficient_regularization(p["id"], p["exp"], p["tex"], 1.0, 0.8, 1.7e-2)
    assert torch.allclose(reg.mean(), ref, rtol=1e-5)


def test_appearance_init_recovers_lighting(tiny_model):
    gt = synthetic_coeffs(tiny_model, 2, seed=6)
    batch, _ = render_batch(tiny_model, gt, SIZE)
    lay = tiny_model.layout
    start = gt.clone()
    start[:, lay.slice("sh")] = 0
    start[:, lay.slice("tex")] = 0
    att = torch.ones(2, SIZE, SIZE)
    out = init_appearance(start, tiny_model, batch.image, att)
    before = photometric_terms(start, tiny_model, batch.image, att)[0]
    after = photometric_terms(out, tiny_model, batch.image, att)[0]
    assert (after < 0.5 * before).all(), (before, after)
    dc = out[:, lay.slice("sh")].view(2, 3, 9)[:, :, 0]
    assert torch.allclose(dc, gt[:, lay.slice("sh")].view(2, 3, 9)[:, :, 0], atol=0.05)
    # groups other than lighting / albedo are untouched
    keep = torch.ones(lay.size, dtype=torch.bool)
    keep[lay.slice("sh")] = False
    keep[lay.slice("tex")] = False
    assert torch.equal(out[:, keep], start[:, keep])


def test_run_stage_moves_only_free_groups(tiny_model):
    lay = tiny_model.layout
    c0 = torch.zeros(2, lay.size)
    target = torch.randn(2, lay.size)
    stage = Stage("t", ("id", "trans"), 30, 0.1, photometric=False)
    c, loss = run_stage(c0, lambda c: ((c - target) ** 2).sum(-1), stage, lay)
    moved = (c != 0).any(0)
    expect = torch.zeros(lay.size, dtype=torch.bool)
    expect[lay.slice("id")] = True
    expect[lay.slice("trans")] = True
    assert torch.equal(moved, expect)
    assert (loss < ((c0 - target) ** 2).sum(-1)).all()


def test_bad_settings_and_inputs(tiny_model, fitting):
    with pytest.raises(ValueError, match="unknown fitting loss term"):
        Fitting(loss_weights={"perceptul": 1.0})
    with pytest.raises(ValueError, match="optimizer"):
        Fitting(optimizer="sgd")
    with pytest.raises(ValueError, match="skin_source"):
        Fitting(skin_source="maybe")
    with pytest.raises(ValueError, match="unknown coefficient groups"):
        Stage("x", ("shape",), 1, 0.1, False)
    with pytest.raises(ValueError, match="images"):
        fitting.reconstruct(Sample(sample_id="a"))
    gt = synthetic_coeffs(tiny_model, 2, seed=1)
    batch, _ = render_batch(tiny_model, gt, 64)
    batch.lm68 = [batch.lm68[0], None]
    with pytest.raises(ValueError, match="lm68 is a list"):
        fitting.reconstruct(batch)


def test_entry_point_and_spec():
    cls = get_method("fitting")
    assert cls is Fitting
    assert cls.spec.trainable is False and cls.spec.input_kind == "single" and cls.spec.requires == ()
