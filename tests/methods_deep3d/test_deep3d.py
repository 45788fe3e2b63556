"""Deep3D (R-Net): training step, overfitting, zero-head mean face, perceptual fallbacks, presets."""

from __future__ import annotations

import copy
import math

import lightning as L
import pytest
import torch

from b3f_methods.deep3d import Deep3D, resolve_weights, true_error
from benchmark3dface.data.datamodules import SyntheticDataModule
from benchmark3dface.data.preprocess.align import deng_target_points
from benchmark3dface.facemodel import lm68_to_lm5
from benchmark3dface.geometry.camera import PerspectiveCamera
from benchmark3dface.perceptual import IdNet, save_idnet

from .conftest import EASY, SIZE


def make(**kw) -> Deep3D:
    kw.setdefault("perceptual", "none")
    torch.manual_seed(0)
    return Deep3D(facemodel="tiny", backbone="resnet18", image_size=SIZE, **kw)


@pytest.fixture()
def idnet_file(tmp_path):
    torch.manual_seed(0)
    model = IdNet("resnet18", embedding_dim=16, input_size=48)
    return save_idnet(model.eval(), {"config": {"backbone": "resnet18", "embedding_dim": 16, "input_size": 48}},
                      tmp_path / "idnet.pt")


def test_lightning_training_steps_log_finite_terms(tiny_fm, idnet_file):
    method = make(perceptual=f"idnet:{idnet_file}", loss_preset="code")  # code preset: gamma term on too
    assert method.config_warnings == []
    dm = SyntheticDataModule(mode="single", image_size=SIZE, train_size=4, val_size=2, test_size=0, batch_size=2,
                             facemodel=tiny_fm, options=EASY)
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=1, num_sanity_val_steps=0, accelerator="cpu")
    trainer.fit(method, dm)
    m = trainer.callback_metrics
    for term in ("loss", "photo", "landmark", "perceptual", "reg", "tex_flat", "gamma"):
        assert f"train/{term}" in m, term
        assert math.isfinite(float(m[f"train/{term}"])), term
    assert "val/true_error_mm" in m and float(m["val/true_error_mm"]) > 0
    # the encoder stays out of the checkpointable state
    assert not any(k.startswith(("_encoder", "loss")) for k in method.state_dict())


def test_loss_falls_when_overfitting_a_fixed_batch(single_batch):
    method = make(lr=1e-3)
    opt = method.configure_optimizers()
    batch = copy.copy(single_batch)
    for name in ("image", "lm68", "lm5", "skin_mask"):
        setattr(batch, name, getattr(single_batch, name)[:2])
    losses = []
    for _ in range(30):
        result, _, _ = method.compute_loss(batch)
        opt.zero_grad()
        result.total.backward()
        opt.step()
        losses.append(float(result.total))
    assert all(math.isfinite(v) for v in losses)
    assert min(losses[-5:]) < 0.5 * losses[0]


def test_zero_head_reproduces_the_mean_face_at_the_default_pose(tiny_fm):
    method = make()
    images = torch.rand(2, 3, SIZE, SIZE)
    from benchmark3dface.data.sample import Sample

    recs = method.reconstruct(Sample(sample_id=["a", "b"], image=images))
    assert [r.sample_id for r in recs] == ["a", "b"]
    for r in recs:
        f = r.face
        assert f.validate() is None
        assert torch.allclose(f.vertices, tiny_fm.mean_shape, atol=1e-5)
        assert torch.allclose(f.rotation, torch.eye(3), atol=1e-6)
        assert torch.allclose(f.translation, torch.zeros(3), atol=1e-6)
        # the mean face at the default pose lands on the targets of Deng's 5-point alignment
        target5 = deng_target_points(tiny_fm.mean_shape, tiny_fm.landmarks68, SIZE)
        assert torch.allclose(lm68_to_lm5(f.landmarks2d), target5.to(f.landmarks2d), atol=1e-3)
        assert f.camera["focal"] == pytest.approx(1015.0 * SIZE / 224)


