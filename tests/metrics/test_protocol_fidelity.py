"""Protocol fidelity: known answers computed independently of the code under test (by hand or
with the published formula in a few lines of numpy) for NME (rotations, anisotropic errors,
coverage, penalty scoring), MICC per-subject pooling and its nose-tip sources, NoW's 7-point
input and the metrical variant's order of operations; the readers' annotation options (MICC
scan annotation, 3DDFA's re-annotated AFLW2000-3D landmarks)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.io as sio
import torch

from .ddp_sync import sync_like_ddp
from benchmark3dface.data.readers import DataError
from benchmark3dface.data.readers.aflw2000 import AFLW2000Reader
from benchmark3dface.data.readers.micc import MICCFlorenceReader
from benchmark3dface.data.sample import Sample
from benchmark3dface.methods.reconstruction import FaceReconstruction, Reconstruction
from benchmark3dface.metrics import MICCRMSE, AFLW2000NME, NoWMetrical, NoWScanToMesh, nme
from benchmark3dface.metrics.reference import FitOptions, now_reference

NOW7 = [36, 39, 42, 45, 33, 48, 54]


# ---------------------------------------------------------------------------------------- NME
def test_nme_by_hand_rotated_box_and_unequal_errors():
    """4 GT points at the corners of a 4 x 9 px rectangle turned by 45 degrees: the axis-aligned
    GT box is then 13/sqrt2 x 13/sqrt2, so sqrt(w h) = 13/sqrt2. Errors (3, 4), (0, 0), (-6, 8),
    (0, -3) have norms 5, 0, 10, 3: mean of norms 4.5 -> NME = 450 sqrt2 / 13 % = 48.95 %.
    (The norm of the mean error, |(-3/4, 9/4)| = 2.37 px, would give 25.8 %.)"""
    c = math.sqrt(0.5)
    rect = np.array([[0, 0], [4, 0], [0, 9], [4, 9]], float)
    gt = rect @ np.array([[c, c], [-c, c]])  # x' = (x - y)/sqrt2, y' = (x + y)/sqrt2
    err = np.array([[3, 4], [0, 0], [-6, 8], [0, -3]], float)
    got = float(nme(torch.from_numpy(gt + err), torch.from_numpy(gt)))
    assert got == pytest.approx(450 * math.sqrt(2) / 13, rel=1e-12)
    assert abs(got - 100 * 2.3717 / (13 / math.sqrt(2))) > 20


def _lm68(rng, yaw_deg, box=(120.0, 150.0)):
    """68 GT points scattered in a box, turned in the image plane by a random angle."""
    pts = rng.uniform(0, 1, (68, 2)) * np.array(box)
    a = math.radians(rng.uniform(-40, 40))
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return (pts - pts.mean(0)) @ rot.T + 225.0


def _anisotropic(rng):
    """Per-point errors of different directions and lengths (an ellipse 3 x 0.5 px, turned)."""
    u = rng.normal(size=(68, 2)) * np.array([3.0, 0.5])
    a = rng.uniform(0, math.pi)
    return u @ np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]).T


def _published_nme(pred, gt):
    """3DDFA's formula: mean over points of the 2D error norm / sqrt(w h) of the GT box, x100."""
    w = gt[:, 0].max() - gt[:, 0].min()
    h = gt[:, 1].max() - gt[:, 1].min()
    return 100 * np.linalg.norm(pred - gt, axis=1).mean() / math.sqrt(w * h)


def _nme_batch(gts, preds, yaws_deg, failed=()):
    samples, recs = [], []
    for i, (g, p, y) in enumerate(zip(gts, preds, yaws_deg)):
        sid = f"f{i}"
        samples.append(Sample(sample_id=sid, lm68=None if g is None else torch.from_numpy(g),
                              yaw=torch.tensor(math.radians(y))))
        if i in failed:
            recs.append(Reconstruction(sid, [FaceReconstruction(None, None, failure="detector found no face")]))
        else:
            recs.append(Reconstruction(sid, [FaceReconstruction(None, None, landmarks2d=torch.from_numpy(p))]))
    return recs, samples


