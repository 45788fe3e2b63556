"""End-to-end fine-tuning of CoarseNet through FineNet (Richardson'17 Sec. 4.4): ``coarsefine``
with ``finetune_coarse``. Small networks (48 px) on the conftest's weak-perspective batch."""

from __future__ import annotations

import pytest
import torch

from benchmark3dface.render.rasterize import rasterize

SIZE = 48  # the networks' input side (the 96 px batch is resized)


@pytest.fixture(scope="module")
def coarse_ckpt(tmp_path_factory):
    """A ``coarsenet`` checkpoint whose head predicts a non-zero update (so that gradients reach
    the whole network, not only the zero-initialised head)."""
    from b3f_methods.richardson import CoarseNet

    torch.manual_seed(0)
    cn = CoarseNet(image_size=SIZE, backbone="resnet10t")
    with torch.no_grad():
        cn.net.get_classifier().weight.normal_(0.0, 0.01)
    path = tmp_path_factory.mktemp("coarse") / "coarsenet.ckpt"
    torch.save({"state_dict": cn.state_dict(), "hyper_parameters": dict(cn.hparams)}, path)
    return str(path)


def _model(ckpt: str, **kw):
    from b3f_methods.richardson import CoarseFine

    torch.manual_seed(0)
    m = CoarseFine(image_size=SIZE, backbone="resnet10t", coarse_checkpoint=ckpt, **kw)
    logged: dict[str, float] = {}
    m.log = lambda name, value, **_: logged.__setitem__(name, float(value))  # no trainer here
    return m, logged


@pytest.mark.parametrize("finetune", [False, True])
def test_gradients_reach_coarsenet_only_when_finetuning(coarse_ckpt, weak_batch, finetune):
    m, _ = _model(coarse_ckpt, finetune_coarse=finetune)
    if not finetune:
        for prm in m.net.parameters():  # even a trainable-looking frozen CoarseNet gets nothing
            prm.requires_grad_(True)
    m.training_step(weak_batch, 0).backward()
    grads = [p.grad for p in m.net.parameters()]
    groups = m.configure_optimizers().param_groups
    opt_ids = {id(p) for g in groups for p in g["params"]}
    if finetune:
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        first = next(m.net.parameters())  # the stem convolution: the gradient crosses the whole trunk
        assert float(first.grad.abs().sum()) > 0
        assert all(id(p) in opt_ids for p in m.net.parameters())
        assert groups[1]["lr"] == m.hparams.coarse_lr
        assert all(p.grad is None for p in m.coarse_orig.parameters())  # the reference stays frozen
        assert all(id(p) not in opt_ids for p in m.coarse_orig.parameters())
    else:
        assert all(g is None for g in grads)
        assert not any(id(p) in opt_ids for p in m.net.parameters())
        assert m.coarse_orig is None
    # FineNet trains either way
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in m.finenet.parameters())


def test_fidelity_term_is_zero_at_the_first_step_and_the_mean_squared_vertex_distance(coarse_ckpt, weak_batch):
    m, logged = _model(coarse_ckpt, finetune_coarse=True, coarse_fidelity=3.0)
    m.training_step(weak_batch, 0)
    assert logged["train/coarse_fid"] == 0.0
    assert logged["train/total"] == logged["train/sfs"]
    gray = m.network_gray(weak_batch.image)
    with torch.no_grad():
        r = m.coarse_solution(gray)
    assert torch.equal(r, m.iterate(weak_batch.image)[-1])  # the value inference scores
    # a shape-only difference: the term is the mean over vertices of the squared 3D distance (mm^2)
    g = torch.Generator().manual_seed(3)
    d = torch.zeros_like(r)
    lay = m.decoder.layout
    d[:, lay.shape_slice] = 0.5 * torch.randn(r.shape[0], lay.pose_slice.start, generator=g)
    ident, exp, _ = m.decoder.split(r)
    ident2, exp2, _ = m.decoder.split(r + d)
    va, vb = m.facemodel.shape(ident, exp), m.facemodel.shape(ident2, exp2)
    expected = float(((va - vb) ** 2).sum(-1).mean())
    got = float(m.coarse_fidelity_loss(r + d, r, SIZE))
    assert expected > 1.0 and got == pytest.approx(expected, rel=1e-3)


def _drift(ckpt: str, batch, weight: float, steps: int = 4) -> float:
    m, _ = _model(ckpt, finetune_coarse=True, coarse_fidelity=weight, coarse_lr=1e-3)
    opt = m.configure_optimizers()
    for _ in range(steps):
        loss = m.training_step(batch, 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    gray = m.network_gray(batch.image)
    with torch.no_grad():
        return float(m.coarse_fidelity_loss(m.coarse_solution(gray), m.coarse_solution(gray, m.coarse_orig), SIZE))


def test_a_huge_fidelity_weight_keeps_coarsenet_near_its_original_solution(coarse_ckpt, weak_batch):
    free = _drift(coarse_ckpt, weak_batch, 0.0)
    tied = _drift(coarse_ckpt, weak_batch, 1e4)
    assert free > 10.0, free  # the SfS gradient alone moves the coarse solution (mm^2) ...
    assert tied < 0.05 * free, (tied, free)  # ... the fidelity term holds it near the original


def test_the_coarse_depth_comes_from_the_eq7_layer(coarse_ckpt, weak_batch, monkeypatch):
    import b3f_methods.richardson.coarsefine as cf

    calls = []
    real = cf.zbuffer_depth
    monkeypatch.setattr(cf, "zbuffer_depth", lambda *a, **k: calls.append(1) or real(*a, **k))
    m, _ = _model(coarse_ckpt, finetune_coarse=False)
    m.training_step(weak_batch, 0)
    assert not calls  # frozen CoarseNet: the no-grad feedback render only
    m, _ = _model(coarse_ckpt, finetune_coarse=True)
    m.training_step(weak_batch, 0)
    assert len(calls) == 1

    # the gradient of a depth-map sum w.r.t. r is Eq. 7's: sum_k (sum of the pixels' barycentric
    # weights of vertex k) * d depth_k / d r, computed here from the raw rasterization
    r = m.target(weak_batch).detach().requires_grad_(True)
    depth = m.coarse_depth(r, SIZE)
    depth.nan_to_num(0.0).sum().backward()
    with torch.no_grad():
        screen = m.decoder.decode(r, SIZE)["screen"]
        tri = m.facemodel.triangles.long()
        frags = rasterize(screen, tri, SIZE, cull_backfaces=True, orthographic=True)
        w = torch.zeros(screen.shape[:2])
        for b in range(screen.shape[0]):
            pix = frags.mask[b]
            face = frags.pix_to_face[b][pix] - b * frags.faces_per_mesh
            w[b].index_add_(0, tri[face].reshape(-1), frags.bary[b][pix].reshape(-1).float())
    r2 = r.detach().clone().requires_grad_(True)
    (m.decoder.decode(r2, SIZE)["screen"][..., 2] * w).sum().backward()
    assert torch.allclose(r.grad, r2.grad, rtol=1e-4, atol=1e-3 * float(r2.grad.abs().max()))
    pose = r.grad[:, m.decoder.layout.pose_slice]
    assert float(pose[:, 3:].abs().max()) == 0.0  # translation, scale: no in-plane gradient (Eq. 7)
    assert float(r.grad[:, m.decoder.layout.shape_slice].abs().max()) > 0
