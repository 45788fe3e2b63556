"""CoarseNet: the parameter vector, the zero update, the iteration loop, training."""

from __future__ import annotations

import torch

from benchmark3dface.data.preprocess.align import deng_target_points, fit_scale_translation
from benchmark3dface.facemodel.model import lm68_to_lm5
from benchmark3dface.methods.registry import get_method

SIZE = 96  # the conftest fixtures' image side


def test_registered_on_single_and_depth_boards():
    for name in ("coarsenet", "coarsefine"):
        cls = get_method(name)
        assert cls.spec.input_kind == "single"
        assert set(cls.spec.eval_kinds) == {"single", "single_weak"}
        assert cls.spec.inputs == ("image",)
    assert "depth" in get_method("coarsefine").spec.outputs


def test_zero_update_decodes_to_centred_frontal_mean_face(coarsenet):
    fm = coarsenet.facemodel
    r = torch.zeros(1, coarsenet.decoder.layout.size)
    geo = coarsenet.decoder.decode(r, SIZE)
    assert torch.allclose(geo["vertices"][0], fm.mean_shape, atol=1e-5)
    assert torch.allclose(geo["rotation"][0], torch.eye(3), atol=1e-6)
    # centred as the engine / Deng's alignment centre a face: its 5 points already sit on
    # Deng's targets in the least-squares sense (a further fit changes nothing)
    target = deng_target_points(fm.mean_shape, fm.landmarks68, SIZE)
    k, t = fit_scale_translation(lm68_to_lm5(geo["landmarks2d"][0].double()), target)
    assert abs(float(k) - 1.0) < 1e-4 and float(t.abs().max()) < 1e-2
    # frontal: the mean face's left/right landmarks mirror about a vertical line
    lm = geo["landmarks2d"][0]
    assert abs(float(lm[36, 1] - lm[45, 1])) < 0.05  # outer eye corners at one height
    # the untrained net (zero-initialised head) predicts the zero update: every iterate is 0
    faces = coarsenet.faces(r, SIZE)
    assert torch.allclose(faces[0].vertices, fm.mean_shape.cpu(), atol=1e-5)


def test_ground_truth_parameters_project_to_the_engine_landmarks(coarsenet, weak_batch):
    r = coarsenet.target(weak_batch)
    geo = coarsenet.decoder.decode(r, SIZE)
    assert float((geo["landmarks2d"] - weak_batch.lm68).norm(dim=-1).max()) < 1e-2
    assert torch.allclose(geo["vertices"], weak_batch.vertices, atol=1e-2)


def test_iteration_loop_is_deterministic_and_keeps_every_iterate(coarsenet, weak_batch):
    torch.manual_seed(1)
    head = coarsenet.net.get_classifier()
    saved = head.weight.detach().clone()
    try:
        with torch.no_grad():
            head.weight.normal_(0.0, 0.02)
        a = coarsenet.iterate(weak_batch.image, 3)
        b = coarsenet.iterate(weak_batch.image, 3)
        assert len(a) == 4 and float(a[0].abs().max()) == 0.0
        for x, y in zip(a, b):
            assert torch.equal(x, y)
        assert all(float((a[i] - a[i - 1]).abs().max()) > 0 for i in range(1, 4))  # the feedback moves
        recs = coarsenet.reconstruct(weak_batch)
        assert recs[0].extras["iterates"].shape == (coarsenet.hparams.iterations + 1, a[0].shape[1])
    finally:
        with torch.no_grad():
            head.weight.copy_(saved)


def test_training_steps_lower_the_loss_on_a_batch(weak_batch):
    from b3f_methods.richardson import CoarseNet

    torch.manual_seed(0)
    m = CoarseNet(image_size=48, backbone="resnet10t", perturbations=1, zero_start_prob=1.0, lr=3e-3)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    r_gt = m.target(weak_batch)
    gray = m.network_gray(weak_batch.image)
    r0 = torch.zeros_like(r_gt)
    first = last = None
    for _ in range(12):
        loss = m.coarse_loss(m.update(gray, r0), r0, r_gt, 48)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = float(loss.detach()) if first is None else first
        last = float(loss.detach())
    assert last < 0.7 * first