def test_nme_protocol_matches_published_formula_per_bin():
    rng = np.random.default_rng(3)
    yaws = [5.0, -25.0, 35.0, -59.0, 61.0, -88.0, 12.0]
    gts = [_lm68(rng, y) for y in yaws]
    preds = [g + _anisotropic(rng) for g in gts]
    m = AFLW2000NME()
    m.update(*_nme_batch(gts, preds, yaws))
    res = m.compute()
    exp = [_published_nme(p, g) for p, g in zip(preds, gts)]
    for i, e in enumerate(exp):
        assert res.per_sample["nme"][f"f{i}"] == pytest.approx(e, rel=1e-10)
    bins = [[exp[i] for i in (0, 1, 6)], [exp[2], exp[3]], [exp[4], exp[5]]]
    assert res.metrics["nme_0_30"].value == pytest.approx(np.mean(bins[0]), rel=1e-10)
    assert res.metrics["nme_30_60"].value == pytest.approx(np.mean(bins[1]), rel=1e-10)
    assert res.metrics["nme_60_plus"].value == pytest.approx(np.mean(bins[2]), rel=1e-10)
    assert res.metrics["nme_mean"].value == pytest.approx(np.mean([np.mean(b) for b in bins]), rel=1e-10)
    assert res.metrics["coverage"].value == 100.0


def test_nme_coverage_and_3ddfa_style_penalty():
    """6 faces, 2 per bin; the 2nd face of bins 0 and 2 fails. Default: failures leave the bin
    means but coverage says so (bins 50 / 100 / 50 %); score_all: a failure counts as NME =
    failure_nme. A 7th sample without GT is a failure (coverage 4/7 overall, no yaw bin) that
    is never penalised."""
    rng = np.random.default_rng(4)
    yaws = [10.0, 20.0, 40.0, 50.0, 70.0, 80.0, 15.0]
    gts = [_lm68(rng, y) for y in yaws]
    preds = [g + _anisotropic(rng) for g in gts]
    gts[6] = None  # GT missing
    e = [_published_nme(p, g) if g is not None else math.nan for p, g in zip(preds, gts)]
    batch = _nme_batch(gts, preds, yaws, failed=(1, 5))
    plain = AFLW2000NME()
    plain.update(*batch)
    r = plain.compute()
    assert r.metrics["nme_0_30"].value == pytest.approx(e[0], rel=1e-10)
    assert (r.metrics["nme_0_30"].n, r.metrics["nme_0_30"].n_failed) == (1, 1)  # the GT-less face has no yaw bin
    assert r.metrics["nme_30_60"].value == pytest.approx((e[2] + e[3]) / 2, rel=1e-10)
    assert r.metrics["coverage"].value == pytest.approx(100 * 4 / 7)
    assert r.metrics["coverage_0_30"].value == pytest.approx(50.0)
    assert r.metrics["coverage_30_60"].value == 100.0 and r.metrics["coverage_60_plus"].value == 50.0
    assert r.metrics["coverage"].direction == "higher" and r.metrics["nme_mean"].direction == "lower"
    assert "no GT" in r.failures["f6"]
    pen = AFLW2000NME(score_all=True, failure_nme=40.0)
    pen.update(*batch)
    p = pen.compute()
    assert p.metrics["nme_0_30"].value == pytest.approx((e[0] + 40.0) / 2, rel=1e-10)
    assert p.metrics["nme_60_plus"].value == pytest.approx((e[4] + 40.0) / 2, rel=1e-10)
    assert p.metrics["nme_mean"].value == pytest.approx(
        np.mean([(e[0] + 40) / 2, (e[2] + e[3]) / 2, (e[4] + 40) / 2]), rel=1e-10)
    assert p.metrics["nme_all"].value == pytest.approx((e[0] + e[2] + e[3] + e[4] + 80.0) / 6, rel=1e-10)
    assert p.config["score_all"] and "40" in p.config["failures"]
    with pytest.raises(ValueError, match="failure_nme"):
        AFLW2000NME(failure_nme=math.nan)


