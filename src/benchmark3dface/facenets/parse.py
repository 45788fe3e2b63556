"""Face parse masks from FaceMesh's 468 points, with the project's parse labels
(:data:`benchmark3dface.facemodel.regions.PARSE_CLASSES`, docs/conventions.md):
``0 background, 1 skin, 2 left brow, 3 right brow, 4 left eye, 5 right eye, 6 nose,
7 upper lip, 8 lower lip, 9 inner mouth`` (left/right = the viewer's), DF-MVR's label set.

How (own method, topology facts from ``@vladmandic/human``, MIT, extracted by
``tools/extract_facemesh_topology.py`` into ``facemesh_topology.npz``):

1. Regions are polygons in FaceMesh's canonical uv layout (a frontal flattening of the mesh,
   u right, v down): the eyes (``rightEyeLower0`` + ``rightEyeUpper0`` ...), brows (the
   eyebrow contour pairs, upper and lower line joined), lips (outer and inner lip contours:
   upper lip between the upper outer and upper inner line, lower lip likewise, the inner mouth
   between the two inner lines) and the nose (a boundary through vertices chosen on the uv
   layout: bridge 168, down the nasal sides, around the alae 98 / 327 and the columella 2);
   the inner mouth is the fan of triangles closing the mouth opening (visible when it is open).
   FaceMesh's "right" features are the subject's right, i.e. the viewer's left in a photo, so
   they get the *left* labels. They are rasterised once into a uv label atlas.
2. The mesh (880 triangles, plus a fan closing the mouth opening, the mesh's only hole) is
   rasterised in the photo with the project's z-buffer rasteriser (orthographic, FaceMesh's z
   as depth) with **back-facing triangles culled** (so the far side of a profile never shows
   through), each pixel's uv is interpolated from the winning triangle and its label read from
   the atlas. Pixels the mesh does not cover are background. Hair, ears, neck and occluders are
   not modelled (a hand over the mouth is labelled as mouth).

Checked (tests/facenets/test_parse.py): on a frontal photo skin is the largest class, the
eyes lie above the nose and the mouth and contain the given eye points; a mirrored (all
back-facing) mesh leaves nothing. Quality on profiles follows FaceMesh's own accuracy, not
measured here beyond its 68-point NME.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..facemodel.regions import L_BROW, L_EYE, L_LIP, MOUTH, NOSE, PARSE_CLASSES, R_BROW, R_EYE, SKIN, U_LIP

TOPOLOGY_FILE = Path(__file__).with_name("facemesh_topology.npz")
ATLAS_SIZE = 512
#: the nose outline on the uv layout (chosen on the canonical mesh; see module docstring)
NOSE_OUTLINE = (168, 122, 196, 3, 51, 220, 115, 48, 64, 98, 97, 2, 326, 327, 294, 278, 344, 440, 281, 248, 419, 351)


@lru_cache(maxsize=1)
def topology() -> dict[str, np.ndarray]:
    """The FaceMesh topology facts (``triangles`` (880, 3), ``vtx68`` (68,), ``uv`` (468, 2),
    ``annotation_*`` vertex lists, ``pairs*`` contour connections, ``provenance``)."""
    if not TOPOLOGY_FILE.is_file():
        raise FileNotFoundError(f"{TOPOLOGY_FILE} is missing (package data; regenerate it with "
                                f"tools/extract_facemesh_topology.py)")
    with np.load(TOPOLOGY_FILE) as d:
        return {k: d[k] for k in d.files}


def _chains(pairs: np.ndarray) -> list[list[int]]:
    """Connection pairs, listed in order along each polyline (as in @vladmandic/human), ->
    vertex chains: a chain continues while a pair starts where the previous one ended."""
    out: list[list[int]] = []
    for a, b in pairs.tolist():
        if out and out[-1][-1] == a:
            out[-1].append(b)
        else:
            out.append([a, b])
    return out


def _between(a: list[int], b: list[int]) -> list[int]:
    """Closed polygon between two polylines running the same way."""
    return a + b[::-1]


@lru_cache(maxsize=1)
def region_polygons() -> dict[int, list[int]]:
    """{parse label: polygon as FaceMesh vertex indices}, painted in this order over skin. The
    inner mouth is not a uv region (the canonical mouth is closed): it is the cap that fills the
    mesh's mouth opening (:func:`mesh_with_cap`)."""
    t = topology()
    out: dict[int, list[int]] = {NOSE: list(NOSE_OUTLINE)}
    for label, key in ((L_BROW, "pairsRightEyebrow"), (R_BROW, "pairsLeftEyebrow")):
        lower, upper = sorted(_chains(t[key]), key=lambda c: float(t["uv"][c, 1].mean()), reverse=True)
        out[label] = _between(upper, lower)
    for label, side in ((L_EYE, "right"), (R_EYE, "left")):
        lower = [int(i) for i in t[f"annotation_{side}EyeLower0"]]
        upper = [int(i) for i in t[f"annotation_{side}EyeUpper0"]]
        out[label] = lower + upper[::-1]
    outer, inner = _lip_lines(t)
    out[U_LIP] = _between(outer["upper"], inner["upper"])
    out[L_LIP] = _between(outer["lower"], inner["lower"])
    return out


def _lip_lines(t: dict[str, np.ndarray]) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """The four lip polylines (corner to corner) from ``pairsLips``, split into outer / inner and
    upper / lower by their uv positions."""
    chains = _chains(t["pairsLips"])
    if len(chains) != 4:
        raise ValueError(f"{TOPOLOGY_FILE}: expected 4 lip lines, found {len(chains)}")
    uv = t["uv"]
    width = [float(np.ptp(uv[c, 0])) for c in chains]
    order = np.argsort(width)  # the two inner lines are narrower
    lines = {"inner": [chains[i] for i in order[:2]], "outer": [chains[i] for i in order[2:]]}
    out = []
    for key in ("outer", "inner"):
        a, b = sorted(lines[key], key=lambda c: float(uv[c, 1].mean()))
        out.append({"upper": a, "lower": b})
    return out[0], out[1]


