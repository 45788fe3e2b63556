"""Synthetic engine options for the seed methods' claims: per-view yaw triplets, fine detail
beyond the model's span, label noise for semi-supervised shapes, the Lambertian first-order
shading model; defaults change nothing."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import fields

import numpy as np
import pytest
import torch

from benchmark3dface.data.sample import Sample
from benchmark3dface.data.synthetic import ShardDataset, SynthConfig, write_shards
from benchmark3dface.geometry.mesh import vertex_normals
from benchmark3dface.geometry.rotation import euler_to_matrix
from benchmark3dface.methods.reconstruction import FaceReconstruction
from benchmark3dface.metrics import render_depth

NEW_META = ("view_yaws_deg", "detail_amplitude_mm", "label_noise_std", "shading")


def _same(a: Sample, b: Sample, skip: tuple[str, ...] = (), meta_skip: tuple[str, ...] = ()) -> None:
    """Bit-identical fields (NaNs included), except ``skip`` and the ``meta_skip`` meta keys."""
    for f in fields(Sample):
        if f.name in skip:
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, torch.Tensor):
            assert isinstance(y, torch.Tensor) and x.dtype == y.dtype and x.numpy().tobytes() == y.numpy().tobytes(), f.name
        elif f.name == "meta":
            keys = set(x) - set(meta_skip)
            assert keys == set(y) - set(meta_skip), f.name
            for k in keys:
                assert (torch.equal(x[k], y[k]) if isinstance(x[k], torch.Tensor) else x[k] == y[k]), k
        else:
            assert x == y, f.name


# ------------------------------------------------------------------------------ defaults
@pytest.mark.parametrize("cfg", [dict(mode="single", image_size=48), dict(mode="multiview", image_size=48),
                                 dict(mode="multiface", image_size=96, max_faces=3), dict(preset="gao", image_size=48)])
def test_default_options_are_the_old_samples(make_dataset, cfg):
    """The options are off by default: explicit zeros give the very same bytes, and no new key
    appears in the samples."""
    plain = make_dataset(size=3, **cfg)
    zero = make_dataset(size=3, detail_amplitude=0.0, label_noise_std=0.0, view_yaws=None, shading="sh2", **cfg)
    for i in range(3):
        _same(plain[i], zero[i])
        assert not set(NEW_META) & set(plain[i].meta)
    # the detail hook hands back the very tensor it was given when the option is off
    verts = torch.zeros(1, plain.model.num_vertices, 3)
    assert plain.engine._with_detail(verts, np.array([0])) is verts


# ----------------------------------------------------------------------------- view yaws
def test_view_yaws_triplet(make_dataset):
    sym = make_dataset(mode="multiview", image_size=40, size=2, view_yaw=30.0)
    trip = make_dataset(mode="multiview", image_size=40, size=2, view_yaws=(-30, 0, 30))
    for i in range(2):  # (-y, 0, y) is view_yaw = y: same samples, only the meta key differs
        _same(sym[i], trip[i], meta_skip=("view_yaw_deg", "view_yaws_deg"))
        assert trip[i].meta["view_yaws_deg"] == [-30.0, 0.0, 30.0] and "view_yaw_deg" not in trip[i].meta
    odd = make_dataset(mode="multiview", image_size=40, size=2, view_yaws=(-45.0, 5.0, 20.0))
    for i in range(2):
        s = odd[i]
        assert torch.allclose(s.yaw * 180 / math.pi, torch.tensor([-45.0, 5.0, 20.0]), atol=1e-4)
        assert torch.equal(s.pose[:, 0], s.pose[0:1, 0].expand(3))  # shared pitch
    cfg = SynthConfig(mode="multiview", view_yaws=[-10, 0, 10])
    assert cfg.view_yaws == (-10.0, 0.0, 10.0) and SynthConfig.from_dict(cfg.to_dict()) == cfg
    for bad, msg in (((-10, 10), "three yaws"), ((-100, 0, 10), "three yaws")):
        with pytest.raises(ValueError, match=msg):
            SynthConfig(mode="multiview", view_yaws=bad)
    with pytest.raises(ValueError, match="multiview"):
        SynthConfig(mode="set", view_yaws=(-10, 0, 10))


# -------------------------------------------------------------------------------- detail
def test_detail_displaces_the_gt_mesh_along_normals(make_dataset, tiny_model):
    amp = 1.5
    plain = make_dataset(size=3, image_size=64, occlusion_prob=0.0)
    detail = make_dataset(size=3, image_size=64, occlusion_prob=0.0, detail_amplitude=amp)
    again = make_dataset(size=3, image_size=64, occlusion_prob=0.0, detail_amplitude=amp)
    for i in range(3):
        p, d = plain[i], detail[i]
        _same(d, again[i])  # deterministic
        # everything but the geometry and what is rendered from it is unchanged
        _same(p, d, skip=("image", "lm68", "lm5", "lm68_3d", "lm68_visible", "parse", "skin_mask", "face_mask",
                          "depth", "vertices", "vertices_cam", "occlusion_mask", "occluded"),
              meta_skip=("detail_amplitude_mm",))
        assert d.meta["detail_amplitude_mm"] == amp
        disp = d.vertices - p.vertices
        n = vertex_normals(p.vertices[None].double(), tiny_model.triangles)[0].float()
        assert disp.norm(dim=-1).max() == pytest.approx(amp, abs=1e-4)  # the field peaks at 1
        assert torch.linalg.cross(disp, n).norm(dim=-1).max() < 1e-4  # along the normals
        assert (disp * n).sum(-1).abs().mean() > 0.05 * amp  # a field, not a few spikes
        # the rendered image and depth are those of the detailed mesh
        assert not torch.equal(p.image, d.image)
        pose = d.pose
        face = FaceReconstruction(d.vertices, tiny_model.triangles, rotation=euler_to_matrix(pose[:3]),
                                  translation=pose[3:], camera={"kind": "perspective"})
        rendered = render_depth(face, d.camera, d.depth.shape)
        both = torch.isfinite(rendered) & torch.isfinite(d.depth)
        assert both.sum() > 0.99 * torch.isfinite(d.depth).sum()
        assert (rendered[both] - d.depth[both]).abs().max() < 1e-3


def test_detail_is_a_property_of_the_identity(make_dataset):
    mv_plain = make_dataset(mode="multiview", image_size=40, size=2)
    mv = make_dataset(mode="multiview", image_size=40, size=2, detail_amplitude=2.0)
    for i in range(2):
        disp = mv[i].vertices - mv_plain[i].vertices  # (3, N, 3): one expression, three views
        assert disp.abs().max() > 1.0
        assert (disp - disp[0]).abs().max() < 1e-5
    # multi-face images: the same faces, placed the same, each with its identity's detail
    mf_plain = make_dataset(mode="multiface", image_size=96, size=2, max_faces=4)
    mf = make_dataset(mode="multiface", image_size=96, size=2, max_faces=4, detail_amplitude=2.0)
    for i in range(2):
        assert torch.equal(mf[i].coeffs, mf_plain[i].coeffs) and torch.equal(mf[i].centers, mf_plain[i].centers)
        disp = (mf[i].vertices - mf_plain[i].vertices).norm(dim=-1)
        assert torch.allclose(disp.amax(1), torch.full((len(disp),), 2.0), atol=1e-4)
    cfg = SynthConfig(detail_amplitude=2.0)
    assert SynthConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="detail_amplitude"):
        SynthConfig(detail_amplitude=-1.0)


_DETAIL_HASH = """
import hashlib
from benchmark3dface.data.synthetic import SyntheticFaceDataset
from benchmark3dface.data.synthetic.testing import tiny_facemodel
ds = SyntheticFaceDataset({"mode": "multiview", "image_size": 48, "detail_amplitude": 1.5}, "train", 2, 0,
                          tiny_facemodel())
