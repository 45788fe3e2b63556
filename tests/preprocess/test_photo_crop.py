"""PhotoAlignCrop, the photo-folder training transform: the real photos of ../shared/data/photos_5pt
are aligned with their 5-point files and get 68 detected landmarks that agree with those files;
photos without a usable face are refused with one error naming the file."""

from __future__ import annotations

import copy

import pytest
import torch

from benchmark3dface.data.preprocess.photo_crop import PhotoAlignCrop, lm5_mismatch
from benchmark3dface.data.readers.errors import DataError
from benchmark3dface.data.sample import Sample
from benchmark3dface.weights import available

CROP = 112
NETWORKS = ("blazeface", "faceapi_landmark68")


@pytest.fixture(scope="module")
def transform():
    missing = [n for n in NETWORKS if not available(n)]
    if missing:
        pytest.skip(f"converted weights {missing} are not cached (run: b3f weights fetch {' '.join(missing)})")
    return PhotoAlignCrop(crop_size=CROP)


def _five_from_68(lm68: torch.Tensor) -> torch.Tensor:
    """Deng's 5 points from the 68, written out here (eye centres, nose tip, mouth corners)."""
    return torch.stack([(lm68[36] + lm68[39]) / 2, (lm68[42] + lm68[45]) / 2, lm68[30], lm68[48], lm68[54]])


def test_lm5_mismatch_known_answer():
    lm5 = torch.tensor([[0.0, 0.0], [10.0, 0.0], [5.0, 5.0], [2.0, 10.0], [8.0, 10.0]])  # eye distance 10
    lm68 = torch.zeros(68, 2)
    lm68[36] = lm68[39] = lm5[0] + torch.tensor([3.0, 4.0])  # 5 px off
    lm68[42] = lm68[45] = lm5[1]
    lm68[30], lm68[48] = lm5[2], lm5[3]
    lm68[54] = lm5[4] + torch.tensor([6.0, 8.0])  # 10 px off
    assert lm5_mismatch(lm5, lm68) == pytest.approx((5.0 + 10.0) / 5 / 10.0)


def test_photos_are_aligned_with_their_5_points_and_get_68_detected_points(transform, photos):
    target = transform.align.target5
    for s in photos:
        name = s.meta["path"]
        out = transform(copy.deepcopy(s))
        assert out.image.shape == (3, CROP, CROP), name
        assert out.meta["lm68_source"] == "blazeface+faceapi68", name
        # the file's 5 points, mapped into the crop, are what the crop was aligned with
        tr = out.meta["crop_transform"]
        assert torch.allclose(out.lm5, tr.apply(s.lm5), atol=1e-3), name
        iod = float((target[1] - target[0]).norm())
        assert float((out.lm5 - target).norm(dim=-1).mean()) < 0.15 * iod, name
        # 68 detected points (an independent network) agree with the file's 5 points
        assert out.lm68.shape == (68, 2) and torch.isfinite(out.lm68).all(), name
        err = float((_five_from_68(out.lm68) - out.lm5).norm(dim=-1).mean()) / float((out.lm5[1] - out.lm5[0]).norm())
        assert err < 0.1, (name, err)
        inside = ((out.lm68 >= 0) & (out.lm68 <= CROP)).all(-1).float().mean()
        assert inside > 0.9, name
        assert out.skin_mask.shape == (CROP, CROP) and 0.0 <= float(out.skin_mask.min()) <= float(out.skin_mask.max()) <= 1.0


def test_without_landmark_files_the_detected_points_align(transform, photos):
    s = photos[0]
    transform.landmark_files = False
    try:
        out = transform(copy.deepcopy(s))
    finally:
        transform.landmark_files = True
    assert torch.allclose(out.lm5, _five_from_68(out.lm68), atol=1e-3)
    assert not torch.allclose(out.lm5, out.meta["crop_transform"].apply(s.lm5), atol=0.5)  # not the file's points


def test_a_photo_without_a_face_is_refused_naming_the_file(transform):
    blank = Sample(kind="single", sample_id="blank", image=torch.full((3, 200, 240), 0.5), labelled=False,
                   meta={"path": "/photos/blank.png"})
    with pytest.raises(DataError, match="blank.png") as exc:
        transform(blank)
    assert exc.value.reason == "no_face"
    assert "\n" not in str(exc.value)


def test_five_points_of_another_face_are_refused(transform, photos):
    s = copy.deepcopy(photos[0])
    iod = float((s.lm5[1] - s.lm5[0]).norm())
    s.lm5 = s.lm5 + torch.tensor([iod, 0.0])  # the file's points one eye distance beside the face
    with pytest.raises(DataError, match="not the one of the 5-point file") as exc:
        transform(s)
    assert exc.value.reason == "bad_landmarks"


def test_training_without_a_68_point_network_is_a_clear_error():
    with pytest.raises(ValueError, match="b3f weights fetch"):
        PhotoAlignCrop(crop_size=CROP, detector="mtcnn", landmarker="none")
