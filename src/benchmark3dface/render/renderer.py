"""One-call rendering of several passes: :func:`render_passes` and :class:`MeshRenderer`."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from .fragments import Fragments
from .interpolate import pixel_barycentrics
from .rasterize import DEFAULT_MAX_PAIRS, rasterize
from .shading import (
    render_depth,
    render_labels,
    render_mask,
    render_normals,
    render_pncc,
    render_rgb,
)

#: Pass names understood by :func:`render_passes`, and the keyword each one needs.
PASSES = {"rgb": "vertex_colors", "mask": None, "depth": None, "normal": "vertex_normals",
          "pncc": "pncc", "label": "vertex_labels"}


def render_passes(
    verts: Tensor,
    faces: Tensor,
    image_size: int | Sequence[int],
    passes: Sequence[str] = ("rgb", "mask"),
    *,
    vertex_colors: Tensor | None = None,
    vertex_normals: Tensor | None = None,
    pncc: Tensor | None = None,
    vertex_labels: Tensor | None = None,
    background: Tensor | float | None = None,
    depth_background: float = 0.0,
    mesh_to_image: Tensor | None = None,
    num_images: int | None = None,
    cull_backfaces: bool = False,
    orthographic: bool = False,
    backend: str = "torch",
    max_pairs: int = DEFAULT_MAX_PAIRS,
) -> dict[str, Tensor | Fragments]:
    """Rasterize once and return the requested passes.

    Args:
        verts: ``(M, N, 3)`` screen-space vertices ``(u px, v px, depth)``
            (docs/conventions.md); gradients flow through the barycentrics.
        faces: ``(F, 3)`` long shared faces.
        image_size: ``H`` or ``(H, W)``.
        passes: any of ``"rgb"`` (needs ``vertex_colors`` (M|-, N, 3) in [0, 1]), ``"mask"``,
            ``"depth"``, ``"normal"`` (needs ``vertex_normals``), ``"pncc"`` (needs ``pncc``,
            see :func:`~benchmark3dface.render.shading.pncc_code`), ``"label"`` (needs
            ``vertex_labels`` (N,) or (M, N) long).
        background: RGB background (scalar or image broadcastable to ``(B, 3, H, W)``).
        depth_background: value of the depth pass off the mesh.
        mesh_to_image, num_images, cull_backfaces, orthographic, backend, max_pairs: see
            :func:`~benchmark3dface.render.rasterize.rasterize`.

    Returns:
        ``{"fragments": Fragments, "rgb": (B,3,H,W), "mask": (B,1,H,W), "depth": (B,1,H,W),
        "normal": (B,3,H,W), "pncc": (B,3,H,W), "label": (B,H,W) long}`` (requested ones only,
        plus the fragments).
    """
    given = {"vertex_colors": vertex_colors, "vertex_normals": vertex_normals, "pncc": pncc,
             "vertex_labels": vertex_labels}
    for p in passes:
        if p not in PASSES:
            raise ValueError(f"unknown render pass {p!r}; expected some of {tuple(PASSES)}")
        need = PASSES[p]
        if need is not None and given[need] is None:
            raise ValueError(f"render pass {p!r} needs the {need!r} argument")
    frags = rasterize(verts, faces, image_size, mesh_to_image=mesh_to_image,
                      num_images=num_images, cull_backfaces=cull_backfaces,
                      orthographic=orthographic, backend=backend, max_pairs=max_pairs)
    out: dict[str, Tensor | Fragments] = {"fragments": frags}
    if "mask" in passes:
        out["mask"] = render_mask(frags, verts.dtype)
    if any(p != "mask" for p in passes):
        surf = pixel_barycentrics(verts, faces, frags)
        if "rgb" in passes:
            out["rgb"] = render_rgb(surf, vertex_colors, background)
        if "depth" in passes:
            out["depth"] = render_depth(surf, depth_background)
        if "normal" in passes:
            out["normal"] = render_normals(surf, vertex_normals)
        if "pncc" in passes:
            out["pncc"] = render_pncc(surf, pncc)
        if "label" in passes:
            out["label"] = render_labels(surf, vertex_labels)
    return out


class MeshRenderer(nn.Module):
    """A fixed topology and image size; ``forward`` renders passes of screen-space meshes.

    Example::

        renderer = MeshRenderer(faces, 224, cull_backfaces=True)
        out = renderer(screen_verts, ("rgb", "mask"), vertex_colors=colors, background=image)

    ``faces`` is registered as a buffer, so ``renderer.to(device)`` moves it.
    """

    faces: Tensor

    def __init__(self, faces: Tensor, image_size: int | Sequence[int], *,
                 cull_backfaces: bool = False, orthographic: bool = False,
                 backend: str = "torch", max_pairs: int = DEFAULT_MAX_PAIRS) -> None:
        super().__init__()
        self.register_buffer("faces", faces.long(), persistent=False)
        self.image_size = image_size
        self.cull_backfaces = cull_backfaces
        self.orthographic = orthographic
        self.backend = backend
        self.max_pairs = max_pairs

    def rasterize(self, verts: Tensor, mesh_to_image: Tensor | None = None,
                  num_images: int | None = None) -> Fragments:
        """Visibility only (see :func:`~benchmark3dface.render.rasterize.rasterize`)."""
        return rasterize(verts, self.faces, self.image_size, mesh_to_image=mesh_to_image,
                         num_images=num_images, cull_backfaces=self.cull_backfaces,
                         orthographic=self.orthographic, backend=self.backend,
                         max_pairs=self.max_pairs)

    def forward(self, verts: Tensor, passes: Sequence[str] = ("rgb", "mask"),
                **kwargs) -> dict[str, Tensor | Fragments]:
        """Render ``passes`` of ``verts (M, N, 3)``; ``kwargs`` as in :func:`render_passes`."""
        return render_passes(verts, self.faces, self.image_size, passes,
                             cull_backfaces=self.cull_backfaces, orthographic=self.orthographic,
                             backend=self.backend, max_pairs=self.max_pairs, **kwargs)