# ------------------------------------------------------------------------------ MICC pooling
def _plane(half=60.0, step=2.0):
    """A flat grid mesh on z = 0 (mm): vertices (N, 3), triangles (F, 3)."""
    xs = np.arange(-half, half + step / 2, step)
    n = len(xs)
    xx, yy = np.meshgrid(xs, xs)
    v = np.stack([xx.ravel(), yy.ravel(), np.zeros(n * n)], 1)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    f = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    return torch.from_numpy(v), torch.from_numpy(f)


def _micc_frame(sid, offset_mm, subject=None, identity=None, fail=False):
    """Scan = the plane's vertices, prediction = the plane moved by ``offset_mm`` along z: with
    the alignment fixed (no ICP) every point-to-plane distance is exactly ``offset_mm``."""
    v, f = _plane()
    meta = {"scan_nose_tip": torch.zeros(3, dtype=torch.float64)}
    if subject is not None:
        meta["subject"] = subject
    pred = v + torch.tensor([0.0, 0.0, offset_mm], dtype=torch.float64)
    if fail:
        pred = pred.clone()
        pred[0, 0] = math.nan
    return (Reconstruction(sid, [FaceReconstruction(pred, f)]),
            Sample(sample_id=sid, scan_vertices=v, identity=identity, meta=meta))


FRAMES = [  # (sample id "<subject>/<frame>", offset mm, subject, identity, fails)
    ("micc/cooperative/subject_01/000000", 0.5, "subject_01", 1, False),
    ("micc/cooperative/subject_01/000010", 1.0, "subject_01", 1, False),
    ("micc/cooperative/subject_01/000020", 1.5, "subject_01", 1, False),
    ("micc/cooperative/subject_02/000000", 2.0, "subject_02", 2, False),
    ("micc/cooperative/subject_03/000000", 1.0, "subject_03", 3, True),
    ("micc/cooperative/subject_04/000000", 0.3, None, 4, False),  # subject from the identity label
    ("micc/cooperative/subject_04/000010", 0.3, None, 4, True),
]


def _micc_batch(frames):
    pairs = [_micc_frame(sid, d, subj, ident, fail) for sid, d, subj, ident, fail in frames]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def test_micc_rmse_per_subject_then_over_subjects():
    """By hand: subjects 01 (0.5, 1.0, 1.5 -> 1.0), 02 (2.0), 04 (0.3; its 2nd frame failed);
    subject 03 has no scored frame. Over subjects: mean 1.1, population std sqrt(0.48667/1) ->
    0.69761, n = 3, 1 subject failed. Over frames: mean 1.06 of 5 scored, 2 failed."""
    m = MICCRMSE(max_iter=0, initial_alignment="none", radius=40.0)
    m.update(*_micc_batch(FRAMES))
    res = m.compute()
    sub = res.metrics["rmse"]
    assert sub.value == pytest.approx(1.1, abs=1e-9)
    assert sub.std == pytest.approx(math.sqrt((0.1 ** 2 + 0.9 ** 2 + 0.8 ** 2) / 3), abs=1e-9)
    assert (sub.n, sub.n_failed) == (3, 1)
    frames = res.metrics["rmse_frames"]
    assert frames.value == pytest.approx(5.3 / 5, abs=1e-9) and (frames.n, frames.n_failed) == (5, 2)
    assert res.per_sample["rmse_subject"] == pytest.approx({"subject_01": 1.0, "subject_02": 2.0,
                                                            "identity:4": 0.3}, abs=1e-9)
    assert res.per_sample["rmse"]["micc/cooperative/subject_01/000010"] == pytest.approx(1.0, abs=1e-9)
    assert list(res.metrics)[0] == "rmse" and res.config["n_subjects"] == 4


_sync_like_ddp = sync_like_ddp