def test_reconstruct_matches_the_coefficients_decoded_by_the_model(single_batch, tiny_fm):
    method = make()
    torch.nn.init.normal_(method.rnet.head.weight, std=0.01)
    recs = method.reconstruct(single_batch)
    assert len(recs) == 4 and all(r.face.validate() is None for r in recs)
    coeffs = torch.stack([r.extras["coeffs"] for r in recs])
    p = tiny_fm.layout.split(coeffs)
    assert torch.allclose(torch.stack([r.face.vertices for r in recs]), tiny_fm.shape(p["id"], p["exp"]), atol=1e-4)
    cam = PerspectiveCamera.deng(SIZE)
    assert torch.allclose(recs[0].face.landmarks2d, tiny_fm.decode(coeffs[:1], cam).landmarks2d[0], atol=1e-3)


def test_perceptual_term_off_with_a_recorded_warning(single_batch, tmp_path, monkeypatch):
    method = make(perceptual="none")
    assert any("perceptual" in w for w in method.config_warnings)
    result, _, _ = method.compute_loss(single_batch)
    assert "perceptual" not in result.terms and "photo" in result.terms
    monkeypatch.setenv("B3F_CACHE_DIR", str(tmp_path))  # empty cache: no IdNet trained
    with pytest.warns(UserWarning, match="IdNet"):
        method = make(perceptual="idnet")
    assert any("IdNet" in w for w in method.config_warnings)
    ckpt: dict = {}
    method.on_save_checkpoint(ckpt)
    assert ckpt["config_warnings"] == method.config_warnings
    with pytest.raises(FileNotFoundError):
        make(perceptual=f"facenet:{tmp_path / 'missing.pt'}")


def test_perceptual_term_uses_the_encoder(single_batch, idnet_file):
    method = make(perceptual=f"idnet:{idnet_file}", loss_weights={"photo": 0.0, "landmark": 0.0})
    torch.nn.init.normal_(method.rnet.head.weight, std=0.01)
    result, _, _ = method.compute_loss(single_batch)
    assert set(result.terms) == {"perceptual", "reg", "tex_flat"}
    assert 0.0 < float(result.terms["perceptual"]) < 2.0
    result.total.backward()
    assert method.rnet.head.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in method.encoder.parameters())


def test_loss_presets_and_overrides():
    w, r = resolve_weights("paper")
    assert w == {"photo": 1.9, "landmark": 1.6e-3, "perceptual": 0.2, "reg": 3e-4, "tex_flat": 5.0, "gamma": 0.0}
    assert r == {"id": 1.0, "exp": 0.8, "tex": 1.7e-3}
    w, r = resolve_weights("code", {"perceptual": 0.0}, {"exp": 0.5})
    assert (w["photo"], w["gamma"], w["perceptual"], r["tex"], r["exp"]) == (1.92, 10.0, 0.0, 1.7e-2, 0.5)
    with pytest.raises(ValueError, match="unknown Deng loss term"):
        resolve_weights("paper", {"photometric": 1.0})
    with pytest.raises(ValueError, match="unknown loss preset"):
        resolve_weights("tf")


def test_skin_attention_sources(single_batch):
    from b3f_methods.deep3d.losses import attention_map

    img = single_batch.image
    skin = single_batch.skin_mask
    a = attention_map(skin, img, single_batch.lm5, "auto")
    assert torch.equal(a, torch.where(skin > 0.5, torch.ones_like(skin), skin))
    assert torch.equal(attention_map(skin, img, None, "none"), torch.ones_like(skin))
    m = attention_map(None, img, single_batch.lm5, "auto")  # skin-colour model of the preprocessing
    assert m.shape == skin.shape and float(m.min()) >= 0 and float(m.max()) <= 1
    with pytest.raises(ValueError, match="no skin_mask"):
        attention_map(None, img, None, "sample")


def test_translation_is_predicted_in_decimetres(tiny_fm):
    method = make()
    with torch.no_grad():
        method.rnet.head.bias[tiny_fm.layout.slice("trans")] = torch.tensor([0.1, 0.0, 0.0])
    coeffs = method(torch.rand(1, 3, SIZE, SIZE))
    assert float(coeffs[0, tiny_fm.layout.slice("trans")][0]) == pytest.approx(10.0)  # 0.1 dm = 10 mm


def test_true_error_is_similarity_invariant():
    g = torch.Generator().manual_seed(0)
    gt = torch.randn(2, 50, 3, generator=g) * 30
    ang = 0.4
    rot = torch.tensor([[math.cos(ang), -math.sin(ang), 0], [math.sin(ang), math.cos(ang), 0], [0, 0, 1.0]])
    moved = 1.7 * gt @ rot.T + torch.tensor([5.0, -3.0, 100.0])
    assert torch.allclose(true_error(moved, gt), torch.zeros(2), atol=1e-4)
    noise = torch.randn(2, 50, 3, generator=g)
    e = true_error(gt + noise, gt)
    assert (e > 0).all() and (e <= noise.norm(dim=-1).mean(-1) + 1e-6).all()
    with pytest.raises(ValueError):
        true_error(gt[:, :10], gt)


