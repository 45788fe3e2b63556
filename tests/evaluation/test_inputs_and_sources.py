"""Inputs are not ground truth: the input-only view, landmark sources, and the one loop."""

from __future__ import annotations

import math

import pytest
import torch

from benchmark3dface.data.sample import Sample
from benchmark3dface.evaluation import GroundTruthAccessError, build_landmark_source, input_view
from benchmark3dface.evaluation.landmarks import face_size
from benchmark3dface.evaluation.loop import EvaluationPlan, evaluate_batch
from benchmark3dface.methods import MethodSpec
from benchmark3dface.methods.reconstruction import FaceReconstruction, Reconstruction


def _batch(n: int = 3) -> Sample:
    g = torch.Generator().manual_seed(0)
    lm = torch.rand(n, 68, 2, generator=g) * 80 + 20
    return Sample(kind="single", sample_id=[f"s{i}" for i in range(n)], image=torch.rand(n, 3, 32, 32, generator=g),
                  lm68=lm, lm5=lm[:, :5], coeffs=torch.randn(n, 10, generator=g), vertices=torch.randn(n, 50, 3, generator=g),
                  camera=[{"focal": 1.0}] * n, meta=[{"path": "a.png", "secret": 1}] * n)


def test_view_hides_ground_truth_and_uses_the_source_landmarks():
    b = _batch()
    fake = {"lm68": torch.zeros(3, 68, 2), "lm5": torch.ones(3, 5, 2)}
    v = input_view(b, ("image", "lm68", "lm5"), fake, owner="m")
    assert torch.equal(v.image, b.image)
    assert torch.equal(v.lm68, fake["lm68"]) and not torch.equal(v.lm68, b.lm68)  # never the annotations
    for gt in ("coeffs", "vertices", "depth", "lm68_visible", "skin_mask", "camera"):
        with pytest.raises(GroundTruthAccessError, match=gt):
            getattr(v, gt)
    assert v.meta == [{"path": "a.png"}] * 3  # labels in meta are dropped too
    assert set(v.present()) == {"kind", "sample_id", "image", "lm68", "lm5", "meta"}
    # an oracle declares what it reads
    o = input_view(b, ("image", "gt:coeffs"))
    assert torch.equal(o.coeffs, b.coeffs)
    with pytest.raises(GroundTruthAccessError):
        o.vertices


def test_spec_rejects_unknown_inputs():
    with pytest.raises(ValueError, match="unknown test-time input"):
        MethodSpec(name="x", inputs=("image", "scan_vertices"))
    MethodSpec(name="x", inputs=("image", "gt:scan_vertices"))


class _Peeker:
    """A 'method' that reads the GT mesh at test time."""

    def reconstruct(self, batch):
        return [Reconstruction(s, [FaceReconstruction(v, torch.zeros(1, 3, dtype=torch.long))])
                for s, v in zip(batch.sample_id, batch.vertices)]


class _Echo:
    def __init__(self):
        self.seen = []

    def reconstruct(self, batch):
        self.seen.append(list(batch.sample_id))
        return [Reconstruction(s, [FaceReconstruction(torch.zeros(3, 3), torch.tensor([[0, 1, 2]]))])
                for s in batch.sample_id]


class _Count:
    """A minimal protocol stand-in recording what it was given."""

    def __init__(self):
        self.got = []

    def update(self, recs, target):
        self.got.append((recs, target))


def test_a_method_reading_ground_truth_fails_loudly():
    plan = EvaluationPlan(protocols={}, inputs=("image",), owner="peeker")
    with pytest.raises(GroundTruthAccessError, match="peeker read Sample.vertices"):
        evaluate_batch(_Peeker().reconstruct, _batch(), plan, {"c": _Count()})


def test_missed_faces_are_failures_the_method_never_sees():
    class Half:
        name = "detector"

        def __call__(self, batch):
            lm = batch.lm68.clone()
            lm[1] = float("nan")
            return {"lm68": lm, "lm5": lm[:, :5], "ok": torch.tensor([True, False, True])}

    m = _Echo()
    c = _Count()
    plan = EvaluationPlan(protocols={}, inputs=("image", "lm68"), landmark_source=Half(), owner="echo")
    n = evaluate_batch(m.reconstruct, _batch(), plan, {"c": c})
    assert n == 3 and m.seen == [["s0", "s2"]]
    recs, target = c.got[0]
    assert [r.sample_id for r in recs] == ["s0", "s1", "s2"]
    assert recs[1].face.failure.startswith("no landmarks from the landmark source") and recs[0].face.failure is None
    assert torch.is_tensor(target.vertices)  # protocols get the full sample


def test_a_crashing_method_gives_counted_failures():
    class Boom:
        def reconstruct(self, batch):
            raise RuntimeError("out of memory\nmore")

    c = _Count()
    plan = EvaluationPlan(protocols={}, owner="boom")
    evaluate_batch(Boom().reconstruct, _batch(), plan, {"c": c})
    recs, _ = c.got[0]
    assert all(r.face.failure == "method error: RuntimeError: out of memory" for r in recs)
    assert plan.errors == ["RuntimeError: out of memory"]


def test_gt_noise_is_seeded_by_sample_and_has_the_stated_scale():
    b = _batch(200)
    src = build_landmark_source({"gt_noise": {"sigma": 0.05}})
    a, again = src(b), src(b)
    assert torch.equal(a["lm68"], again["lm68"])  # same noise for every method
    sub = Sample(kind="single", sample_id=b.sample_id[:3], lm68=b.lm68[:3])
    assert torch.equal(src(sub)["lm68"], a["lm68"][:3])  # per sample, not per batch position
    rel = (a["lm68"] - b.lm68) / face_size(b.lm68)[:, None, None]
    assert abs(float(rel.std()) - 0.05) < 0.003 and abs(float(rel.mean())) < 0.003
    gt = build_landmark_source("gt")(b)
    assert torch.equal(gt["lm68"], b.lm68)
    with pytest.raises(ValueError, match="unknown landmark source"):
        build_landmark_source("oracle")
    with pytest.raises(ValueError, match="sigma"):
        build_landmark_source({"gt_noise": {"sigma": -1}})


def test_face_size_is_sqrt_box_area():
    lm = torch.tensor([[0.0, 0.0], [4.0, 0.0], [4.0, 9.0]])
    assert math.isclose(float(face_size(lm)), 6.0)


def test_detector_source_finds_real_faces():
    """On real photos the detector source returns landmarks near the given 5 points."""
    from pathlib import Path

    import numpy as np

    from benchmark3dface.data.readers.imageio import load_image, to_tensor

    root = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "photos_5pt"
    if not root.is_dir():
        pytest.skip("../shared/data/photos_5pt not available")
    src = build_landmark_source("detector")
    img_path = sorted(root.glob("*.jpg"))[0]
    img = to_tensor(load_image(img_path))
    given = torch.as_tensor(np.loadtxt(img_path.with_suffix(".txt")), dtype=torch.float32)
    out = src(Sample(kind="single", sample_id=["p"], image=img[None]))
    assert bool(out["ok"][0])
    iod = float((given[0] - given[1]).norm())
    err = (out["lm5"][0] - given).norm(dim=-1).mean()
    assert float(err) < 0.15 * iod, f"{src.describe()}: 5-point error {float(err):.1f} px, IOD {iod:.1f}"
