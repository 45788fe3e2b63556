"""FineNet / Eq. 14: the SH lighting solve, the per-image SfS optimisation, the network's start."""

from __future__ import annotations

import torch

from benchmark3dface.losses.shading import sh1_shading
from benchmark3dface.metrics.depth import depth_errors

SIZE = 96  # the conftest fixtures' image side


def _gt_setup(coarsenet, batch, seed=0):
    """The GT depth (with fine detail), the detail-free coarse depth of the GT coefficients in the
    GT pose, and a Lambertian first-order-SH image of the GT depth with known lights: the image
    model Eq. 8 assumes (albedo 0.8)."""
    from b3f_methods.richardson.finenet import fill_depth, normals

    r = coarsenet.target(batch)
    rend = coarsenet.decoder.render(r, SIZE)
    n = r.shape[0]
    g = torch.Generator().manual_seed(seed)
    light = torch.cat([0.5 + 0.2 * torch.rand(n, 1, generator=g), 0.4 * (torch.rand(n, 3, generator=g) - 0.5)], 1)
    light[:, 3] = light[:, 3].abs() + 0.2  # lit from the front
    gt = fill_depth(batch.depth)
    px = 1.0 / rend["geo"]["scale"]
    image = (0.8 * sh1_shading(normals(gt, px), light, 1)).clamp(0, 1)
    return rend, image, light


def test_sh_solve_recovers_first_order_light_on_gt_normals(coarsenet, detail_batch):
    from b3f_methods.richardson.finenet import shading_problem

    rend, image, light = _gt_setup(coarsenet, detail_batch)
    # the problem set up on the GT depth itself: the light is solved on the GT normals
    gt_depth = detail_batch.depth[:, None]
    p = shading_problem(image, gt_depth, rend["mask"], rend["geo"]["scale"], torch.full_like(image, 0.8), None,
                        intensity_scale=1.0)
    rel = (p.light[:, 0] - light).norm(dim=1) / light.norm(dim=1)
    assert float(rel.max()) < 0.05, rel


def test_sfs_optimisation_lowers_depth_error_on_most_samples(coarsenet, detail_batch):
    from b3f_methods.richardson.finenet import shading_problem, sfs_optimize

    rend, image, _ = _gt_setup(coarsenet, detail_batch, seed=1)
    p = shading_problem(image, rend["depth"], rend["mask"], rend["geo"]["scale"], torch.full_like(image, 0.8), None)
    z = sfs_optimize(p, steps=60, lr=0.05)
    better = 0
    for i in range(z.shape[0]):
        gt = detail_batch.depth[i]
        m = p.mask[i] & gt.isfinite()
        before = depth_errors(p.z0[i], gt, m, "median").mean()
        after = depth_errors(z[i], gt, m, "median").mean()
        better += int(after < before)
    assert better >= 0.8 * z.shape[0], f"{better} of {z.shape[0]} improved"


def test_finenet_starts_as_the_identity_and_outputs_the_depth_map(detail_batch):
    from b3f_methods.richardson import CoarseFine

    torch.manual_seed(0)
    m = CoarseFine(image_size=SIZE, refine="network")
    recs = m.reconstruct(detail_batch)
    face = recs[0].faces[0]
    coarse = recs[0].extras["coarse_depth"]
    assert face.depth.shape == (SIZE, SIZE)
    ok = coarse.isfinite()
    assert torch.equal(face.depth.isfinite(), ok) and ok.any()
    assert torch.allclose(face.depth[ok], coarse[ok])  # zero-initialised head: z = z0
    assert face.camera["kind"] == "weak"


def test_coarse_checkpoint_with_another_backbone_is_refused(tmp_path):
    import pytest

    from b3f_methods.richardson import CoarseFine

    ck = tmp_path / "c.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"backbone": "resnet18"}}, ck)
    with pytest.raises(ValueError, match="backbone"):
        CoarseFine(image_size=SIZE, backbone="resnet10t", coarse_checkpoint=str(ck))
