"""DF-MVR: involution, Tri-UNet, output split, losses (oracle), single-view mode, reconstruct,
overfitting one triplet."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from b3f_methods.dfmvr import DFMVR, Involution, RedNet, TriUNet, landmarks101, parse_from_lm68
from b3f_methods.dfmvr.landmarks101 import ALIGN7
from benchmark3dface.evaluation.inputs import GroundTruthAccessError, input_view
from benchmark3dface.facemodel.regions import L_EYE, R_EYE
from benchmark3dface.metrics.true_error import aligned_vertex_errors

from .conftest import SIZE, SMALL


def make(**kw) -> DFMVR:
    torch.manual_seed(0)
    kw = {**SMALL, **kw}
    return DFMVR(facemodel="tiny", image_size=SIZE, **kw)


def oracle_parts(model: DFMVR, coeffs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """GT per-view coefficients (B, V, C) -> (shared, pose) in the heads' output format."""
    lay = model.facemodel.layout
    p0 = lay.split(coeffs[:, 0])
    shared = torch.cat([p0[g] for g in ("id", "exp", "tex", "sh")], 1)
    p = lay.split(coeffs)
    return shared, torch.cat([p["angles"], p["trans"]], -1)


# ----------------------------------------------------------------------------- involution
@pytest.mark.parametrize("stride", [1, 2])
def test_involution_with_constant_kernel_generator_is_a_depthwise_convolution(stride):
    torch.manual_seed(0)
    c, k, gc = 8, 5, 4
    inv = Involution(c, kernel_size=k, stride=stride, group_channels=gc, reduction=2)
    kernels = torch.randn(c // gc, k, k)  # one kernel per group
    with torch.no_grad():
        inv.span.weight.zero_()
        inv.span.bias.copy_(kernels.reshape(-1))
    x = torch.randn(2, c, 11, 11)
    # independent answer: a depthwise convolution whose channel c uses its group's kernel
    weight = kernels.repeat_interleave(gc, 0)[:, None]  # (C, 1, k, k)
    expect = F.conv2d(x, weight, stride=stride, padding=k // 2, groups=c)
    got = inv(x)
    assert got.shape == expect.shape
    assert torch.allclose(got, expect, atol=1e-5)
    # a non-constant generator is spatially varying: no longer the convolution
    with torch.no_grad():
        inv.span.weight.normal_()
    assert not torch.allclose(inv(x), expect, atol=1e-3)


def test_rednet_uses_involution_and_resnet_variant_does_not():
    red, res = RedNet(8, 26, 8, involution=True, group_channels=8), RedNet(8, 26, 8, involution=False)
    assert any(isinstance(m, Involution) for m in red.modules())
    assert not any(isinstance(m, Involution) for m in res.modules())
    assert red(torch.randn(2, 8, 32, 32)).shape == (2, red.out_channels) == (2, 8 * 8 * 4)


# ----------------------------------------------------------------------------- Tri-UNet and heads
def test_triunet_encoders_share_no_parameters_and_fuse_three_views():
    net = TriUNet(13, (8, 16, 32), out_channels=6)
    params = [{id(p) for p in enc.parameters()} for enc in net.encoders]
    assert len(params) == 3 and all(params)
    assert not (params[0] & params[1]) and not (params[0] & params[2]) and not (params[1] & params[2])
    ptrs = [{p.data_ptr() for p in enc.parameters()} for enc in net.encoders]
    assert not (ptrs[0] & ptrs[1]) and not (ptrs[1] & ptrs[2])
    x = torch.randn(2, 3, 13, 32, 32)
    assert net(x).shape == (2, 6, 32, 32)
    # each view reaches the output through its own encoder only
    x.requires_grad_(True)
    net(x).sum().backward()
    assert all(x.grad[:, v].abs().sum() > 0 for v in range(3))


def test_output_split_and_gradients_reach_every_view_pose_head(triplets, tiny_fm):
    m = make(single_view_prob=0.0, loss_weights={"photo": 0.0, "mask": 0.0, "lm3d": 0.0, "reg": 0.0})
    lay = tiny_fm.layout
    assert m.heads.num_outputs == lay.id + lay.exp + lay.tex + lay.sh + 3 * 6
    # Deng's layout sizes (the paper's 269 = 80 + 64 + 80 + 27 + 3 x 6)
    assert 80 + 64 + 80 + 27 + 3 * 6 == 269
    shared = torch.arange(lay.id + lay.exp + lay.tex + lay.sh, dtype=torch.float32)[None]
    pose = torch.arange(18, dtype=torch.float32).reshape(1, 3, 6) + 1000
    c = m.view_coeffs(shared, pose)
    assert c.shape == (1, 3, lay.size)
    for v in range(3):
        p = lay.split(c[:, v])
        off = 0
        for g in ("id", "exp", "tex", "sh"):
            k = getattr(lay, g)
            assert torch.equal(p[g][0], shared[0, off:off + k])
            off += k
        assert torch.equal(p["angles"][0], pose[0, v, :3]) and torch.equal(p["trans"][0], pose[0, v, 3:])
    m.train()
    loss, terms, _ = m.compute_loss(triplets)
    assert set(terms) == {"lm2d"}
    loss.backward()
    for v, head in enumerate(m.heads.pose):
        assert head.weight.grad.abs().sum() > 0 and head.bias.grad.abs().sum() > 0, f"view {v} pose head got no gradient"
    assert m.heads.shared.bias.grad.abs().sum() > 0


def test_group_norm_option_replaces_every_batchnorm_and_is_the_same_in_train_and_eval(triplets):
    """norm="group": no BatchNorm left in the fusion network or the regressor, the group counts
    divide the channels, and (no running statistics) a one-view input gives the same coefficients
    in training and evaluation mode (the regressor features); with BatchNorm they differ."""
    m = make(norm="group", single_view_prob=0.0)
    norms = [mod for mod in m.modules() if isinstance(mod, torch.nn.GroupNorm)]
    assert norms and not any(isinstance(mod, torch.nn.BatchNorm2d) for mod in m.modules())
    assert all(n.num_channels % n.num_groups == 0 for n in norms)
    x = torch.rand(2, 3, 3 + 10, SIZE, SIZE)
    x[:, [0, 2]] = 0.0  # one view present, like a single image at test time
    for model, same in ((m, True), (make(single_view_prob=0.0), False)):
        model.train()
        with torch.no_grad():  # the features the heads read (the heads start at zero)
            train_out = model.regressor(model.fusion(x))
        model.eval()
        with torch.no_grad():
            eval_out = model.regressor(model.fusion(x))
        assert torch.allclose(train_out, eval_out, atol=1e-5) == same
    with pytest.raises(ValueError, match="norm"):
        make(norm="layer")


def test_wrong_view_count_is_a_clear_error(triplets):
    m = make()
    bad = triplets.__class__(**{**vars(triplets), "image": triplets.image[:, :2]})
    with pytest.raises(ValueError, match="3-view"):
        m.compute_loss(bad)


# ----------------------------------------------------------------------------- losses
def test_oracle_coefficients_make_photometric_and_3d_landmark_terms_vanish(triplets):
    m = make()
    shared, pose = oracle_parts(m, triplets.coeffs)
    present = torch.ones(2, 3, dtype=torch.bool)
    oracle = m.loss_terms(triplets, shared, pose, present)
    # the mean face at the true pose as the reference for "small"
    lay = m.facemodel.layout
    mean_shared = shared.clone()
    mean_shared[:, :lay.id + lay.exp] = 0
    mean = m.loss_terms(triplets, mean_shared, pose, present)
    assert oracle["lm3d"] < 1e-3 < mean["lm3d"]  # mm
    assert oracle["photo"] < 0.02 and oracle["photo"] < 0.3 * mean["photo"]
    assert oracle["lm2d"] < 1e-2  # px at 224
    assert oracle["mask"] < 0.05


def test_landmarks101_and_alignment_points(tiny_fm):
    idx = landmarks101(tiny_fm)
    assert idx.shape == (101,) and idx.unique().numel() == 101
    assert torch.equal(idx[:68], tiny_fm.landmarks68.cpu())
    assert ALIGN7 == (36, 39, 42, 45, 30, 48, 54)


def test_parse_input_from_landmarks(triplets):
    lm = triplets.lm68[0, 1]  # front view
    parse = parse_from_lm68(lm, SIZE)
    assert parse.shape == (SIZE, SIZE)
    assert parse[0, 0] == 0  # image corner: background
    for pts, label in ((lm[36:42], L_EYE), (lm[42:48], R_EYE)):
        u, v = pts.mean(0)
        assert parse[int(v), int(u)] == label
    # the landmark parse and the exact synthetic parse agree on most face pixels
    exact = triplets.parse[0, 1]
    face = exact > 0
    assert ((parse > 0) == face).float().mean() > 0.7  # 0.78 measured on the tiny model
    assert parse_from_lm68(torch.full((68, 2), float("nan")), 8).sum() == 0


def test_single_view_training_mode_blanks_the_other_views():
    m = make(single_view_prob=1.0)
    torch.manual_seed(1)
    present = m.training_present(16, "cpu")
    assert (present.sum(1) == 1).all()
    m2 = make(single_view_prob=0.0)
    assert m2.training_present(4, "cpu").all()
    x = torch.ones(2, 3, 4, 5, 5)
    blank = m._blank(x, torch.tensor([[True, False, False], [False, False, True]]))
    assert blank[0, 0].eq(1).all() and blank[0, 1:].eq(0).all() and blank[1, 2].eq(1).all() and blank[1, :2].eq(0).all()


# ----------------------------------------------------------------------------- reconstruct
def test_reconstruct_triplet_and_single_view_through_the_input_view(triplets):
    m = make()
    view = input_view(triplets, m.spec.inputs, {"lm68": triplets.lm68})
    with pytest.raises(GroundTruthAccessError):
        _ = view.coeffs
    recs = m.reconstruct(view)
    assert len(recs) == 2
    for r, sid in zip(recs, triplets.sample_id):
        assert r.sample_id == sid and len(r.per_view) == 3 and len(r.faces) == 1
        assert r.faces[0] is r.per_view[1]
        assert r.faces[0].vertices.shape == (m.facemodel.num_vertices, 3)
    # per-view faces share the shape, differ in pose
    assert torch.allclose(recs[0].per_view[0].vertices, recs[0].per_view[2].vertices)
    single = triplets.__class__(kind="single", sample_id=["a", "b"], image=triplets.image[:, 1],
                                lm68=triplets.lm68[:, 1])
    sv = input_view(single, m.spec.inputs, {"lm68": single.lm68})
    out = m.reconstruct(sv)
    assert len(out) == 2 and out[0].per_view is None and out[0].faces[0].landmarks2d.shape == (68, 2)


# ----------------------------------------------------------------------------- overfitting
def test_overfitting_one_triplet_reaches_sub_millimetre_true_error(triplets):
    """The network, the decoder and the losses can fit one triplet: the median over three
    initialisations ends below 1 mm (one initialisation of the tiny model can stall near 2.3 mm,
    at one thread: measured seeds 0/1/2 at 120 steps -> 2.47 / 0.21 / 0.18 mm)."""
    one = triplets.__class__(**{k: (v[:1] if isinstance(v, (torch.Tensor, list)) else v)
                                for k, v in vars(triplets).items()})
    gt = one.vertices[:, 0]
    steps = 100
    finals = []
    for seed in range(3):
        torch.manual_seed(seed)
        m = DFMVR(facemodel="tiny", image_size=SIZE, single_view_prob=0.0, **SMALL)
        opt = torch.optim.Adam(m.parameters(), 3e-3)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        m.train()

        def err(coeffs):
            p = m.facemodel.layout.split(coeffs[:, 0].detach())
            return float(aligned_vertex_errors(m.facemodel.shape(p["id"], p["exp"]), gt).mean())

        start = err(m.compute_loss(one)[2])
        assert start > 2.0, start  # the mean face is far off
        for _ in range(steps):
            loss, _, _ = m.compute_loss(one)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        finals.append(err(m.predict_coeffs(one)[0]))
    assert sorted(finals)[1] < 1.0, finals


def test_nonfinite_gradients_skip_the_step_and_nonfinite_outputs_are_failures(triplets):
    from b3f_methods.dfmvr.method import skip_nonfinite_grads

    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    a.grad, b.grad = torch.tensor([1.0, 2.0]), torch.tensor([float("nan"), 0.0])
    assert skip_nonfinite_grads([a, b]) and a.grad is None and b.grad is None
    a.grad = torch.ones(2)
    assert not skip_nonfinite_grads([a]) and a.grad is not None
    m = make()
    with torch.no_grad():
        m.heads.shared.bias.fill_(float("nan"))
    recs = m.reconstruct(input_view(triplets, m.spec.inputs, {"lm68": triplets.lm68}))
    assert all(f.failure and "non-finite" in f.failure for r in recs for f in r.per_view)
    assert recs[0].faces[0].failure
