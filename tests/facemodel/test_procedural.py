"""The embedded procedural face model: determinism, mesh, modes, landmarks, symmetry, realism.

The model is built once per session into a temporary cache folder (a few seconds)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from benchmark3dface.facemodel import load_facemodel
from benchmark3dface.facemodel.procedural import (
    build,
    load_procedural_model,
    procedural_arrays,
)
from benchmark3dface.facemodel.procedural.realism import (
    compare_to_reference,
    load_reference,
)
from benchmark3dface.facemodel.regions import (
    L_BROW,
    L_EYE,
    L_LIP,
    MOUTH,
    NOSE,
    R_BROW,
    R_EYE,
    SKIN,
    U_LIP,
)
from benchmark3dface.geometry.mesh import face_normals, vertex_normals

IBUG_MIRROR = ([(i, 16 - i) for i in range(8)] + [(17 + i, 26 - i) for i in range(5)]
               + [(31, 35), (32, 34), (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
               + [(48, 54), (49, 53), (50, 52), (59, 55), (58, 56), (60, 64), (61, 63), (67, 65)])


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    cache = tmp_path_factory.mktemp("procedural_cache")
    arrays, meta = procedural_arrays(cache)
    model = load_procedural_model(cache)
    return cache, arrays, meta, model


def _sha(arrays):
    h = hashlib.sha256()
    for k in sorted(arrays):
        h.update(k.encode() + np.ascontiguousarray(arrays[k]).tobytes())
    return h.hexdigest()


def _exp(model, name, amount=1.0):
    e = torch.zeros(1, model.layout.exp)
    e[0, model.exp_names.index(name)] = amount
    return model.shape(torch.zeros(1, model.layout.id), e)[0]


def test_two_builds_give_identical_bytes(built, tmp_path):
    _, arrays, meta, _ = built
    again, meta2 = procedural_arrays(tmp_path / "fresh")
    assert _sha(again) == _sha(arrays)
    assert meta2["content_sha256"] == meta["content_sha256"]
    assert all(again[k].dtype == arrays[k].dtype for k in arrays)


def test_counts_and_modes(built):
    *_, m = built
    assert 20_000 <= m.num_vertices <= 40_000
    assert 1.7 * m.num_vertices <= m.num_triangles <= 2.1 * m.num_vertices
    assert m.id_basis.shape[0] >= 80 and m.exp_basis.shape[0] >= 64 and m.albedo_basis.shape[0] >= 80
    assert m.layout.size == 257
    assert len(m.exp_names) == m.exp_basis.shape[0] == len(set(m.exp_names))
    for name in ("jaw_open", "smile_left", "smile_right", "pucker", "funnel", "eye_close_left",
                 "eye_close_right", "brow_inner_up_left", "brow_furrow", "cheek_puff_right",
                 "lip_press_left", "sneer_right", "squint_left", "mouth_shift_right"):
        assert name in m.exp_names
    # every triangle index valid, no degenerate triangles in the mean face
    tri = m.triangles
    assert tri.min() >= 0 and tri.max() < m.num_vertices
    area = face_normals(m.mean_shape, tri, normalize=False).norm(dim=-1)
    assert float(area.min()) > 1e-3


def test_millimetre_frame_and_centring(built):
    *_, m = built
    v = m.mean_shape
    assert v.mean(0).abs().max() < 1e-2
    ext = v.max(0).values - v.min(0).values
    assert 120 < ext[0] < 200 and 150 < ext[1] < 240 and 60 < ext[2] < 140


def test_triangles_face_outward(built):
    *_, m = built
    v, tri, lm = m.mean_shape, m.triangles, m.landmarks68
    n = vertex_normals(v, tri)
    near_tip = (v - v[lm[30]]).norm(dim=-1) < 12
    assert n[near_tip, 2].mean() > 0.6
    # the inner face (between the eyes and the mouth) faces the camera
    inner = (v[:, 0].abs() < 40) & (v[:, 1] < v[lm[27], 1]) & (v[:, 1] > v[lm[57], 1])
    fn = face_normals(v, tri)
    centre = v[tri].mean(1)
    inner_f = (centre[:, 0].abs() < 40) & (centre[:, 1] < v[lm[27], 1]) & (centre[:, 1] > v[lm[57], 1])
    assert inner.sum() > 1000
    assert (fn[inner_f, 2] > 0).float().mean() > 0.9


def test_landmarks_in_anatomical_order(built):
    *_, m = built
    lm = m.mean_shape[m.landmarks68]
    y = lm[:, 1]
    eyes, tip, mouth, chin = lm[36:48, 1].mean(), y[30], lm[48:68, 1].mean(), y[8]
    assert lm[17:27, 1].mean() > eyes > tip > mouth > chin
    assert lm[36:42, 0].mean() < 0 < lm[42:48, 0].mean()  # left eye = viewer's left = smaller x
    assert lm[17:22, 0].mean() < lm[22:27, 0].mean()
    assert lm[48, 0] < lm[54, 0] and lm[0, 0] < lm[16, 0]
    assert int(torch.argmax(lm[:, 2])) == 30  # the nose tip is the most forward landmark
    assert y[37] > y[41] and y[44] > y[46]  # upper lids above lower lids
    assert y[51] > y[62] > y[57]  # upper lip, seam, lower lip
    # the inner lips meet on the seam in the neutral face
    assert (lm[61:64] - lm[[67, 66, 65]]).norm(dim=-1).max() < 1e-3
    assert len(set(m.landmarks68.tolist())) == 68


def test_symmetry_map_is_an_exact_mirror(built):
    _, arrays, _, m = built
    sym, v = m.symmetry, m.mean_shape
    assert torch.equal(sym[sym], torch.arange(m.num_vertices))
    assert torch.allclose(v[sym] * torch.tensor([-1.0, 1.0, 1.0]), v, atol=2e-3)
    # the identity modes need not be symmetric, but the triangle set is
    tri = arrays["triangles"]
    mirrored = arrays["symmetry"][tri]
    as_set = lambda t: set(map(tuple, np.sort(t, axis=1).tolist()))
    assert as_set(mirrored) == as_set(tri)
    lmk = m.landmarks68
    for a, b in IBUG_MIRROR:
        assert int(sym[lmk[a]]) == int(lmk[b]), (a, b)


def test_jaw_open_separates_the_lips(built):
    *_, m = built
    lm = m.landmarks68
    v0, v1 = m.mean_shape, _exp(m, "jaw_open", 1.0)
    gap0 = float((v0[lm[62]] - v0[lm[66]]).norm())
    gap1 = float((v1[lm[62]] - v1[lm[66]]).norm())
    assert gap0 < 1e-3 and 9.0 < gap1 < 18.0
    assert float((v1[lm[8]] - v0[lm[8]]).norm()) > 5.0  # the chin moves
    assert float((v1[lm[27]] - v0[lm[27]]).norm()) < 0.5  # the nose root does not


def test_eye_close_narrows_the_eye(built):
    *_, m = built
    lm = m.landmarks68
    v0 = m.mean_shape
    for name, (a, b), (c, d) in (("eye_close_left", (37, 41), (43, 47)), ("eye_close_right", (44, 46), (38, 40))):
        v1 = _exp(m, name, 1.5)
        before, after = float((v0[lm[a]] - v0[lm[b]]).norm()), float((v1[lm[a]] - v1[lm[b]]).norm())
        assert after < 0.5 * before
        # the other eye stays open
        assert abs(float((v1[lm[c]] - v1[lm[d]]).norm()) - float((v0[lm[c]] - v0[lm[d]]).norm())) < 0.2


def test_coefficient_scales_are_plausible(built):
    *_, m = built
    per_vertex_std = m.id_basis.pow(2).sum(-1).sum(0).sqrt()
    assert 2.0 < float(per_vertex_std.mean()) < 8.0
    stds = m.id_basis.flatten(1).norm(dim=1)
    assert torch.all(stds[:-1] >= stds[1:] - 1e-3)  # ordered by variance
    b = m.id_basis.flatten(1).double()
    cos = (b @ b.T) / (stds.double()[:, None] * stds.double()[None, :])
    assert float((cos - torch.eye(len(cos), dtype=cos.dtype)).abs().max()) < 1e-3  # orthogonal modes
    g = torch.Generator().manual_seed(0)
    c = m.sample_coeffs(16, g)
    d = (m.shape(c["id"], torch.zeros_like(c["exp"])) - m.mean_shape).norm(dim=-1)
    assert 1.5 < float(d.mean()) < 12.0 and float(d.max()) < 50.0
    # each expression mode moves something by millimetres, nothing by centimetres
    peak = m.exp_basis.norm(dim=-1).amax(dim=1)
    assert float(peak.min()) > 0.8 and float(peak.max()) < 25.0
    alb = m.albedo(c["tex"])
    assert 0.02 < float((alb - m.mean_albedo).abs().mean()) < 0.3


def test_modes_do_not_fold_the_mesh(built):
    *_, m = built
    n0 = face_normals(m.mean_shape, m.triangles)
    limit = 1e-3 * m.num_triangles

    def flipped(v):
        return int(((face_normals(v, m.triangles) * n0).sum(-1) < 0).sum())

    for k, name in enumerate(m.exp_names):  # one-sigma expressions, both signs
        for amount in (1.0, -1.0):
            assert flipped(_exp(m, name, amount)) < limit, (name, amount)
    g = torch.Generator().manual_seed(1)
    c = m.sample_coeffs(4, g)
    for v in m.shape(c["id"], torch.zeros_like(c["exp"])):
        assert flipped(v) < limit


def test_regions_and_albedo(built):
    *_, m = built
    reg, lm, alb = m.regions, m.landmarks68, m.mean_albedo
    for r in (SKIN, L_BROW, R_BROW, L_EYE, R_EYE, NOSE, U_LIP, L_LIP):
        assert int((reg == r).sum()) > 50
    assert int((reg == MOUTH).sum()) == 0  # no inner-mouth geometry
    assert int(reg[lm[30]]) == NOSE and int(reg[lm[51]]) == U_LIP and int(reg[lm[57]]) == L_LIP
    assert int(reg[lm[19]]) == L_BROW and int(reg[lm[24]]) == R_BROW
    assert m.mean_shape[reg == L_EYE, 0].mean() < m.mean_shape[reg == R_EYE, 0].mean()
    assert float(alb.min()) >= 0.0 and float(alb.max()) <= 1.0
    skin = alb[reg == SKIN].mean(0)
    assert skin[0] > skin[1] > skin[2]
    assert alb[reg == L_BROW].mean() < skin.mean() - 0.1
    lips = alb[(reg == U_LIP) | (reg == L_LIP)].mean(0)
    assert lips[0] / lips[1] > skin[0] / skin[1]
    assert float(alb[reg == L_EYE].max()) > 0.75  # white of the eye
    assert bool(m.skin[lm[29]]) and not bool(m.skin[lm[37]])


def test_factory_and_decode(built):
    cache, *_ = built
    m = load_facemodel("procedural", cache_dir=cache)
    g = m.decode(m.layout.zeros(2))
    assert torch.allclose(g.vertices[0], m.mean_shape)
    assert g.colors.shape == (2, m.num_vertices, 3)
    assert m.info()["generator_version"] == build.VERSION


def test_cache_is_reused_and_corrupt_files_rebuilt(built, tmp_path, monkeypatch):
    cache, arrays, meta, _ = built
    path = build.cache_file(cache)
    assert path.exists() and not list(path.parent.glob("*.tmp"))

    def refuse():
        raise AssertionError("a valid cache must not be rebuilt")

    monkeypatch.setattr(build, "build_arrays", refuse)
    _, got_meta, _ = build.load_or_build(cache)
    assert got_meta["content_sha256"] == meta["content_sha256"]

    # a truncated copy is detected and rebuilt (with a stand-in builder, to stay fast); the
    # rebuild prunes cache files of other generator versions
    stale = tmp_path / "procedural_face_v0_000000000000.npz"
    stale.write_bytes(b"old")
    broken = build.cache_file(tmp_path)
    broken.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="unreadable"):
        build.read_cache(broken)
    calls = []

    def stand_in():
        calls.append(1)
        return arrays, meta

    monkeypatch.setattr(build, "build_arrays", stand_in)
    build.load_or_build(tmp_path)
    assert calls == [1]
    assert not stale.exists()
    assert build.read_cache(broken)[1]["content_sha256"] == meta["content_sha256"]
    # a file whose arrays do not match the stored hash is rejected too
    tampered = dict(arrays)
    tampered["mean_shape"] = arrays["mean_shape"] + np.float32(1.0)
    build.write_cache(broken, tampered, meta)
    with pytest.raises(ValueError, match="content hash"):
        build.read_cache(broken)


def test_realism_against_ict(built, shared_data):
    _, arrays, _, _ = built
    ref = load_reference(shared_data("ict_face_model", "ict_face_light.npz"))
    r = compare_to_reference(arrays["mean_shape"], arrays["triangles"], arrays["landmarks68"],
                             arrays["id_basis"], ref)
    assert r["surface_rms_model_to_ref_mm"] <= 5.0
    assert r["surface_rms_ref_to_model_mm"] <= 5.0
    assert r["landmark_rms_mm"] <= 6.0
    assert 0.5 < r["identity_std_model_aligned_mm"] / r["identity_std_ref_mm"] < 2.0
    assert 0.85 < r["alignment_scale"] < 1.15  # our mean face is adult-sized in mm


def test_reference_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="ict_face_light"):
        load_reference(tmp_path / "ict_face_light.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, neutral=np.zeros((3, 3)))
    with pytest.raises(KeyError, match="missing keys"):
        load_reference(bad)
