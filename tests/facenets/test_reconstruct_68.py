"""``b3f reconstruct``'s photo preprocessing uses the 68-point detector (BlazeFace + face-api) when
its weights are cached, and the overlay PNG shows those 68 points. (The method step is covered
by tests/cli_reconstruct; building a face model there takes ~15 s, so this test calls the
command's preprocessing and drawing functions directly.)"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .conftest import need_weights


def test_reconstruct_preprocessing_uses_the_68_point_detector(tmp_path, shared_data):
    need_weights("blazeface", "faceapi_landmark68")
    from benchmark3dface.cli import reconstruct
    from benchmark3dface.data.preprocess import make_detector
    from benchmark3dface.data.readers.annotations import read_points_txt

    photo = shared_data("photos_5pt", "000031.jpg")
    job = reconstruct.PhotoJob(photo, "000031")
    target5 = torch.tensor([[46.0, 58.0], [82.0, 58.0], [64.0, 78.0], [50.0, 100.0], [78.0, 100.0]])
    detector = make_detector("auto")
    reconstruct.preprocess(job, target5, 128, "detect", 1, lambda: detector)
    assert job.landmarks_source == "blazeface+faceapi68"
    s = job.sample
    assert s.lm68 is not None and s.lm68.shape == (68, 2)
    lm68 = s.meta["crop_transform"].apply_inverse(s.lm68.double()).numpy()  # back to the photo
    ref = np.asarray(read_points_txt(photo.with_suffix(".txt"), n_points=(5,)))
    eyes = np.stack([lm68[[36, 39]].mean(0), lm68[[42, 45]].mean(0)])
    assert np.linalg.norm(eyes - ref[:2], axis=1).max() < 0.15 * np.linalg.norm(ref[1] - ref[0])
    # the overlay draws the detected 68 points in blue
    png = tmp_path / "lm.png"
    reconstruct.draw_landmarks(job.photo, np.zeros((0, 2)), None, png, lm68)
    arr = np.asarray(Image.open(png).convert("RGB")).astype(int)
    hits = 0
    for x, y in np.round(lm68).astype(int):
        patch = arr[max(0, y - 2):y + 3, max(0, x - 2):x + 3]
        hits += bool(((patch[..., 2] > 200) & (patch[..., 0] < 100)).any())
    assert hits >= 60, hits
    before = np.asarray(Image.fromarray(job.photo)).astype(int)
    assert ((arr - before) != 0).any(axis=-1).sum() > 68  # something was drawn
