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


def test_refine_instrument_scores_the_depth_it_is_given(benchmark_script, monkeypatch, capsys):
    """`refine --coarse gt` without detail: the coarse depth is exact (error 0); an optimiser that
    returns the coarse depth shifted by a constant scores 0 too (median alignment), one that tilts
    it scores > 0, for both the estimated-albedo and the GT-albedo rows."""
    import re

    import b3f_methods.richardson.coarsefine as cf
    import b3f_methods.richardson.finenet as fn

    mod = benchmark_script("richardson_claims")
    for shift, tilted in ((3.0, False), (0.0, True)):
        def fake(p, steps, lr, weights, shift=shift, tilted=tilted):
            z = p.z0 + shift
            if tilted:
                z = z + torch.arange(z.shape[-1], dtype=z.dtype) * 0.1
            return z

        monkeypatch.setattr(cf, "sfs_optimize", fake)
        monkeypatch.setattr(fn, "sfs_optimize", fake)
        mod.main(["refine", "-n", "2", "--size", "64", "--detail", "0", "--coarse", "gt", "--gt-albedo"])
        out = capsys.readouterr().out
        got = re.findall(r"depth mean\s+coarse\s+([\d.]+)\s+(optimize(?:, GT albedo)?)\s+([\d.]+)", out)
        assert [g[1] for g in got] == ["optimize", "optimize, GT albedo"], out
        for coarse, _, refined in got:
            assert float(coarse) == 0.0
            assert (float(refined) > 0.5) if tilted else (float(refined) < 1e-3), out


def test_e2e_instrument_of_a_checkpoint_against_itself(benchmark_script, tmp_path, capsys):
    """`e2e` with A = B: every paired difference is 0 and the coarse drift is 0."""
    import re

    from b3f_methods.richardson import CoarseFine

    mod = benchmark_script("richardson_claims")
    torch.manual_seed(0)
    m = CoarseFine(image_size=64)
    with torch.no_grad():
        m.net.get_classifier().bias.normal_(0, 0.05)
    ck = tmp_path / "cf.ckpt"
    torch.save({"state_dict": m.state_dict(), "hyper_parameters": dict(m.hparams),
                "pytorch-lightning_version": "2.0.0"}, ck)
    mod.main(["e2e", "--fine", str(ck), "--ckpt-b", str(ck), "-n", "2", "--size", "64", "--detail", "2"])
    out = capsys.readouterr().out
    rows = re.findall(r"^(.+?)\s+A\s+([\d.]+)\s+B\s+([\d.]+)", out, re.M)
    assert len(rows) == 6, out
    assert all(a == b for _, a, b in rows) and float(rows[0][1]) > 0.1, out
    assert "mean squared vertex distance 0.00 mm^2" in out


def test_shading_instrument_is_zero_on_a_black_image_and_linear_in_the_image(benchmark_script, monkeypatch,
                                                                           capsys):
    """`shading`: the least-squares light makes the residual 0 for a black image and exactly
    twice as large for an image twice as bright."""
    import re

    mod = benchmark_script("richardson_claims")
    real = mod.test_batches

    def scaled(k):
        def batches(*a, **kw):
            out = real(*a, **kw)
            for b in out:
                b.image = b.image * k
            return out
        return batches

    got = {}
    for k in (1.0, 2.0, 0.0):
        monkeypatch.setattr(mod, "test_batches", scaled(k))
        mod.main(["shading", "-n", "2", "--size", "64", "--detail", "0"])
        got[k] = [float(x) for x in re.findall(r"^face\s+mean\s+([\d.]+)", capsys.readouterr().out, re.M)]
    assert len(got[1.0]) == 1 and got[1.0][0] > 0.5
    assert abs(got[2.0][0] - 2 * got[1.0][0]) < 0.02 and got[0.0][0] == 0.0


def test_update_similarity_on_known_updates(benchmark_script):
    mod = benchmark_script("richardson_claims")
    r0 = torch.zeros(2, 3)
    u0 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    # a repeated update (ratio 1, cos 1), a halved one (0.5, 1), an orthogonal one (ratio 1, cos 0)
    its = [r0, r0 + u0, r0 + 2 * u0, r0 + 2.5 * u0, r0 + 2.5 * u0 + u0.roll(1, -1)]
    got = mod.update_similarity(its, slice(0, 3))
    assert [round(r, 6) for r, _ in got] == [1.0, 0.5, 1.0]
    assert [round(c, 6) for _, c in got] == [1.0, 1.0, 0.0]
