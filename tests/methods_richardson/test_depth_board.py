"""The depth board (`single_weak`): coarsefine's own depth map and deep3d's rendered mesh are
both scored by the depth protocol (median alignment)."""

from __future__ import annotations

import math

import torch

from benchmark3dface.metrics.depth import DepthError, depth_errors
from benchmark3dface.methods.registry import get_method


def test_deep3d_is_on_the_depth_board_and_its_mesh_renders_to_depth(weak_batch):
    cls = get_method("deep3d")
    assert "single_weak" in cls.spec.eval_kinds
    torch.manual_seed(0)
    m = cls(backbone="resnet18", image_size=64, perceptual="none").eval()
    d = DepthError(align="median")
    d.update(m.reconstruct(weak_batch), weak_batch)
    r = d.compute()
    assert r.n_failed == 0 and math.isfinite(r.metrics["mean"].value) and r.metrics["coverage"].value > 0.3


def test_coarsefine_depth_is_what_the_protocol_scores(weak_batch):
    from b3f_methods.richardson import CoarseFine

    torch.manual_seed(0)
    m = CoarseFine(image_size=96)
    recs = m.reconstruct(weak_batch)
    # tilt the returned depth maps: the protocol must score the face's own map, not its mesh
    tilt = torch.arange(96, dtype=torch.float32)[None, :] * 0.2
    for rec in recs:
        rec.faces[0].depth = rec.faces[0].depth + tilt
    d = DepthError(align="median")
    d.update(recs, weak_batch)
    got = d.compute().metrics["mean"].value
    per = []
    for rec, gt in zip(recs, weak_batch.depth):
        z = rec.faces[0].depth
        per.append(float(depth_errors(z, gt, gt.isfinite() & z.isfinite(), "median").mean()))
    assert math.isclose(got, sum(per) / len(per), rel_tol=1e-5)
    assert got > 1.0  # the tilt (up to 19 mm) is in the score


def test_fitting_lands_a_row_on_the_depth_board(tmp_path):
    """The optimisation baseline is on the FRGC-style depth board too (issue 17), through the
    benchmark runner: its fitted mesh is rendered to depth and scored."""
    from benchmark3dface.benchmark.profile import load_profile
    from benchmark3dface.benchmark.runner import BenchmarkRunner
    from benchmark3dface.leaderboard import open_store

    assert "single_weak" in get_method("fitting").spec.eval_kinds
    (tmp_path / "benchmark.yaml").write_text(
        "name: quick\nseed: 0\nfacemodel: procedural\nnum_workers: 0\nlandmarks: detector\ngallery: 0\n"
        "test_sets:\n  single_weak: {kind: single, size: 2, image_size: 96, batch_size: 2,\n"
        "                options: {projection: weak_perspective, grayscale: true}}\n"
        "protocols:\n  single_weak: [{depth: {align: median}}]\n")
    runner = BenchmarkRunner(load_profile(str(tmp_path / "benchmark.yaml")), open_store(str(tmp_path / "lb.sqlite")),
                             tmp_path / "out", progress=False, use_wandb=False)
    [out] = [o for o in runner.run(["fitting"]) if o.dataset == "synthetic-single_weak@96"]
    assert out.status == "done", out.message
    depth = out.results["depth"].metrics
    assert depth["mean"].n + depth["mean"].n_failed == 2 and math.isfinite(depth["mean"].value)
