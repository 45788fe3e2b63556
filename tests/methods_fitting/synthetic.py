"""Synthetic fitting problems: faces rendered by the project renderer from known coefficients."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from benchmark3dface.data.collate import collate_samples
from benchmark3dface.data.sample import Sample
from benchmark3dface.facemodel import MorphableModel, lm68_to_lm5
from benchmark3dface.geometry.camera import PerspectiveCamera
from benchmark3dface.render import render_passes


def synthetic_coeffs(model: MorphableModel, n: int, seed: int = 0, yaw_deg: float = 25.0) -> Tensor:
    """(n, C) ground-truth coefficients: prior shape/albedo (std 0.7), mild expression, a pose
    with alternating yaw of about +-yaw_deg, directional white-ish light."""
    g = torch.Generator().manual_seed(seed)
    lay = model.layout
    parts = model.sample_coeffs(n, generator=g, id_std=0.7, exp_std=0.4, tex_std=0.7)
    sign = torch.tensor([(-1) ** i for i in range(n)], dtype=torch.float32)
    angles = torch.stack([(torch.rand(n, generator=g) - 0.5) * math.radians(16),
                          sign * math.radians(yaw_deg) * (0.8 + 0.4 * torch.rand(n, generator=g)),
                          (torch.rand(n, generator=g) - 0.5) * math.radians(10)], -1)
    sh = torch.zeros(n, 27)
    light = (torch.rand(n, 3, generator=g) - 0.5) * 0.5
    for c in range(3):
        sh[:, 9 * c] = -0.1 + 0.05 * c * torch.rand(n, generator=g)
        sh[:, 9 * c + 1: 9 * c + 4] = light
    trans = torch.cat([(torch.rand(n, 2, generator=g) - 0.5) * 8, (torch.rand(n, 1, generator=g) - 0.5) * 40], -1)
    parts.update(angles=angles, sh=sh[:, : lay.sh], trans=trans)
    return lay.join(parts)


def render_batch(model: MorphableModel, coeffs: Tensor, size: int, background: float = 0.35,
                 five_points: bool = False) -> tuple[Sample, Tensor]:
    """A collated batch of ``single`` samples (image, lm68 or lm5, skin mask = face coverage)
    rendered from ``coeffs``, and the (B, S, S) face coverage mask."""
    cam = PerspectiveCamera.deng(size)
    with torch.no_grad():
        geo = model.decode(coeffs, cam)
        out = render_passes(geo.projected, model.triangles, size, ("rgb", "mask"),
                            vertex_colors=geo.colors.clamp(0, 1), background=background, cull_backfaces=True)
    img = out["rgb"].clamp(0, 1)
    mask = out["mask"][:, 0]
    samples = []
    for i in range(coeffs.shape[0]):
        lm = geo.landmarks2d[i]
        samples.append(Sample(kind="single", sample_id=f"syn{i}", image=img[i], coeffs=coeffs[i],
                              lm68=None if five_points else lm, lm5=lm68_to_lm5(lm) if five_points else None,
                              skin_mask=mask[i]))
    return collate_samples(samples), mask


def with_model(cls, model: MorphableModel, **kwargs):
    """``cls(**kwargs)`` built around ``model`` instead of loading its face model source (tests
    only: skips loading the embedded procedural model)."""
    from unittest import mock

    with mock.patch("benchmark3dface.methods.base.load_facemodel", lambda *a, **k: model):
        return cls(**kwargs)