def test_micc_subject_pooling_survives_ddp_sync():
    """Two ranks, a subject's frames split between them (and a padded duplicate): the same
    per-subject numbers as one process."""
    recs, samples = _micc_batch(FRAMES)
    one = MICCRMSE(max_iter=0, initial_alignment="none", radius=40.0)
    one.update(recs, samples)
    expected = one.compute()
    r0 = MICCRMSE(max_iter=0, initial_alignment="none", radius=40.0, sync_on_compute=False)
    r1 = MICCRMSE(max_iter=0, initial_alignment="none", radius=40.0)
    r0.update(recs[:2], samples[:2])
    r1.update(recs[2:], samples[2:])
    r1.update(recs[:1], samples[:1])  # DistributedSampler padding
    _sync_like_ddp(r0, [r1])
    got = r0.compute()
    assert got.metrics["rmse"].value == pytest.approx(expected.metrics["rmse"].value, abs=1e-12)
    assert got.per_sample["rmse_subject"] == pytest.approx(expected.per_sample["rmse_subject"], abs=1e-12)
    assert got.metrics["rmse_frames"].n == expected.metrics["rmse_frames"].n


def test_micc_nose_tip_sources_are_recorded():
    """A frame with an annotated nose tip and one without: "auto" uses the max-z fallback for
    the second and says so in the config; "annotation" makes it a failure instead."""
    recs, samples = _micc_batch(FRAMES[:2])
    del samples[1].meta["scan_nose_tip"]
    m = MICCRMSE(max_iter=0, initial_alignment="none", radius=40.0)
    m.update(recs, samples)
    res = m.compute()
    assert res.config["nose_tip_sources"] == {"given": 0, "annotation": 1, "max_z": 1}
    strict = MICCRMSE(max_iter=0, initial_alignment="none", radius=40.0, nose_tip="annotation")
    strict.update(recs, samples)
    res = strict.compute()
    assert "nose tip" in res.failures[samples[1].sample_id] and res.metrics["rmse_frames"].n == 1


def _write_obj(path, v, f):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in v] + [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in f]
    path.write_text("\n".join(lines) + "\n")


def test_micc_reader_reads_the_scan_annotation(tmp_path):
    """Annotation files next to the scan: 68 points (nose tip = point 30, NoW's 7 from it), a
    single nose tip (.npy), none (no fields), and a malformed one (2 points) refused with one
    line naming the file (strict) or skipped and counted (non-strict)."""
    from PIL import Image

    v, f = _plane()
    root = tmp_path / "MICC"
    rng = np.random.default_rng(0)
    lm68 = rng.uniform(-50, 50, (68, 3))
    for k, ann in enumerate(["68", "nose", None, "bad"], start=1):
        sd = root / f"subject_{k:02d}"
        _write_obj(sd / "Model" / "frontal1" / "obj" / "scan.obj", v.numpy(), f.numpy())
        frames = sd / "Video" / "Indoor-Cooperative"
        frames.mkdir(parents=True)
        Image.fromarray(np.full((16, 16, 3), 40 * k, np.uint8)).save(frames / "0000.png")
        folder = sd / "Model" / "frontal1" / "obj"
        if ann == "68":
            np.savetxt(folder / "landmarks.txt", lm68)
        elif ann == "nose":
            np.save(sd / "Model" / "frontal1" / "scan_landmarks.npy", np.array([[1.0, 2.0, 3.0]]))
        elif ann == "bad":
            np.savetxt(folder / "landmarks.txt", lm68[:2])
    r = MICCFlorenceReader(root, frame_stride=1, scan_scale=2.0)
    s1, s2, s3 = r[0], r[1], r[2]
    np.testing.assert_allclose(s1.meta["scan_landmarks68"].numpy(), 2.0 * lm68, rtol=1e-6)
    np.testing.assert_allclose(s1.meta["scan_nose_tip"].numpy(), 2.0 * lm68[30], rtol=1e-6)
    np.testing.assert_allclose(s1.scan_landmarks7.numpy(), 2.0 * lm68[NOW7], rtol=1e-6)
    assert s1.meta["scan_annotation_path"].endswith("landmarks.txt")
    np.testing.assert_allclose(s2.meta["scan_nose_tip"].numpy(), [2.0, 4.0, 6.0])
    assert s2.scan_landmarks7 is None and "scan_landmarks68" not in s2.meta
    assert "scan_nose_tip" not in s3.meta and "scan_annotation_path" not in s3.meta
    with pytest.raises(DataError) as e:
        r[3]
    assert "landmarks.txt" in str(e.value) and "\n" not in str(e.value)
    lax = MICCFlorenceReader(root, frame_stride=1, strict=False, skip="none")
    assert lax[3] is None and sum(lax.skipped.values()) == 1


