"""Identity encoders: alignment warp, ArcFace / FaceNet weight loading, the option factory."""

from __future__ import annotations

import math

import pytest
import torch

from benchmark3dface.perceptual import (ARCFACE_TEMPLATE_112, ArcFaceEncoder, FaceNetEncoder, IResNet,
                                        MissingWeightsError, build_encoder, parse_spec, similarity_2d,
                                        template_for, warp_to_template)


# ----------------------------------------------------------------------------- alignment
def test_similarity_2d_recovers_a_known_transform():
    g = torch.Generator().manual_seed(0)
    src = torch.rand(3, 5, 2, generator=g) * 100
    ang = torch.tensor([0.3, -1.0, 2.0])
    scale = torch.tensor([0.5, 1.0, 2.5])
    rot = torch.stack([torch.stack([ang.cos(), -ang.sin()], -1), torch.stack([ang.sin(), ang.cos()], -1)], -2)
    A_true = scale[:, None, None] * rot
    t_true = torch.tensor([[3.0, -4.0], [10.0, 0.0], [-7.0, 2.0]])
    dst = src @ A_true.transpose(1, 2) + t_true[:, None]
    A, t = similarity_2d(src, dst)
    assert torch.allclose(A, A_true, atol=1e-4) and torch.allclose(t, t_true, atol=1e-3)


def test_warp_is_the_identity_when_the_points_sit_on_the_template():
    img = torch.rand(2, 3, 112, 112, generator=torch.Generator().manual_seed(1))
    lm5 = ARCFACE_TEMPLATE_112.expand(2, 5, 2)
    out = warp_to_template(img, lm5, ARCFACE_TEMPLATE_112, 112)
    assert torch.allclose(out, img, atol=1e-4)


def test_warp_follows_a_shift_and_a_scale():
    img = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    tpl = template_for(32)
    # the face sits 2x larger and shifted by (+4, +6) px in the input: output pixel p <- input 2p + (4, 6)
    lm5 = (tpl * 2 + torch.tensor([4.0, 6.0]))[None]
    out = warp_to_template(img, lm5, tpl, 32)
    # output pixel centre (j+0.5) maps to input 2j + 5 (+4): the mean of the 2x2 block at rows 2i+6.., cols 2j+4..
    ref = torch.nn.functional.avg_pool2d(img[:, :, 6:62, 4:60], 2)
    assert torch.allclose(out[:, :, :28, :28], ref, atol=1e-5)


def test_warp_is_differentiable_wrt_the_image():
    img = torch.rand(1, 3, 40, 40, requires_grad=True)
    lm5 = (template_for(40) + 1.3)[None]
    warp_to_template(img, lm5, template_for(24), 24).sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- ArcFace
def test_arcface_missing_file_names_the_file(tmp_path):
    missing = tmp_path / "backbone.pth"
    with pytest.raises(MissingWeightsError) as err:
        ArcFaceEncoder(missing)
    assert str(missing) in str(err.value) and "arcface" in str(err.value).lower()
    with pytest.raises(ValueError, match="weights file"):
        ArcFaceEncoder(None)


def test_iresnet50_has_the_published_state_dict_layout():
    sd = IResNet().state_dict()
    # names and shapes of insightface arcface_torch's iresnet50 backbone.pth
    assert sd["conv1.weight"].shape == (64, 3, 3, 3)
    assert sd["prelu.weight"].shape == (64,)
    assert sd["layer1.0.downsample.0.weight"].shape == (64, 64, 1, 1)
    assert sd["layer2.0.conv2.weight"].shape == (128, 128, 3, 3)
    assert "layer3.13.bn3.running_var" in sd and "layer3.14.bn1.weight" not in sd
    assert sd["layer4.2.prelu.weight"].shape == (512,)
    assert sd["bn2.weight"].shape == (512,)
    assert sd["fc.weight"].shape == (512, 512 * 7 * 7)
    assert sd["features.running_mean"].shape == (512,)
    n_params = sum(v.numel() for k, v in sd.items() if "running" not in k and "num_batches" not in k)
    assert 43e6 < n_params < 44.5e6  # iresnet50: ~43.6M parameters


