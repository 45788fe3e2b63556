"""Parse masks from FaceMesh points: the region layout on the canonical uv map, rasterisation with
back-face culling on hand-made meshes, the mouth cap, and real photos (weights permitting)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark3dface.facemodel.regions import (L_BROW, L_EYE, L_LIP, MOUTH, NOSE, PARSE_CLASSES, R_BROW, R_EYE,
                                               SKIN, U_LIP)
from benchmark3dface.facenets.parse import label_atlas, mouth_hole, parse_mask, region_polygons, topology

from .conftest import need_weights

SIZE = 200


def _uv_mesh(scale: float = SIZE) -> torch.Tensor:
    """The canonical layout as a frontal 'face' filling a SIZE x SIZE image (z = 0)."""
    uv = torch.from_numpy(topology()["uv"].astype(np.float32))
    return torch.cat([uv * scale, torch.zeros(468, 1)], 1)


def test_topology_facts():
    t = topology()
    assert t["triangles"].shape == (880, 3) and t["vtx68"].shape == (68,) and t["uv"].shape == (468, 2)
    assert len(np.unique(t["triangles"])) == 468
    assert "@vladmandic/human" in str(t["provenance"])
    assert len(mouth_hole()) == 20


def test_regions_sit_where_a_face_has_them():
    uv = topology()["uv"]
    polys = region_polygons()
    centre = {k: uv[v].mean(0) for k, v in polys.items()}  # (u right, v down)
    # viewer's left features on the left half, right ones on the right half
    assert centre[L_BROW][0] < 0.5 < centre[R_BROW][0] and centre[L_EYE][0] < 0.5 < centre[R_EYE][0]
    # top to bottom: brows, eyes, nose, upper lip, lower lip
    order = [centre[L_BROW][1], centre[L_EYE][1], centre[NOSE][1], centre[U_LIP][1], centre[L_LIP][1]]
    assert order == sorted(order)
    atlas = label_atlas()
    for label, c in centre.items():
        if label in (U_LIP, L_LIP):  # thin crescents: their centroid may fall outside
            continue
        assert int(atlas[int(c[1] * atlas.shape[0]), int(c[0] * atlas.shape[1])]) == label, PARSE_CLASSES[label]
    counts = torch.bincount(atlas.flatten(), minlength=10)
    assert int(counts.argmax()) == SKIN and all(counts[k] > 0 for k in (L_BROW, R_BROW, L_EYE, R_EYE, NOSE, U_LIP, L_LIP))


def test_parse_mask_of_the_frontal_layout_and_culling():
    mesh = _uv_mesh()
    lab = parse_mask(mesh, (SIZE, SIZE))
    counts = torch.bincount(lab.flatten(), minlength=10)
    assert int(counts[1:].argmax()) + 1 == SKIN and counts[0] > 0  # the corners lie outside the face oval
    uv = topology()["uv"]
    for label in (L_EYE, R_EYE, NOSE, L_BROW):
        u, v = uv[region_polygons()[label]].mean(0) * SIZE
        assert int(lab[int(v), int(u)]) == label
    # mirrored in x, every triangle faces away: culled -> background; without culling it shows
    mirrored = mesh.clone()
    mirrored[:, 0] = SIZE - mirrored[:, 0]
    assert int(parse_mask(mirrored, (SIZE, SIZE)).count_nonzero()) == 0
    assert int(parse_mask(mirrored, (SIZE, SIZE), cull_backfaces=False).count_nonzero()) > 0.3 * SIZE * SIZE
    # NaN input (no face) -> background
    assert int(parse_mask(torch.full((468, 3), float("nan")), (50, 60)).count_nonzero()) == 0


def test_open_mouth_is_inner_mouth():
    mesh = _uv_mesh()
    t = topology()
    lower_inner = [int(i) for i in (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)][1:-1]
    lower = set(lower_inner)
    # open the mouth: drop the lower inner lip line (and everything below the mouth) by 12 px
    v_mouth = float(t["uv"][14, 1]) * SIZE
    for i in range(468):
        if i in lower or float(mesh[i, 1]) > v_mouth + 1:
            mesh[i, 1] += 12
    lab = parse_mask(mesh, (SIZE, SIZE))
    u13, v13 = mesh[13, :2].tolist()   # upper inner lip midpoint
    u14, v14 = mesh[14, :2].tolist()   # lower inner lip midpoint (moved down)
    assert int(lab[int((v13 + v14) / 2), int((u13 + u14) / 2)]) == MOUTH
    assert int((lab == MOUTH).sum()) > 50


def test_frontal_photo_parse(photos):
    need_weights("blazeface", "facemesh")
    from benchmark3dface.facenets.parse import FaceParser

    s = next(p for p in photos if p.meta["path"].endswith("000006.jpg"))  # a frontal face
    labels, ok = FaceParser()(s.image[None])
    assert bool(ok[0]) and labels.shape == (1,) + tuple(s.image.shape[-2:])
    lab = labels[0]
    counts = torch.bincount(lab.flatten(), minlength=10)
    assert int(counts[1:].argmax()) + 1 == SKIN  # skin is the largest face class
    ys = {k: torch.nonzero(lab == k)[:, 0].float().mean() for k in (L_EYE, R_EYE, U_LIP, L_LIP, NOSE)}
    xs = {k: torch.nonzero(lab == k)[:, 1].float().mean() for k in (L_EYE, R_EYE)}
    assert max(ys[L_EYE], ys[R_EYE]) < ys[NOSE] < min(ys[U_LIP], ys[L_LIP])  # eyes above the mouth
    assert xs[L_EYE] < xs[R_EYE]
    # the eyes are where the given 5 points put them
    for k, p in ((L_EYE, s.lm5[0]), (R_EYE, s.lm5[1])):
        assert int(lab[int(p[1]), int(p[0])]) == k


def test_skin_attention_prefers_the_parse(photos, monkeypatch):
    need_weights("blazeface", "facemesh")
    from benchmark3dface.data.preprocess import skin as skin_mod

    s = next(p for p in photos if p.meta["path"].endswith("000006.jpg"))
    parse = skin_mod.parse_for_skin(s.image, s.lm5)
    assert parse is not None
    auto = skin_mod.skin_mask(s.image, s.lm5)
    assert torch.equal(auto, skin_mod.skin_mask_from_parse(s.image, parse))
    assert float(auto[(parse != SKIN) & (parse != NOSE)].abs().max()) == 0  # eyes, lips, background: 0
    assert float(auto[parse == SKIN].mean()) > 0.8
    colour = skin_mod.skin_mask(s.image, s.lm5, source="colour")
    assert not torch.equal(auto, colour)
    # without the FaceMesh weights the colour model is used ("auto") or an error says what is missing
    monkeypatch.setattr("benchmark3dface.facenets.landmarks.available", lambda *names: False)
    assert torch.equal(skin_mod.skin_mask(s.image, s.lm5), colour)
    with pytest.raises(ValueError, match="b3f weights fetch"):
        skin_mod.skin_mask(s.image, s.lm5, source="parse")