# ---------------------------------------------------------------------------------------- NoW
def _now_case(seed=0, n=31):
    """A curved grid surface as both scan and GT (mm); its 7 NoW landmark vertices."""
    half = 45.0
    xs = np.linspace(-half, half, n)
    xx, yy = np.meshgrid(xs, xs)
    zz = 30 * np.exp(-(xx ** 2 + yy ** 2) / 900.0) + 0.002 * xx ** 2
    v = np.stack([xx.ravel(), yy.ravel(), zz.ravel()], 1)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    f = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    # 7 landmark vertices at face-like grid positions (eye corners, nose bottom, mouth corners)
    rc = [(20, 5), (20, 12), (20, 18), (20, 25), (13, 15), (7, 9), (7, 21)]
    lm7 = np.array([r * n + c for r, c in rc])
    return v, f, lm7


def _sim(rng, scale):
    a = rng.normal(size=3)
    a /= np.linalg.norm(a)
    th = rng.uniform(0.3, 2.5)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    rot = np.eye(3) + math.sin(th) * k + (1 - math.cos(th)) * k @ k
    return scale, rot, rng.uniform(-80, 80, 3)


def test_now_uses_the_methods_own_7_points():
    """The method gives its 7 points (landmarks3d (7, 3), NoW order, the official interface):
    the prediction is the GT under a random similarity, so the 7-point Procrustes alone (no
    ICP) puts it back and every distance is 0. Its 68-point indices are deliberately wrong:
    had the protocol used them, the distances would not be 0. A 5-row landmark set fails with
    a reason."""
    v, f, lm7 = _now_case()
    rng = np.random.default_rng(1)
    s, rot, t = _sim(rng, 1.3)
    pred = s * v @ rot.T + t
    wrong68 = torch.from_numpy(rng.choice(len(v), 68, replace=False))
    recs = [Reconstruction("a", [FaceReconstruction(torch.from_numpy(pred), torch.from_numpy(f),
                                                    landmark_indices=wrong68,
                                                    landmarks3d=torch.from_numpy(pred[lm7]))]),
            Reconstruction("b", [FaceReconstruction(torch.from_numpy(pred), torch.from_numpy(f),
                                                    landmark_indices=wrong68)]),
            Reconstruction("c", [FaceReconstruction(torch.from_numpy(pred), torch.from_numpy(f),
                                                    landmarks3d=torch.from_numpy(pred[lm7[:5]]))])]
    samples = [Sample(sample_id=k, scan_vertices=torch.from_numpy(v), scan_landmarks7=torch.from_numpy(v[lm7]))
               for k in "abc"]
    for backend in ("torch", "reference"):
        m = NoWScanToMesh(backend=backend, max_iter=0)
        m.update(recs, samples)
        res = m.compute()
        assert res.per_sample["mean"]["a"] < 1e-9
        assert res.per_sample["mean"]["b"] > 1.0
        assert "(7, 3)" in res.failures["c"]


def test_now_metrical_follows_the_official_order_of_operations():
    """Official metrical NoW: Procrustes WITH scale on the 7 points, then its rotation and
    translation applied with the scale replaced by the unit factor (1 for mm), then a rigid
    refinement. Known answer for the first two steps (max_iter=0): the Procrustes written out
    here (MATLAB-style, as the official code) gives the expected transform; a prediction twice
    the GT's size stays twice the size."""
    v, f, lm7 = _now_case()
    rng = np.random.default_rng(2)
    s, rot, t = _sim(rng, 0.5)  # the prediction is the GT shrunk to half (not metrical)
    pred = s * v @ rot.T + t
    x, y = v[lm7], pred[lm7]  # target (scan), source (prediction)
    x0, y0 = x - x.mean(0), y - y.mean(0)
    u, sig, vt = np.linalg.svd(x0.T @ y0)
    tmat = vt.T @ u.T  # y0 @ tmat ~ x0 (no reflection here)
    b = sig.sum() / (y0 ** 2).sum()
    c = x.mean(0) - b * y.mean(0) @ tmat
    expected = pred @ tmat + c  # scale 1 (unit factor), the scaled Procrustes' translation
    r = now_reference(pred, f, v, x, y, opts=FitOptions(with_scale=False, max_iter=0))
    assert r.scale == 1.0
    np.testing.assert_allclose(pred @ (r.rotation.T) + r.translation, expected, atol=1e-9)
    assert b == pytest.approx(2.0, rel=1e-9)
    m = NoWMetrical(max_iter=0)
    m.update([Reconstruction("p", [FaceReconstruction(torch.from_numpy(pred), torch.from_numpy(f),
                                                      landmarks3d=torch.from_numpy(y))])],
             [Sample(sample_id="p", scan_vertices=torch.from_numpy(v), scan_landmarks7=torch.from_numpy(x))])
    assert m.compute().per_sample["mean"]["p"] > 1.0  # half-size face: mm off, as it should be