def test_checkpoint_roundtrip_keeps_weights_not_the_face_model(tmp_path, single_batch):
    method = make()
    torch.nn.init.normal_(method.rnet.head.weight, std=0.01)
    sd = method.state_dict()
    assert all(not k.startswith("facemodel.") for k in sd)
    clone = make()
    clone.load_state_dict(copy.deepcopy(sd))
    a = torch.stack([r.face.vertices for r in method.reconstruct(single_batch)])
    b = torch.stack([r.face.vertices for r in clone.reconstruct(single_batch)])
    assert torch.allclose(a, b)


def test_landmark_fast_path_matches_the_full_decode(tiny_fm):
    from b3f_methods.deep3d.losses import project_landmarks

    g = torch.Generator().manual_seed(3)
    coeffs = torch.randn(3, tiny_fm.layout.size, generator=g) * 0.3
    coeffs[:, tiny_fm.layout.slice("trans")] *= 30
    cam = PerspectiveCamera.deng(SIZE)
    assert torch.allclose(project_landmarks(tiny_fm, coeffs, cam), tiny_fm.decode(coeffs, cam).landmarks2d, atol=1e-3)


def test_image_terms_on_a_subset_match_the_full_loss_on_that_subset(single_batch):
    method = make(image_terms_subset=2)
    full = make()
    torch.nn.init.normal_(method.rnet.head.weight, std=0.01)
    full.load_state_dict(method.state_dict())
    method.eval()
    full.eval()
    with torch.no_grad():
        coeffs = method(single_batch.image)
        sub, _ = method.loss(coeffs, single_batch.image, single_batch.lm68, single_batch.lm5, single_batch.skin_mask)
        ref_k, _ = full.loss(coeffs[:2], single_batch.image[:2], single_batch.lm68[:2], single_batch.lm5[:2],
                             single_batch.skin_mask[:2])
        ref_all, _ = full.loss(coeffs, single_batch.image, single_batch.lm68, single_batch.lm5, single_batch.skin_mask)
    assert float(sub.terms["photo"]) == pytest.approx(float(ref_k.terms["photo"]), rel=1e-5)
    assert float(sub.terms["landmark"]) == pytest.approx(float(ref_all.terms["landmark"]), rel=1e-4)


def test_shape_warmup_holds_identity_and_expression_at_the_mean(single_batch, tiny_fm):
    method = make(shape_warmup_steps=10)
    torch.nn.init.normal_(method.rnet.head.weight, std=0.01)
    method.train()
    assert method.shape_frozen
    result, coeffs, _ = method.compute_loss(single_batch)
    lay = tiny_fm.layout
    assert coeffs[:, lay.slice("id")].abs().sum() == 0 and coeffs[:, lay.slice("exp")].abs().sum() == 0
    result.total.backward()
    g = method.rnet.head.weight.grad
    assert g[lay.slice("id")].abs().sum() == 0 and g[lay.slice("exp")].abs().sum() == 0
    assert g[lay.slice("angles")].abs().sum() > 0
    method.shape_frozen = False
    _, coeffs, _ = method.compute_loss(single_batch)
    assert coeffs[:, lay.slice("id")].abs().sum() > 0
    assert torch.allclose(coeffs, method(single_batch.image), atol=1e-5)


def test_backbone_initialised_from_an_idnet_file(idnet_file):
    """An IdNet file (keys ``backbone.*``) initialises R-Net's backbone of the same timm arch."""
    from benchmark3dface.perceptual.idnet import load_idnet

    idnet, _ = load_idnet(idnet_file)
    assert idnet.backbone_name == "resnet18"  # make() builds a resnet18 R-Net
    method = make(backbone_weights=str(idnet_file))
    own = method.rnet.backbone.state_dict()
    ref = idnet.backbone.state_dict()
    shared = [k for k in own if k in ref]
    assert len(shared) > 10
    assert all(torch.equal(own[k], ref[k]) for k in shared)
    fresh = make().rnet.backbone.state_dict()
    assert not all(torch.equal(fresh[k], ref[k]) for k in shared if ref[k].is_floating_point())