def test_arcface_loads_a_saved_state_dict(tmp_path):
    torch.manual_seed(0)
    src = IResNet()
    for m in src.modules():  # non-trivial BN statistics so that a wrong load would show
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "backbone.pth"
    torch.save(src.state_dict(), path)
    enc = ArcFaceEncoder(path).freeze()
    src.eval()
    x = torch.rand(2, 3, 112, 112)
    with torch.no_grad():
        emb = enc(x)
        ref = torch.nn.functional.normalize(src((x - 0.5) / 0.5), dim=-1)
    assert emb.shape == (2, 512)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.allclose(emb, ref, atol=1e-4)


def test_arcface_rejects_a_foreign_state_dict(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="missing keys"):
        ArcFaceEncoder(path)


# ----------------------------------------------------------------------------- FaceNet
def test_facenet_missing_file_names_the_file(tmp_path):
    missing = tmp_path / "20180402-114759-vggface2.pt"
    with pytest.raises(MissingWeightsError) as err:
        FaceNetEncoder(missing)
    assert str(missing) in str(err.value) and "facenet" in str(err.value).lower()


def test_facenet_loads_a_saved_state_dict_without_downloading(tmp_path, monkeypatch):
    from facenet_pytorch import InceptionResnetV1
    import facenet_pytorch.models.inception_resnet_v1 as irv1

    def no_download(*_a, **_k):
        raise AssertionError("facenet-pytorch tried to download weights")

    monkeypatch.setattr(irv1, "download_url_to_file", no_download)
    torch.manual_seed(0)
    src = InceptionResnetV1(pretrained=None, classify=False).eval()
    state = dict(src.state_dict())
    state["logits.weight"] = torch.zeros(8631, 512)  # the released file carries its classifier
    state["logits.bias"] = torch.zeros(8631)
    path = tmp_path / "facenet.pt"
    torch.save(state, path)
    enc = FaceNetEncoder(path).freeze()
    x = torch.rand(2, 3, 160, 160)
    with torch.no_grad():
        emb = enc(x)
        ref = src((x * 255 - 127.5) / 128)
    assert emb.shape == (2, 512)
    assert torch.allclose(emb, ref, atol=1e-4)


# ----------------------------------------------------------------------------- factory
def test_parse_spec_and_factory(tmp_path, monkeypatch):
    assert parse_spec("none") == ("none", None)
    assert parse_spec("facenet:/a/b.pt") == ("facenet", "/a/b.pt")
    assert parse_spec(None) == ("none", None)
    with pytest.raises(ValueError, match="expected one of"):
        parse_spec("vgg:/x")
    with pytest.raises(ValueError, match="local weights file"):
        parse_spec("arcface")
    enc, warns = build_encoder("none")
    assert enc is None and warns and "perceptual loss off" in warns[0]
    monkeypatch.setenv("B3F_CACHE_DIR", str(tmp_path))
    enc, warns = build_encoder("idnet", train_missing=False)
    assert enc is None and "IdNet" in warns[0]
    with pytest.raises(MissingWeightsError):
        build_encoder(f"arcface:{tmp_path / 'nope.pth'}")


def test_encoder_gradients_reach_the_input_but_not_the_weights(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "backbone.pth"
    from benchmark3dface.perceptual.arcface import IRESNET_LAYERS

    torch.save(IResNet(IRESNET_LAYERS["r18"]).state_dict(), path)
    enc, _ = build_encoder(f"arcface-r18:{path}")
    x = torch.rand(1, 3, 96, 96, requires_grad=True)
    lm5 = (template_for(96) + 0.7)[None]
    loss = 1 - enc(x, lm5).sum() / math.sqrt(512)
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in enc.parameters())