# ----------------------------------------------------------------------- AFLW2000 re-annotation
def _write_aflw(root, names, rng):
    root.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    pts = {}
    for n in names:
        Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(root / n)
        p3 = np.vstack([rng.uniform(5, 60, (2, 68)), rng.uniform(0, 10, (1, 68))]).astype(np.float32)
        sio.savemat(root / n.replace(".jpg", ".mat"),
                    {"pt3d_68": p3, "Pose_Para": np.array([[0.1, 0.2, 0.0, 0, 0, 0, 1]], np.float32)})
        pts[n] = p3
    return pts


def test_aflw2000_reannotated_landmarks_in_3ddfa_format(tmp_path):
    """3DDFA's format: an (N, 3, 68) array (1-based px) whose row i is the image on line i of
    ``AFLW2000-3D_crop.list``. The reader's lm68 is that row's x, y - 0.5; the original
    pt3d_68 stays in lm68_3d / meta; an image missing from the list and a row-count mismatch
    are refused naming the file."""
    rng = np.random.default_rng(5)
    names = ["image00002.jpg", "image00004.jpg", "image00006.jpg"]
    orig = _write_aflw(tmp_path / "AFLW2000", names, rng)
    cfg = tmp_path / "test.configs"
    cfg.mkdir()
    order = [names[2], names[0]]  # not sorted, and image00004 is absent
    re = rng.uniform(5, 60, (2, 3, 68)).astype(np.float32)
    np.save(cfg / "AFLW2000-3D-Reannotated.pts68.npy", re)
    (cfg / "AFLW2000-3D_crop.list").write_text("\n".join(order) + "\n")
    r = AFLW2000Reader(tmp_path / "AFLW2000", landmarks_file=cfg / "AFLW2000-3D-Reannotated.pts68.npy")
    s0, s2 = r[0], r[2]  # image00002 -> row 1, image00006 -> row 0
    np.testing.assert_allclose(s0.lm68.numpy(), re[1, :2].T - 0.5, atol=1e-5)
    np.testing.assert_allclose(s2.lm68.numpy(), re[0, :2].T - 0.5, atol=1e-5)
    np.testing.assert_allclose(s0.lm68_3d[:, :2].numpy(), orig[names[0]][:2].T - 0.5, atol=1e-5)
    np.testing.assert_allclose(s0.meta["lm68_original"].numpy(), orig[names[0]][:2].T - 0.5, atol=1e-5)
    assert s0.meta["lm68_source"].startswith("reannotated")
    with pytest.raises(DataError, match="image00004.jpg is not in the re-annotation list"):
        r[1]
    plain = AFLW2000Reader(tmp_path / "AFLW2000")
    np.testing.assert_allclose(plain[0].lm68.numpy(), orig[names[0]][:2].T - 0.5, atol=1e-5)
    (cfg / "AFLW2000-3D_crop.list").write_text("\n".join(names) + "\n")  # 3 names, 2 rows
    with pytest.raises(DataError, match="2 landmark sets for 3 image names"):
        AFLW2000Reader(tmp_path / "AFLW2000", landmarks_file=cfg / "AFLW2000-3D-Reannotated.pts68.npy")
