"""Acceptance check on real photos: the fitting baseline beats the mean face by the 5-point
reprojection error against the photos' reference points (detected-input protocol of
b3f_methods.fitting.evaluate: both methods get MTCNN's points, the reference points are only
the target). Fast settings here; benchmarks/fitting.py runs the defaults."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("facenet_pytorch", reason="MTCNN detection needs facenet-pytorch")

from b3f_methods.baselines import MeanFace
from b3f_methods.fitting import Fitting
from b3f_methods.fitting.evaluate import detected_input_errors, load_cases
from synthetic import with_model

from benchmark3dface.data.preprocess import MTCNNDetector


@pytest.fixture(scope="module")
def cases(shared_data):
    return load_cases(shared_data("photos_5pt"), MTCNNDetector(min_face_size=60))


def test_fitting_beats_meanface_on_real_photos(cases, procedural_model):
    assert len(cases) == 10
    # MTCNN's points are a different detection than the reference ones (not a copy of the target)
    gap = torch.stack([(c.detected5 - c.reference5).norm(dim=-1).mean() for c in cases])
    assert (gap > 0.3).all()
    meanface = with_model(MeanFace, procedural_model)
    fitting = with_model(Fitting, procedural_model, landmark_iters=50, photo_iters=3, fit_size=64)
    mf = detected_input_errors(meanface, cases, size=96)
    fit = detected_input_errors(fitting, cases, size=96)
    assert fit["errors"].mean() < 0.85 * mf["errors"].mean(), (fit["errors"], mf["errors"])
    assert (fit["errors"] < mf["errors"]).sum() >= 6
    assert (fit["seconds"] > 0).all()
