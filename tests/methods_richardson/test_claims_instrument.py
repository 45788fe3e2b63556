"""benchmarks/richardson_claims.py: its per-iterate error instrument on known answers."""

from __future__ import annotations

import torch


def test_errors_are_zero_at_the_ground_truth_and_positive_at_the_mean_face(coarsenet, weak_batch, monkeypatch,
                                                                         benchmark_script):
    mod = benchmark_script("richardson_claims")
    r_gt = coarsenet.target(weak_batch)
    monkeypatch.setattr(coarsenet, "iterate", lambda image: [torch.zeros_like(r_gt), r_gt])
    e = mod.iterate_errors(coarsenet, weak_batch)
    for k in ("nme", "pose", "true"):
        assert e[k].shape == (2, r_gt.shape[0])
        assert float(e[k][1].max()) < 0.05, k  # exact parameters: no error
        assert float(e[k][0].min()) > 0.05, k  # the mean face at the nominal pose: some error
    # the pose error of the mean-face start is the GT rotation angle itself
    rot = mod.euler_to_matrix(weak_batch.pose[:, :3].float())
    angle = torch.rad2deg(torch.arccos(((rot.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)))
    assert torch.allclose(e["pose"][0], angle, atol=1e-3)
