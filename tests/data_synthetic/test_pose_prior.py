"""The synthetic pose prior: AFLW2000-3D's |yaw| distribution by default, the earlier uniform
+-90 degrees (the ``hard`` variant) unchanged bit for bit under ``pose_prior: uniform``."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from benchmark3dface.data.synthetic import SynthConfig
from benchmark3dface.data.synthetic.scene import sample_angles, yaw_from_uniform

# AFLW2000-3D |yaw| counts (3DDFA's AFLW2000-3D.pose.npy; ../shared/REFERENCE.md, "Real pose
# statistics"): 0-30: 672 + 393 + 247 = 1312, 30-60: 137 + 117 + 129 = 383, 60-90 (with the 7
# annotations beyond 90): 143 + 115 + 40 + 7 = 305, of 2000 images.
AFLW_BIN_MASSES = (1312 / 2000, 383 / 2000, 305 / 2000)
AFLW_10DEG_COUNTS = (672, 393, 247, 137, 117, 129, 143, 115, 40 + 7)


def _yaws_deg(n: int, seed: int, yaw_max: float = 90.0, prior: str = "aflw2000") -> np.ndarray:
    return np.degrees(sample_angles(np.random.default_rng(seed), n, yaw_max, 25.0, 20.0, prior)[:, 1])


def test_aflw2000_bin_masses_of_2000_yaws():
    yaw = _yaws_deg(2000, seed=11)
    masses = np.histogram(np.abs(yaw), bins=[0, 30, 60, 90])[0] / len(yaw)
    assert np.all(np.abs(yaw) <= 90.0)
    assert np.allclose(masses, AFLW_BIN_MASSES, atol=0.03), masses
    # finer: the 10-degree bins, and both signs
    fine = np.histogram(np.abs(yaw), bins=np.arange(0, 91, 10))[0] / len(yaw)
    assert np.allclose(fine, np.array(AFLW_10DEG_COUNTS) / 2000, atol=0.03), fine
    assert abs(np.mean(yaw > 0) - 0.5) < 0.04
    # the uniform prior, for contrast: half of it beyond 45 degrees
    uni = _yaws_deg(2000, seed=11, prior="uniform")
    assert abs(np.mean(np.abs(uni) > 45.0) - 0.5) < 0.04 and np.mean(np.abs(yaw) > 45.0) < 0.30


def test_yaw_max_truncates_and_keeps_the_bin_proportions():
    yaw = _yaws_deg(2000, seed=3, yaw_max=30.0)
    assert np.abs(yaw).max() <= 30.0
    fine = np.histogram(np.abs(yaw), bins=[0, 10, 20, 30])[0] / len(yaw)
    assert np.allclose(fine, np.array([672, 393, 247]) / 1312, atol=0.03), fine
    assert np.all(_yaws_deg(50, seed=3, yaw_max=0.0) == 0.0)
    # a limit inside a bin keeps that bin's density: |yaw| uniform within [0, 5]
    five = np.abs(_yaws_deg(2000, seed=4, yaw_max=5.0))
    assert five.max() <= 5.0 and abs(np.mean(five < 2.5) - 0.5) < 0.04


def test_the_uniform_prior_is_the_old_formula_bit_for_bit():
    for seed, n, lims in ((0, 1, (25.0, 90.0, 20.0)), (5, 257, (10.0, 45.0, 5.0)), (9, 3, (0.0, 0.0, 0.0))):
        want = (np.random.default_rng(seed).random((n, 3)) * 2.0 - 1.0) * np.radians([lims[0], lims[1], lims[2]])
        got = sample_angles(np.random.default_rng(seed), n, lims[1], lims[0], lims[2], "uniform")
        assert np.array_equal(got, want) and got.dtype == want.dtype


def test_priors_differ_only_in_the_yaw_and_map_it_monotonically():
    a = sample_angles(np.random.default_rng(1), 500, 90.0, 25.0, 20.0, "uniform")
    b = sample_angles(np.random.default_rng(1), 500, 90.0, 25.0, 20.0, "aflw2000")
    assert np.array_equal(a[:, [0, 2]], b[:, [0, 2]])  # pitch and roll untouched
    order = np.argsort(a[:, 1])
    assert np.all(np.diff(b[order, 1]) >= 0)  # the same quantile: a monotone map
    assert np.array_equal(np.sign(a[:, 1]), np.sign(b[:, 1]))
    # the map itself at the bin edges: |s| = cumulative mass -> the edge
    s = np.array([672 / 2000, (672 + 393 + 247) / 2000, 1.0 - 1e-12, -0.5])
    assert np.allclose(yaw_from_uniform(s, 90.0, "aflw2000")[:3], [10.0, 30.0, 90.0], atol=1e-6)
    cdf_mid = (672 + 393 + 247 + 137 + 117) / 2000  # exactly 0.783: the 50-degree edge
    assert yaw_from_uniform(np.array([-cdf_mid]), 90.0, "aflw2000")[0] == pytest.approx(-50.0)


def test_default_is_aflw2000_and_per_seed_deterministic(make_dataset):
    assert SynthConfig().pose_prior == "aflw2000"
    a, b = make_dataset(size=6, seed=4, image_size=32), make_dataset(size=6, seed=4, image_size=32)
    other = make_dataset(size=6, seed=5, image_size=32)
    ya = torch.stack([a[i].yaw for i in range(6)])
    assert torch.equal(ya, torch.stack([b[i].yaw for i in range(6)]))
    assert not torch.equal(ya, torch.stack([other[i].yaw for i in range(6)]))
    assert torch.equal(a[2].image, b[2].image)


def test_engine_prior_changes_only_the_yaw(make_dataset, tiny_model):
    """Same seed, the two priors: every drawn coefficient equal but the yaw, which is the
    aflw2000 map of the uniform yaw (the translation follows from the crop alignment of the posed
    face, so it changes with the yaw)."""
    new = make_dataset(size=5, seed=2, image_size=32)
    old = make_dataset(size=5, seed=2, image_size=32, pose_prior="uniform")
    yaw_col = tiny_model.layout.slice("angles").start + 1
    for i in range(5):
        cn, co = new[i].coeffs, old[i].coeffs
        keep = torch.ones(cn.shape[-1], dtype=torch.bool)
        keep[yaw_col] = False
        keep[tiny_model.layout.slice("trans")] = False
        assert torch.equal(cn[..., keep], co[..., keep])
        s = np.degrees(co[..., yaw_col].double().numpy()) / 90.0
        want = np.radians(yaw_from_uniform(s, 90.0, "aflw2000"))
        assert np.allclose(cn[..., yaw_col].double().numpy(), want, atol=1e-6)


def test_uniform_prior_reproduces_the_old_default_samples(make_dataset):
    """Coefficient bytes (they hold every face's pose) of samples drawn by the engine before the
    pose prior existed (its default was uniform +-90 degrees), computed with that code: the
    ``uniform`` prior must reproduce them exactly."""
    pinned = {"single": "51739d4b87d4b1827c94bd03fab2321eb15f2dee889b0ec8fb3edd1eac662273",
              "multiface": "ebd010f28c6a748726eb798042e80d679258fb97b8c535b33d7a8c56e19f2e8f"}
    for mode, digest in pinned.items():
        ds = make_dataset(split="test", size=4, seed=7, mode=mode, image_size=32, max_faces=3, pose_prior="uniform")
        h = hashlib.sha256()
        for i in range(4):
            h.update(ds[i].coeffs.numpy().tobytes())
        assert h.hexdigest() == digest, mode


def test_bad_prior_is_one_clear_error():
    with pytest.raises(ValueError, match="pose_prior must be one of"):
        SynthConfig(pose_prior="aflw")
    with pytest.raises(ValueError, match="unknown pose_prior"):
        sample_angles(np.random.default_rng(0), 2, 90.0, 25.0, 20.0, "flat")
    cfg = SynthConfig(pose_prior="uniform")
    assert SynthConfig.from_dict(cfg.to_dict()) == cfg
