"""``coarsefine`` with ``mesh_output="refined"``: the scan protocols' mesh carries the refined
depth (visible vertices moved along the view direction), the depth protocol is unaffected."""

from __future__ import annotations

import math

import pytest
import torch

from benchmark3dface.metrics.depth import DepthError

SIZE = 96  # the conftest fixtures' image side


def _model(yaw: float = 0.0, **kw):
    """An untrained CoarseFine whose CoarseNet predicts a constant update: after its 4 iterations
    the estimate is the mean face turned by ``yaw`` radians (so that the nose hides some cheek)."""
    from b3f_methods.richardson import CoarseFine

    torch.manual_seed(0)
    m = CoarseFine(image_size=SIZE, **kw).eval()
    lay = m.decoder.layout
    with torch.no_grad():
        m.net.get_classifier().bias[lay.pose_slice.start + 1] = yaw / m.hparams.iterations / float(
            m.out_scale[lay.pose_slice.start + 1])
    return m


def test_refine_none_gives_the_coarse_mesh(weak_batch):
    coarse = _model(0.4, refine="none").reconstruct(weak_batch)
    refined = _model(0.4, refine="none", mesh_output="refined").reconstruct(weak_batch)
    for a, b in zip(coarse, refined):
        assert a.extras["mesh_output"] == "coarse" and b.extras["mesh_output"] == "refined"
        assert b.extras["refined_vertices"] > 0.3 * b.faces[0].vertices.shape[0]  # vertices were visited
        assert float((a.faces[0].vertices - b.faces[0].vertices).abs().max()) < 1e-4


def _offset(m, d: float):
    """The refinement replaced by a constant +d mm offset of the coarse depth map."""
    real = m.refine_depth

    def refine_depth(gray, r):
        _, coarse = real(gray, r)
        return coarse + d, coarse

    m.refine_depth = refine_depth
    return m


def test_a_constant_depth_offset_moves_every_visible_vertex_along_the_camera_axis(weak_batch):
    d = 3.0
    base = _model(0.5).reconstruct(weak_batch)
    moved = _offset(_model(0.5, mesh_output="refined"), d).reconstruct(weak_batch)
    from benchmark3dface.geometry.mesh import vertex_normals

    for a, b in zip(base, moved):
        fa, fb = a.faces[0], b.faces[0]
        rot = fa.rotation
        assert torch.equal(rot, fb.rotation)
        assert torch.equal(fa.landmarks2d, fb.landmarks2d)
        cam_a, cam_b = fa.vertices @ rot.T, fb.vertices @ rot.T  # camera frame (weak: world = R v)
        shift = cam_b - cam_a
        assert float(shift[:, :2].abs().max()) < 1e-3  # no motion in the image plane
        dz = -shift[:, 2]  # the depth convention: -z_world mm
        on = (dz - d).abs() < 1e-3
        off = dz.abs() < 1e-4
        assert bool((on | off).all())  # each vertex moves by exactly d or not at all
        assert b.extras["refined_vertices"] == int(on.sum())
        # independent visibility checks against the coarse depth map (nearest pixel)
        coarse = a.extras["coarse_depth"]
        s, (tx, ty), (cx, cy) = fa.camera["scale"], fa.camera["translation2d"], fa.camera["principal"]
        u = cx + s * cam_a[:, 0] + tx
        v = cy - (s * cam_a[:, 1] + ty)
        j, i = u.floor().long().clamp(0, SIZE - 1), v.floor().long().clamp(0, SIZE - 1)
        zmap = coarse[i, j]
        depth = -cam_a[:, 2]
        n_z = vertex_normals(cam_a[None], fa.triangles)[0, :, 2]
        pad = torch.nn.functional.pad(coarse.nan_to_num(-1e9)[None, None], (1, 1, 1, 1), value=-1e9)
        near_max = torch.nn.functional.max_pool2d(pad, 3, 1)[0, 0][i, j]  # the farthest of the 3x3 pixels
        hidden = (depth > near_max + 3.0 / s) | ~zmap.isfinite()  # > 3 px behind all the surface around, or off it
        assert int((hidden & zmap.isfinite()).sum()) > 20  # the turned face hides some of itself
        assert not bool((on & hidden).any())
        assert not bool((on & (n_z < -0.2)).any())  # back-facing vertices stay
        # clearly visible (front-facing, on the z-buffer, inside the face region): all moved
        win = torch.nn.functional.max_pool2d((~coarse.isfinite()).float()[None, None], 7, 1, 3)[0, 0] == 0
        clear = (n_z > 0.5) & ((depth - zmap).abs() < 0.5) & win[i, j]
        assert int(clear.sum()) > 100
        assert bool(on[clear].all()), f"{int((clear & ~on).sum())} clearly visible vertices did not move"


def test_the_depth_protocol_still_scores_the_depth_map(weak_batch):
    recs = {out: _offset(_model(0.5, mesh_output=out), 3.0).reconstruct(weak_batch) for out in ("coarse", "refined")}
    scores = {}
    for out, rr in recs.items():
        dp = DepthError(align="median")
        dp.update(rr, weak_batch)
        scores[out] = dp.compute().metrics["mean"].value
    for a, b in zip(recs["coarse"], recs["refined"]):
        assert torch.equal(a.faces[0].depth.nan_to_num(-1.0), b.faces[0].depth.nan_to_num(-1.0))
        assert float((a.faces[0].vertices - b.faces[0].vertices).abs().max()) > 1.0  # the meshes differ
    assert math.isfinite(scores["coarse"]) and scores["coarse"] == scores["refined"]


def test_unknown_mesh_output_is_refused():
    from b3f_methods.richardson import CoarseFine

    with pytest.raises(ValueError, match="mesh_output"):
        CoarseFine(image_size=SIZE, mesh_output="fine")