h = hashlib.sha256()
for i in range(2):
    s = ds[i]
    for k in ("image", "depth", "vertices", "vertices_cam", "lm68"):
        h.update(getattr(s, k).numpy().tobytes())
print(h.hexdigest())
"""


def test_detail_gives_the_same_bytes_on_other_cpu_code_paths():
    """MKL's SSE4.2 path and ATen's generic kernels must not change a bit of the detailed GT
    (a torch.linalg.cross / MKL-sqrt normal did: fused multiply-adds, vector-math rounding)."""
    outs = set()
    for extra in ({}, {"MKL_CBWR": "SSE4_2", "ATEN_CPU_CAPABILITY": "default"}):
        env = dict(os.environ, **extra)
        outs.add(subprocess.run([sys.executable, "-c", _DETAIL_HASH], env=env, capture_output=True, text=True,
                                check=True).stdout.strip())
    assert len(outs) == 1


def test_detail_shards_store_their_meshes(tmp_path, tiny_model):
    out = tmp_path / "detail"
    cfg = {"mode": "single", "image_size": 32, "detail_amplitude": 1.0}
    write_shards(out, cfg, split="val", num_samples=2, facemodel=tiny_model, progress=False)
    assert json.loads((out / "manifest.json").read_text())["vertices"] == "stored"
    back = ShardDataset(out, facemodel=tiny_model)
    from benchmark3dface.data.synthetic import SyntheticFaceDataset

    ref = SyntheticFaceDataset(back.config, "val", 2, 0, tiny_model)
    for i in range(2):
        assert torch.equal(back[i].vertices, ref[i].vertices)


# --------------------------------------------------------------------------- label noise
def test_label_noise_on_labelled_train_shapes_only(make_dataset, tiny_model):
    lay, std = tiny_model.layout, 0.5
    exact = make_dataset(size=8, image_size=40, labelled_fraction=0.5)
    noisy = make_dataset(size=8, image_size=40, labelled_fraction=0.5, label_noise_std=std)
    deltas = []
    for i in range(8):
        e, n = exact[i], noisy[i]
        if not e.labelled:  # unlabelled samples have no shape label to perturb
            _same(e, n)
            continue
        # the observations are exact; only the shape labels carry the noise
        _same(e, n, skip=("coeffs", "vertices", "vertices_cam"), meta_skip=("label_noise_std",))
        assert n.meta["label_noise_std"] == std
        for group in ("tex", "angles", "sh", "trans"):
            assert torch.equal(e.coeffs[lay.slice(group)], n.coeffs[lay.slice(group)]), group
        deltas.append(torch.cat([(n.coeffs - e.coeffs)[lay.slice("id")], (n.coeffs - e.coeffs)[lay.slice("exp")]]))
        # the label mesh is the model's decode of the noisy label coefficients, posed like the GT
        geo = tiny_model.decode(n.coeffs[None])
        assert (geo.vertices[0] - n.vertices).abs().max() < 1e-3
        assert (geo.world[0] - n.vertices_cam).abs().max() < 1e-3
    d = torch.cat(deltas)
    assert len(deltas) >= 2 and 0.3 < float(d.std()) < 0.7  # ~ N(0, 0.5^2), 12 values a sample
    # val / test keep exact labels
    for split in ("val", "test"):
        a = make_dataset(split=split, size=3, image_size=40)
        b = make_dataset(split=split, size=3, image_size=40, label_noise_std=std)
        for i in range(3):
            _same(a[i], b[i])
    with pytest.raises(ValueError, match="label_noise_std"):
        SynthConfig(label_noise_std=-0.1)


# ------------------------------------------------------------------------------- shading
@pytest.mark.parametrize("cfg", [dict(mode="single", image_size=48), dict(mode="multiface", image_size=96, max_faces=3)])
def test_lambertian_shading_changes_only_the_light_and_the_image(make_dataset, cfg):
    sh2 = make_dataset(size=3, **cfg)
    lam = make_dataset(size=3, shading="lambertian_sh1", **cfg)
    lay = sh2.model.layout
    for i in range(3):
        a, b = sh2[i], lam[i]
        _same(a, b, skip=("image", "coeffs"), meta_skip=("shading",))
        assert b.meta["shading"] == "lambertian_sh1" and not torch.equal(a.image, b.image)
        ca, cb = a.coeffs.reshape(-1, lay.size), b.coeffs.reshape(-1, lay.size)
        sh = lay.slice("sh")
        rest = torch.ones(lay.size, dtype=torch.bool)
        rest[sh] = False
        assert torch.equal(ca[:, rest], cb[:, rest])
        ga, gb = ca[:, sh].reshape(-1, 3, 9).double(), cb[:, sh].reshape(-1, 3, 9).double()
        # first order kept as the mean of the three channels, second order dropped, no colour
        assert torch.allclose(gb[:, :, :4], ga[:, :, :4].mean(1, keepdim=True).expand_as(gb[:, :, :4]), atol=1e-6)
        assert gb[:, :, 4:].abs().max() == 0 and ga[:, :, 4:].abs().max() > 0
    with pytest.raises(ValueError, match="shading"):
        SynthConfig(shading="phong")


def test_test_set_identity_leaves_out_added_options_at_their_off_value():
    """A test set's identity (its config hash) does not change when an option is added whose
    default reproduces the old samples; it does when the option is used."""
    from benchmark3dface.benchmark.profile import BenchmarkProfile, TestSet
    from benchmark3dface.data.synthetic.config import ADDED_OFF

    assert ADDED_OFF == {"shading": "sh2"} and SynthConfig().shading == "sh2"
    p = BenchmarkProfile(test_sets={"single": TestSet(size=3), "single_lam": TestSet(
        size=3, options={"shading": "lambertian_sh1"}), "single_sh2": TestSet(size=3, options={"shading": "sh2"})})
    assert "shading" not in p.test_config("single")["engine"]
    assert p.test_config("single_sh2")["engine"] == p.test_config("single")["engine"]
    assert p.test_config("single_lam")["engine"]["shading"] == "lambertian_sh1"
    assert "detail_amplitude" in p.test_config("single")["engine"]  # the rule is for the listed options only
