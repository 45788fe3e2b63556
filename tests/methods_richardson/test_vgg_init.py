"""FineNet's VGG-16 layout and VGG-Face initialisation (issue 17): the weight file is read in the
format of the common PyTorch conversion of VGG-Face (a torch.save'd state dict conv1_1.weight ...
conv5_3.*, fc6-fc8), the pretrained filters see VGG's input convention at step 0, bad files are
refused in one line, and the default FineNet is exactly today's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

# VGG-16's conv layers (out, in); the fixtures write conv1-3 at their true shapes
TRUE_CONVS = {"conv1_1": (64, 3), "conv1_2": (64, 64), "conv2_1": (128, 64), "conv2_2": (128, 128),
              "conv3_1": (256, 128), "conv3_2": (256, 256), "conv3_3": (256, 256)}
# the mean pixel of the VGG-Face conversion's meta (RGB, 0-255), typed here from its published values
MEAN_RGB = (129.186279296875, 104.76238250732422, 93.59396362304688)


def _vgg_face_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict in the true key layout with random tensors. conv4_*, conv5_* and fc6-fc8 are
    present but down-sized (the true fc6 alone is 4096 x 25088 floats): the loader must ignore them."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for name, (cout, cin) in TRUE_CONVS.items():
        sd[f"{name}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * 0.05
        sd[f"{name}.bias"] = torch.randn(cout, generator=g) * 0.1
    for name in ("conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3"):
        sd[f"{name}.weight"] = torch.randn(4, 4, 3, 3, generator=g)
        sd[f"{name}.bias"] = torch.randn(4, generator=g)
    for name in ("fc6", "fc7", "fc8"):
        sd[f"{name}.weight"] = torch.randn(8, 16, generator=g)
        sd[f"{name}.bias"] = torch.randn(8, generator=g)
    return sd


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vgg") / "vgg_face_dag.pth"
    sd = _vgg_face_state()
    torch.save(sd, path)
    return path, sd


def _inputs(b=2, h=20, w=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    gray = torch.rand(b, 1, h, w, generator=g)
    z0 = 50.0 + 10.0 * torch.randn(b, h, w, generator=g)
    mask = torch.zeros(b, h, w, dtype=torch.bool)
    mask[:, 3:h - 3, 4:w - 4] = True
    return gray, z0, mask


def test_loaded_conv_weights_equal_the_files_tensors(vgg_file):
    from b3f_methods.richardson.finenet import FineNet

    path, sd = vgg_file
    net = FineNet(vgg_weights=str(path))
    assert net.arch == "vgg16" and net.init_source == f"vgg-face:{path}"
    convs = {"conv1_1": net.s1[0], "conv1_2": net.s1[2], "conv2_1": net.s2[0], "conv2_2": net.s2[2],
             "conv3_1": net.s3[0], "conv3_2": net.s3[2], "conv3_3": net.s3[4]}
    for name, conv in convs.items():
        w = conv.weight[:, :3] if name == "conv1_1" else conv.weight
        assert torch.equal(w, sd[f"{name}.weight"]), name
        assert torch.equal(conv.bias, sd[f"{name}.bias"]), name
    # conv1_1's two extra inputs (normalised depth, mask) start at zero
    assert net.s1[0].weight.shape == (64, 5, 3, 3)
    assert torch.count_nonzero(net.s1[0].weight[:, 3:]) == 0
    # the stages stop before the third pooling: 2 + 2 + 3 convs
    assert sum(isinstance(m, nn.Conv2d) for s in (net.s1, net.s2, net.s3) for m in s) == 7


def test_first_stage_sees_vgg_faces_input_convention(vgg_file):
    """With zero extra-input weights, stage 1's response inside the forward pass equals a plain
    conv1_1 -> relu -> conv1_2 -> relu of the file's tensors on the gray image replicated to RGB,
    0-255, minus the mean pixel -- whatever the depth and the mask are."""
    from b3f_methods.richardson.finenet import FineNet

    path, sd = vgg_file
    net = FineNet(vgg_weights=str(path))
    gray, z0, mask = _inputs()  # 20 x 24: multiples of 4, no padding
    seen = {}
    net.s1.register_forward_hook(lambda mod, inp, out: seen.setdefault("f1", out.clone()))
    with torch.no_grad():
        net(gray, z0, mask)
    rgb = torch.cat([gray * 255.0 - MEAN_RGB[0], gray * 255.0 - MEAN_RGB[1], gray * 255.0 - MEAN_RGB[2]], 1)
    ref = F.relu(F.conv2d(rgb, sd["conv1_1.weight"], sd["conv1_1.bias"], padding=1))
    ref = F.relu(F.conv2d(ref, sd["conv1_2.weight"], sd["conv1_2.bias"], padding=1))
    assert seen["f1"].shape == ref.shape
    torch.testing.assert_close(seen["f1"], ref, rtol=1e-5, atol=1e-4)
    # and the grayscale channels really are in 0-255 minus the mean: a [0,1] or [-1,1] input differs
    wrong = F.relu(F.conv2d(torch.cat([gray * 2 - 1] * 3, 1), sd["conv1_1.weight"], sd["conv1_1.bias"], padding=1))
    wrong = F.relu(F.conv2d(wrong, sd["conv1_2.weight"], sd["conv1_2.bias"], padding=1))
    assert not torch.allclose(seen["f1"], wrong, atol=1e-2)


def test_vgg_finenet_starts_as_z0_and_its_extra_inputs_train(vgg_file):
    from b3f_methods.richardson.finenet import FineNet

    path, _ = vgg_file
    torch.manual_seed(0)
    net = FineNet(vgg_weights=str(path))
    gray, z0, mask = _inputs(h=22, w=26)  # not multiples of 4: the padded path
    out = net(gray, z0, mask)
    assert out.shape == z0.shape and torch.equal(out, z0)
    # hypercolumn: 3 input channels + 64 + 128 + 256
    assert net.head[0].in_channels == 451
    # the zero extra-input weights are trainable: once the head is non-zero they get gradients
    with torch.no_grad():
        net.head[-1].weight.normal_()
    net(gray, z0, mask).sum().backward()
    assert net.s1[0].weight.grad[:, 3:].abs().sum() > 0


def test_vgg16_from_scratch_and_arch_switches(vgg_file):
    from b3f_methods.richardson.finenet import FineNet, load_vgg_face

    scratch = FineNet(arch="vgg16")
    assert scratch.init_source == "scratch" and scratch.s1[0].weight.shape == (64, 5, 3, 3)
    assert FineNet().init_source == "scratch" and FineNet().arch == "small"
    path, sd = vgg_file
    load_vgg_face(scratch, str(path))
    assert scratch.init_source == f"vgg-face:{path}" and torch.equal(scratch.s3[4].weight, sd["conv3_3.weight"])
    with pytest.raises(ValueError, match="vgg16"):
        FineNet(arch="small", vgg_weights=str(path))
    with pytest.raises(ValueError, match="vgg16"):
        load_vgg_face(FineNet(), str(path))
    with pytest.raises(ValueError, match="arch"):
        FineNet(arch="vgg19")


def _refusal(path, exc_type=ValueError) -> str:
    from b3f_methods.richardson.finenet import FineNet

    with pytest.raises(exc_type) as info:
        FineNet(vgg_weights=str(path))
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg, msg
    return msg


def test_file_lacking_a_key_is_refused_in_one_line(tmp_path):
    sd = _vgg_face_state()
    del sd["conv3_3.weight"]
    torch.save(sd, tmp_path / "no33.pth")
    msg = _refusal(tmp_path / "no33.pth")
    assert "1 of the 14" in msg and "conv3_3.weight" in msg and "missing" in msg


def test_file_with_a_wrong_shape_is_refused_with_the_first_bad_key_and_count(tmp_path):
    sd = _vgg_face_state()
    sd["conv2_1.weight"] = torch.zeros(128, 3, 3, 3)
    del sd["conv1_2.bias"]
    sd["conv3_1.bias"] = torch.full((256,), float("nan"))
    torch.save(sd, tmp_path / "shape.pth")
    msg = _refusal(tmp_path / "shape.pth")
    assert "3 of the 14" in msg and "conv1_2.bias" in msg and "conv2_1" not in msg  # the first bad key only
    sd = _vgg_face_state()
    sd["conv2_1.weight"] = torch.zeros(128, 3, 3, 3)
    torch.save(sd, tmp_path / "shape1.pth")
    msg = _refusal(tmp_path / "shape1.pth")
    assert "1 of the 14" in msg and "conv2_1.weight" in msg and "(128, 3, 3, 3)" in msg


def test_file_that_is_not_a_state_dict_is_refused(tmp_path):
    torch.save([torch.zeros(3)], tmp_path / "list.pth")
    assert "list" in _refusal(tmp_path / "list.pth")
    torch.save(nn.Conv2d(3, 64, 3), tmp_path / "module.pth")  # a pickled module: not weights_only
    assert "torch.load" in _refusal(tmp_path / "module.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    _refusal(tmp_path / "junk.pth")


def test_missing_file_is_refused_naming_it(tmp_path):
    msg = _refusal(tmp_path / "nowhere" / "vgg_face_dag.pth", FileNotFoundError)
    assert "VGG-Face" in msg


def _small_layout(w: int, hyper: int) -> dict[str, tuple[int, ...]]:
    """The small FineNet's parameters as documented (3x3 conv pairs at 1, 1/2, 1/4 resolution
    with w, 2w, 4w channels; 2x2 up-convolutions; a 1x1 head on the 3 + 7w hypercolumn)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for stage, (cin, cout) in enumerate(((3, w), (w, 2 * w), (2 * w, 4 * w)), start=1):
        shapes[f"s{stage}.0.weight"], shapes[f"s{stage}.0.bias"] = (cout, cin, 3, 3), (cout,)
        shapes[f"s{stage}.2.weight"], shapes[f"s{stage}.2.bias"] = (cout, cout, 3, 3), (cout,)
    shapes["up2.weight"], shapes["up2.bias"] = (2 * w, 2 * w, 2, 2), (2 * w,)
    for i in (0, 2):
        shapes[f"up3.{i}.weight"], shapes[f"up3.{i}.bias"] = (4 * w, 4 * w, 2, 2), (4 * w,)
    for i, (cin, cout) in zip((0, 2, 4), ((3 + 7 * w, hyper), (hyper, hyper // 2), (hyper // 2, 1))):
        shapes[f"head.{i}.weight"], shapes[f"head.{i}.bias"] = (cout, cin, 1, 1), (cout,)
    return shapes


@pytest.mark.parametrize("kwargs", [{}, {"width": 8, "hyper": 32, "out_scale_mm": 1.5}])
def test_default_finenet_keeps_the_small_layout(kwargs):
    from b3f_methods.richardson.finenet import FineNet

    net = FineNet(**kwargs)
    assert net.arch == "small" and net.init_source == "scratch"
    got = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert got == _small_layout(kwargs.get("width", 16), kwargs.get("hyper", 64))
    gray, z0, mask = _inputs(h=22, w=26)
    assert torch.equal(net(gray, z0, mask), z0)  # zero-initialised head: z = z0


def test_coarsefine_takes_the_vgg_file_and_says_which_init_in_its_warnings(vgg_file):
    """`coarsefine`'s run config records FineNet's initialisation: the runner stores
    ``config_warnings`` with every leaderboard run."""
    from b3f_methods.richardson import CoarseFine

    path, sd = vgg_file
    torch.manual_seed(0)
    m = CoarseFine(image_size=64, fine_vgg_weights=str(path))
    assert m.finenet.arch == "vgg16" and torch.equal(m.finenet.s3[4].weight, sd["conv3_3.weight"])
    assert m.config_warnings == [] and m.finenet.init_source == f"vgg-face:{path}"
    plain = CoarseFine(image_size=64)
    assert plain.finenet.arch == "small"
    assert plain.config_warnings == ["FineNet (small) from scratch: no VGG-Face file given (fine_vgg_weights)"]
