"""The instruments of benchmarks/wm3dr_claims.py: face sizes, the recall / false-positive
arithmetic with the size filter, and the Spearman helper."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def script(benchmark_script):
    return benchmark_script("wm3dr_claims")


def test_face_sizes_are_sqrt_of_the_landmark_box_area(script):
    lm = torch.zeros(2, 68, 2)
    lm[0, 1] = torch.tensor([30.0, 120.0])  # box 30 x 120 -> 60
    lm[1, 5] = torch.tensor([10.0, 10.0])
    assert script.face_sizes(lm).tolist() == [60.0, 10.0]


def test_detection_summary_counts_recall_by_size_and_false_positives(script):
    matches = [[0, None, 2], [None], []]
    n_faces = [4, 0, 1]  # image 0: 4 detections, 2 matched -> 2 FP; image 1: none; image 2: 1 FP
    sizes = [torch.tensor([50.0, 45.0, 20.0]), torch.tensor([80.0]), torch.zeros(0)]
    row = script.detection_summary(matches, n_faces, sizes, 40.0)
    assert row["recall"] == pytest.approx(2 / 4) and row["gt_faces"] == 4
    assert row["recall_min_face"] == pytest.approx(1 / 3) and row["gt_faces_min_face"] == 3
    assert row["false_positives"] == 3 and row["images_without_detection"] == 1


def test_spearman(script):
    assert script.spearman([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)
    assert script.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert script.spearman([1, 2], [1, 2]) != script.spearman([1, 2], [1, 2])  # NaN below 3 faces
