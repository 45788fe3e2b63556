"""Detection protocol on hand-made multi-face images: expected recall, precision, AP and false
positives worked out by hand (permuted faces, a missing face, a false positive, duplicates,
tied scores, the IoU rule, failures, DDP)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from .ddp_sync import sync_like_ddp
from benchmark3dface.data.sample import Sample
from benchmark3dface.methods.reconstruction import FaceReconstruction, Reconstruction
from benchmark3dface.metrics import PROTOCOLS, FaceDetection, build_protocol
from benchmark3dface.metrics.detection import average_precision

CENTRES = [(100.0, 100.0), (300.0, 120.0), (200.0, 300.0)]
SIZE = 60.0  # GT face size: the landmark box is a SIZE x SIZE square -> match radius 30 px


def _lm(cx: float, cy: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    pts = (torch.rand(68, 2, generator=g, dtype=torch.float64) - 0.5) * SIZE
    pts[:2] = torch.tensor([[-0.5, -0.5], [0.5, 0.5]], dtype=torch.float64) * SIZE
    return pts + torch.tensor([cx, cy], dtype=torch.float64)


def _image(sid: str = "img", n: int = 3) -> Sample:
    return Sample(kind="multiface", sample_id=sid, lm68=torch.stack([_lm(*c, k) for k, c in enumerate(CENTRES[:n])]),
                  centers=torch.tensor(CENTRES[:n]))


def _det(x: float, y: float, score: float | None = None, **kw) -> FaceReconstruction:
    return FaceReconstruction(None, None, center=torch.tensor([x, y]), score=score, **kw)


def _run(pairs, **options):
    m = FaceDetection(**options)
    for rec, sample in pairs:
        m.update([rec], [sample])
    return m.compute()


def test_registered_and_directions():
    assert PROTOCOLS["detection"] is FaceDetection
    assert isinstance(build_protocol("detection", match_rule="iou"), FaceDetection)
    for name in ("average_precision", "recall", "precision"):
        assert FaceDetection.directions[name] == "higher"


def test_permuted_faces_are_all_found():
    faces = [_det(202, 298, 0.7), _det(99, 101, 0.9), _det(301, 118, 0.8)]
    res = _run([(Reconstruction("img", faces), _image())])
    m = res.metrics
    assert (m["recall"].value, m["precision"].value, m["average_precision"].value) == (1.0, 1.0, 1.0)
    assert m["false_positives"].value == 0 and m["missed"].value == 0
    assert res.per_sample["true_positives"]["img"] == 3


def test_missing_face():
    # 2 of 3 faces found: recall 2/3, precision 1; AP = 2/3 (precision 1 up to recall 2/3)
    res = _run([(Reconstruction("img", [_det(100, 100, 0.9), _det(200, 300, 0.5)]), _image())])
    m = res.metrics
    assert m["recall"].value == pytest.approx(2 / 3) and m["precision"].value == 1.0
    assert m["average_precision"].value == pytest.approx(2 / 3) and m["missed"].value == 1


def test_false_positive_ranked_first_and_last():
    # GT 2 faces. FP scored highest: ranked FP, TP, TP -> (recall, precision) = (0, 0), (1/2, 1/2),
    # (1, 2/3); envelope 2/3 everywhere -> AP = 1/2 * 2/3 + 1/2 * 2/3 = 2/3
    sample = _image(n=2)
    first = [_det(900, 900, 0.9), _det(100, 100, 0.8), _det(300, 120, 0.7)]
    res = _run([(Reconstruction("img", first), sample)])
    m = res.metrics
    assert m["average_precision"].value == pytest.approx(2 / 3)
    assert m["precision"].value == pytest.approx(2 / 3) and m["recall"].value == 1.0
    assert m["false_positives"].value == 1
    # the same FP scored lowest costs no AP (it comes after full recall)
    last = [_det(900, 900, 0.1), _det(100, 100, 0.8), _det(300, 120, 0.7)]
    assert _run([(Reconstruction("img", last), sample)]).metrics["average_precision"].value == pytest.approx(1.0)


def test_duplicates_are_false_positives():
    # two detections on one face: the higher score takes it (even if less centred), the other
    # is a false positive. AP: (1, 1) then (1, 1/2) -> 1; precision 1/2
    sample = _image(n=1)
    faces = [_det(110, 100, 0.9), _det(100, 100, 0.8)]
    res = _run([(Reconstruction("img", faces), sample)])
    m = res.metrics
    assert m["average_precision"].value == pytest.approx(1.0)
    assert m["precision"].value == pytest.approx(0.5) and m["false_positives"].value == 1
    assert res.per_sample["false_positives"]["img"] == 1


def test_tied_scores_do_not_depend_on_order():
    # GT 2; one TP and one FP without scores (both count as 1): a single threshold at
    # recall 1/2, precision 1/2 -> AP 1/4 whatever the order of the faces
    sample = _image(n=2)
    a = _run([(Reconstruction("img", [_det(100, 100), _det(900, 900)]), sample)])
    b = _run([(Reconstruction("img", [_det(900, 900), _det(100, 100)]), sample)])
    assert a.metrics["average_precision"].value == pytest.approx(0.25)
    assert b.metrics["average_precision"].value == pytest.approx(0.25)


def test_pooled_over_images():
    # image A: its face found (score 0.6); image B: its face missed and a FP (score 0.9).
    # Ranked: FP (0, 0), TP (1/2, 1/2) -> AP = 1/2 * 1/2 = 1/4
    a, b = _image("a", 1), _image("b", 1)
    res = _run([(Reconstruction("a", [_det(100, 100, 0.6)]), a),
                (Reconstruction("b", [_det(600, 600, 0.9)]), b)])
    m = res.metrics
    assert m["average_precision"].value == pytest.approx(0.25)
    assert m["recall"].value == 0.5 and m["precision"].value == 0.5 and m["missed"].value == 1
    assert res.per_sample["recall"] == {"a": 1.0, "b": 0.0}


def test_iou_rule_and_failed_faces():
    sample = _image(n=1)
    gt = sample.lm68[0]
    shifted = FaceReconstruction(None, None, landmarks2d=gt + torch.tensor([20.0, 0.0]), score=0.9)
    # IoU of the two 60-px boxes shifted by 20 px = 40*60 / (2*3600 - 2400) = 1/2 -> a match;
    # by 25 px: 35*60 / (7200 - 2100) = 0.41 -> none
    assert _run([(Reconstruction("img", [shifted]), sample)], match_rule="iou").metrics["recall"].value == 1.0
    shifted25 = FaceReconstruction(None, None, landmarks2d=gt + torch.tensor([25.0, 0.0]), score=0.9)
    res = _run([(Reconstruction("img", [shifted25]), sample)], match_rule="iou")
    assert res.metrics["recall"].value == 0.0 and res.metrics["false_positives"].value == 1
    assert "IoU" in res.config["match"]
    # a face with a failure reason is no detection (neither TP nor FP)
    failed = _det(100, 100, 0.9, failure="fit diverged")
    res = _run([(Reconstruction("img", [failed]), sample)])
    assert res.metrics["recall"].value == 0.0 and res.metrics["false_positives"].value == 0
    assert math.isnan(res.per_sample["precision"]["img"]) and not res.failures  # no detection: precision undefined


def test_failures_and_no_reconstruction():
    m = FaceDetection()
    m.update([Reconstruction("elsewhere", [])], [Sample(kind="multiface", sample_id="nogt"), _image("norec", 2)])
    m.update([Reconstruction("set", [])], [Sample(kind="set", sample_id="set", lm68=torch.zeros(2, 68, 2))])
    res = m.compute()
    assert set(res.failures) == {"nogt", "set"}
    assert "Sample.lm68" in res.failures["nogt"]
    # an image without a reconstruction has no detections: its faces are missed
    assert res.per_sample["recall"]["norec"] == 0.0 and res.metrics["missed"].value == 2
    assert res.metrics["recall"].n == 1 and res.metrics["recall"].n_failed == 2


_sync_like_ddp = sync_like_ddp


def test_ddp_and_duplicate_images():
    a, b = _image("a", 1), _image("b", 1)
    ra, rb = Reconstruction("a", [_det(100, 100, 0.6)]), Reconstruction("b", [_det(600, 600, 0.9)])
    r0, r1 = FaceDetection(sync_on_compute=False), FaceDetection()
    r0.update([ra], [a])
    r1.update([rb], [b])
    r1.update([ra], [a])  # padded duplicate: must not add a second TP
    _sync_like_ddp(r0, [r1])
    m = r0.compute().metrics
    assert m["average_precision"].value == pytest.approx(0.25) and m["recall"].value == 0.5


def test_average_precision_function():
    assert average_precision(np.array([]), np.array([]), 3) == 0.0
    assert math.isnan(average_precision(np.array([0.5]), np.array([0.0]), 0))
    # TP .9, FP .8, TP .7 against 2 GT: (1/2, 1), (1/2, 1/2), (1, 2/3) -> 1/2 + 1/2 * 2/3
    assert average_precision(np.array([0.9, 0.8, 0.7]), np.array([1, 0, 1]), 2) == pytest.approx(0.5 + 1 / 3)
