"""Depth maps agree with open3d's RaycastingScene for the same mesh and pinhole camera."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark3dface.render import rasterize
from benchmark3dface.render.testmesh import ellipsoid_grid, face_like_surface, project_pinhole

o3d = pytest.importorskip("open3d", reason="open3d is needed for the reference ray caster")
from benchmark3dface.render.reference import RaycastDepth, pinhole_rays  # noqa: E402

F, C, D, S = 1015.0, 112.0, 1000.0, 224


def _interior(mask: np.ndarray) -> np.ndarray:
    """Covered pixels whose 8 neighbours are all covered (not adjacent to a silhouette)."""
    m = np.pad(mask, 1)
    ok = np.ones_like(mask)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            ok &= m[1 + dy:1 + dy + mask.shape[0], 1 + dx:1 + dx + mask.shape[1]]
    return ok


def _depth_gap_free(depth: np.ndarray) -> np.ndarray:
    """Pixels whose neighbours have similar depth (exclude self-occlusion boundaries)."""
    d = np.pad(depth, 1, constant_values=np.inf)
    ok = np.ones(depth.shape, bool)
    with np.errstate(invalid="ignore"):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                nb = d[1 + dy:1 + dy + depth.shape[0], 1 + dx:1 + dx + depth.shape[1]]
                ok &= np.abs(nb - depth) < 5.0
    return ok


@pytest.mark.parametrize("mesh", ["ellipsoid", "face_like"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_depth_matches_open3d_raycast(mesh, dtype):
    if mesh == "ellipsoid":
        verts, faces = ellipsoid_grid(121, dtype=torch.float64)  # 28,800 triangles
    else:
        verts, faces = face_like_surface(151, dtype=torch.float64)  # 45,000 triangles
    rays, dz = pinhole_rays(S, S, F, C, C, D)
    ref = RaycastDepth(verts, faces).depth(rays, dz)
    sv = project_pinhole(verts, F, C, C, D).to(dtype)
    fr = rasterize(sv[None], faces, S)
    got = fr.depth[0].double().numpy()
    hit_ref, hit = np.isfinite(ref), np.isfinite(got)
    assert hit.mean() > 0.3, "the test mesh should fill a good part of the image"
    assert (hit_ref == hit).mean() >= 0.995
    interior = _interior(hit) & _interior(hit_ref) & _depth_gap_free(got)
    assert interior.sum() > 0.7 * hit.sum()
    rel = np.abs(got[interior] - ref[interior]) / ref[interior]
    assert rel.max() < 1e-4, f"max relative depth error {rel.max():.2e}"


def test_depth_of_two_faces_in_one_image_matches_open3d():
    # multi-face image: two smaller displaced domes side by side, one nearer the camera
    v, f = face_like_surface(61, width=60, height=80, relief=25, dtype=torch.float64)
    a = v + torch.tensor([-45.0, 0.0, 0.0], dtype=torch.float64)
    b = v + torch.tensor([40.0, 10.0, 150.0], dtype=torch.float64)
    rays, dz = pinhole_rays(S, S, F, C, C, D)
    both = torch.cat([a, b])
    ref = RaycastDepth(both, torch.cat([f, f + v.shape[0]])).depth(rays, dz)
    sv = project_pinhole(torch.stack([a, b]), F, C, C, D)
    fr = rasterize(sv, f, S, mesh_to_image=torch.tensor([0, 0]))
    got = fr.depth[0].numpy()
    hit, hit_ref = np.isfinite(got), np.isfinite(ref)
    assert (hit == hit_ref).mean() >= 0.995
    interior = _interior(hit) & _interior(hit_ref) & _depth_gap_free(got)
    rel = np.abs(got[interior] - ref[interior]) / ref[interior]
    assert rel.max() < 1e-4
    assert set(fr.mesh_index()[0].unique().tolist()) == {-1, 0, 1}
