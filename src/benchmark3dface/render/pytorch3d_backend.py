"""Optional pytorch3d rasterization behind the same :class:`Fragments` interface.

Used only with ``backend="pytorch3d"`` and only when pytorch3d is importable (the optional
``pytorch3d`` extra). Screen-space vertices are mapped to pytorch3d's NDC (+x left, +y up,
the shorter image side spanning [-1, 1]): ``x = (W - 2u) / S``, ``y = (H - 2v) / S`` with
``S = min(H, W)``, so pytorch3d's pixel centres coincide with ours. Culling, the
``mesh_to_image`` grouping and the global face ids are handled here, so the output means the
same as the torch backend's (edge tie-breaking may differ on exact ties).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .fragments import Fragments
from .rasterize import signed_area2

INSTALL_HINT = ("backend='pytorch3d' needs the optional pytorch3d package (install it for your "
                "torch/CUDA build, see https://github.com/facebookresearch/pytorch3d/blob/main/"
                "INSTALL.md, or `pip install benchmark3dface[pytorch3d]`); use backend='torch' "
                "otherwise")


def pytorch3d_available() -> bool:
    """Whether the pytorch3d backend can be used."""
    try:
        import pytorch3d.renderer  # noqa: F401
    except ImportError:
        return False
    return True


@torch.no_grad()
def rasterize_pytorch3d(verts: Tensor, faces: Tensor, h: int, w: int, mesh_to_image: Tensor,
                        num_images: int, cull: bool, orthographic: bool) -> Fragments:
    """pytorch3d version of :func:`benchmark3dface.render.rasterize.rasterize` (validated args)."""
    try:
        from pytorch3d.renderer.mesh.rasterize_meshes import rasterize_meshes
        from pytorch3d.structures import Meshes
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc

    m, n, _ = verts.shape
    f = faces.shape[0]
    faces = faces.long()
    tri = verts[:, faces]  # (M, F, 3, 3)
    area = signed_area2(tri)
    keep = area != 0
    if cull:
        keep &= area < 0
    z = verts[..., 2]
    shift = 0.0
    if orthographic:  # pytorch3d skips faces behind z = 0: shift depths to be positive
        shift = 1.0 - float(z.min())
    else:
        keep &= tri[..., 2].amin(-1) > 0
    s = float(min(h, w))
    ndc = torch.stack([(w - 2 * verts[..., 0]) / s, (h - 2 * verts[..., 1]) / s, z + shift], -1)

    vert_list, face_list, gid_list = [], [], []
    for img in range(num_images):
        meshes = (mesh_to_image == img).nonzero().squeeze(1).tolist()
        vs, fs, gs = [], [], []
        for k, mi in enumerate(meshes):
            fi = keep[mi].nonzero().squeeze(1)
            vs.append(ndc[mi])
            fs.append(faces[fi] + k * n)
            gs.append(fi + mi * f)
        vert_list.append(torch.cat(vs) if vs else ndc.new_zeros(0, 3))
        face_list.append(torch.cat(fs) if fs else faces.new_zeros(0, 3))
        gid_list.append(torch.cat(gs) if gs else faces.new_zeros(0))
    packed_gid = torch.cat(gid_list)
    p2f, zbuf, bary, _ = rasterize_meshes(
        Meshes(verts=vert_list, faces=face_list), image_size=(h, w), blur_radius=0.0,
        faces_per_pixel=1, perspective_correct=not orthographic, cull_backfaces=False)
    p2f, zbuf, bary = p2f[..., 0], zbuf[..., 0], bary[..., 0, :]
    hit = p2f >= 0
    pix_to_face = torch.where(hit, packed_gid[p2f.clamp_min(0)], -1)
    depth = torch.where(hit, zbuf.to(verts.dtype) - shift, float("inf"))
    bary = torch.where(hit[..., None], bary.to(verts.dtype), 0.0)
    return Fragments(pix_to_face, bary, depth, f, m, orthographic)