@lru_cache(maxsize=1)
def mouth_hole() -> list[int]:
    """The inner-lip loop bounding the mesh's only hole (the mouth opening)."""
    _, inner = _lip_lines(topology())
    return inner["upper"] + inner["lower"][::-1][1:-1]


@lru_cache(maxsize=1)
def label_atlas(size: int = ATLAS_SIZE) -> Tensor:
    """``(size, size)`` long parse labels over the uv square (row = v, column = u): skin
    everywhere, then the region polygons painted in :func:`region_polygons` order."""
    from matplotlib.path import Path as MplPath

    uv = topology()["uv"].astype(np.float64)
    c = (np.arange(size) + 0.5) / size
    grid = np.stack(np.meshgrid(c, c, indexing="xy"), -1).reshape(-1, 2)  # (u, v) per pixel centre
    atlas = np.full(size * size, SKIN, np.int64)
    for label, poly in region_polygons().items():
        atlas[MplPath(uv[poly]).contains_points(grid)] = label
    return torch.from_numpy(atlas.reshape(size, size))


@lru_cache(maxsize=1)
def mesh_with_cap() -> tuple[Tensor, Tensor]:
    """Triangles (F, 3) closing the mouth hole with a fan around an extra vertex 468 (the
    centroid of the inner-lip loop), oriented like the mesh (front-facing = negative signed
    area in uv with v down), and the extended uv (469, 2)."""
    t = topology()
    uv = torch.from_numpy(t["uv"].astype(np.float64))
    loop = mouth_hole()
    uv_all = torch.cat([uv, uv[loop].mean(0, keepdim=True)])
    fan = [(loop[i], loop[(i + 1) % len(loop)], 468) for i in range(len(loop))]
    fan_t = torch.tensor(fan)
    if float(_signed_area(uv_all[fan_t]).sum()) > 0:  # make the cap face the same way as the mesh
        fan_t = fan_t[:, [1, 0, 2]]
    tris = torch.cat([torch.from_numpy(t["triangles"].astype(np.int64)), fan_t])
    return tris, uv_all.float()


def _signed_area(tri_xy: Tensor) -> Tensor:
    """(F, 3, 2) -> (F,) signed areas (negative = counter-clockwise on screen with y down)."""
    a = tri_xy[:, 1] - tri_xy[:, 0]
    b = tri_xy[:, 2] - tri_xy[:, 0]
    return (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]) / 2


def parse_mask(mesh: Tensor, image_size: tuple[int, int], cull_backfaces: bool = True) -> Tensor:
    """Parse labels of the pixels of one image from its FaceMesh points.

    Args:
        mesh: ``(468, 3)`` FaceMesh points: x, y in image pixels (continuous convention),
            z relative depth (smaller = nearer), e.g. from :class:`.landmarks.FaceMesh468`.
            Several faces: ``(F, 468, 3)`` (nearest surface wins where they overlap).
        image_size: ``(H, W)``.
        cull_backfaces: drop triangles facing away from the camera (profiles).
    Returns:
        ``(H, W)`` long labels (:data:`PARSE_CLASSES`); all background when ``mesh`` has NaNs.
    """
    from ..render.interpolate import interpolate
    from ..render.rasterize import rasterize

    h, w = int(image_size[0]), int(image_size[1])
    m = mesh.detach().float().cpu().reshape(-1, 468, 3)
    m = m[torch.isfinite(m).all(-1).all(-1)]
    labels = torch.zeros(h, w, dtype=torch.long)
    if m.shape[0] == 0:
        return labels
    tris, uv = mesh_with_cap()
    loop = mouth_hole()
    verts = torch.cat([m, m[:, loop].mean(1, keepdim=True)], 1)  # (F, 469, 3)
    frags = rasterize(verts, tris, (h, w), mesh_to_image=torch.zeros(len(verts), dtype=torch.long),
                      num_images=1, cull_backfaces=cull_backfaces, orthographic=True)
    uv_pix = interpolate(uv[None].expand(len(verts), -1, -1), verts, tris, frags)[0]  # (H, W, 2)
    covered = frags.mask[0]
    atlas = label_atlas()
    idx = (uv_pix.clamp(0, 1 - 1e-6) * atlas.shape[0]).long()
    labels[covered] = atlas[idx[..., 1], idx[..., 0]][covered]
    labels[covered & (frags.face_index()[0] >= len(topology()["triangles"]))] = MOUTH
    return labels


class FaceParser:
    """Parse masks of photos: BlazeFace -> FaceMesh -> :func:`parse_mask`.

    ``__call__(images (B, 3, H, W), boxes=None) -> (labels (B, H, W) long, ok (B,))``; an
    image without a face is all background with ``ok`` False. Needs the ``blazeface`` (when no
    boxes are given) and ``facemesh`` weights in the cache.
    """

    classes = PARSE_CLASSES

    def __init__(self, device: str | torch.device = "cpu", facemesh=None) -> None:
        from .landmarks import FaceMesh468

        self.facemesh = facemesh if facemesh is not None else FaceMesh468(device)

    def __call__(self, images: Tensor, boxes: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if isinstance(images, Tensor) and images.ndim == 3:
            images = images[None]
        mesh, ok = self.facemesh(images, boxes)
        h, w = images.shape[-2:]
        labels = torch.stack([parse_mask(mesh[i], (h, w)) if ok[i] else torch.zeros(h, w, dtype=torch.long)
                              for i in range(images.shape[0])])
        return labels, ok
