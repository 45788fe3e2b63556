"""``b3f reconstruct`` with bad photos, run as a user runs it (``cli.main.main``): a 1x1 image
and landmarks far outside the photo each give one line naming the file and the problem, are
counted in the summary, and never print a traceback; the checks behind them, by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark3dface.cli.main import main
from benchmark3dface.data.preprocess import AlignCrop
from benchmark3dface.data.preprocess.align import MIN_PHOTO_SIDE, landmark_margin_px, points_outside
from benchmark3dface.data.readers import DataError
from benchmark3dface.data.sample import Sample

#: a plausible 5-point layout (eyes, nose, mouth corners) in a 120x100 photo, pixels
LM5 = np.array([[45.0, 45.0], [75.0, 45.0], [60.0, 62.0], [48.0, 78.0], [72.0, 78.0]])
TARGET5 = torch.tensor([[89.0, 95.0], [135.0, 95.0], [112.0, 122.0], [93.0, 147.0], [131.0, 147.0]])


def _photo(path, w=120, h=100, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def test_tiny_image_and_far_landmarks_one_line_each(tmp_path, capsys):
    Image.new("RGB", (1, 1), (128, 90, 70)).save(tmp_path / "dot.png")
    Image.new("RGB", (1, 1)).save(tmp_path / "dot_lm.png")
    np.savetxt(tmp_path / "dot_lm.txt", LM5 / 100)  # with a landmark file: no detector involved
    _photo(tmp_path / "far.png")
    np.savetxt(tmp_path / "far.txt", LM5 + np.array([5000.0, 9000.0]) - LM5[0])  # (5000, 9000) ...
    argv = ["reconstruct", str(tmp_path / "dot_lm.png"), str(tmp_path / "far.png"), "--method", "meanface",
            "--out", str(tmp_path / "out")]
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 1 and "Traceback" not in err + out
    err_lines = _lines(err)
    assert len([ln for ln in err_lines if ln.startswith("b3f reconstruct: ")]) == 2
    tiny = next(ln for ln in err_lines if "dot_lm.png" in ln)
    assert f"{tmp_path / 'dot_lm.png'}: image is 1x1 pixels, too small" in tiny and f"{MIN_PHOTO_SIDE}x" in tiny
    far = next(ln for ln in err_lines if "far.png" in ln)
    assert "5 of 5 landmarks used for alignment lie outside the 120x100 image by more than 30 px" in far
    assert "(5000.0, 9000.0)" in far
    assert "0 reconstructed, 2 failed: landmarks_outside x1, too_small x1" in out
    assert not (tmp_path / "out" / "far.obj").exists()


def test_tiny_image_without_landmarks_never_reaches_the_detector(tmp_path, capsys, monkeypatch):
    import benchmark3dface.data.preprocess as preprocess

    def no_detector(*a, **k):  # MTCNN on a 1x1 image: "torch.cat(): expected a non-empty list"
        raise AssertionError("no detector may be built or run for a too-small image")

    monkeypatch.setattr(preprocess, "make_detector", no_detector)
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    Image.new("RGB", (19, 400)).save(tmp_path / "strip.png")
    rc = main(["reconstruct", str(tmp_path / "dot.png"), str(tmp_path / "strip.png"), "--method", "meanface",
               "--out", str(tmp_path / "out"), "--landmarks", "detect"])
    out, err = capsys.readouterr()
    assert rc == 1 and "Traceback" not in err and "torch.cat" not in err
    assert "dot.png: image is 1x1 pixels, too small" in err and "strip.png: image is 19x400 pixels" in err
    assert "0 reconstructed, 2 failed: too_small x2" in out


def test_margin_rule_by_hand():
    # 120 x 100 photo: margin = 0.25 * 120 = 30 px; the photo spans u in [0, 120], v in [0, 100]
    assert landmark_margin_px(100, 120) == pytest.approx(30.0)
    pts = torch.tensor([[-29.9, 50.0], [-30.1, 50.0], [149.9, 0.0], [150.1, 0.0], [60.0, 130.0], [60.0, -30.5]])
    assert points_outside(pts, 100, 120, 30.0).tolist() == [False, True, False, True, False, True]


@pytest.mark.parametrize("shift,ok", [(-(45.0 + 29.0), True), (-(45.0 + 31.0), False)])
def test_align_crop_accepts_cut_faces_within_the_margin(shift, ok):
    """The face shifted left until its first eye is 29 px (accepted) or 31 px (refused) outside."""
    img = torch.rand(3, 100, 120)
    lm5 = torch.tensor(LM5, dtype=torch.float32) + torch.tensor([shift, 0.0])
    s = Sample(kind="single", sample_id="cut", image=img, lm5=lm5, labelled=False, meta={"path": "cut.png"})
    crop = AlignCrop(TARGET5, 224, compute_skin=False)
    if ok:
        assert crop(s).image.shape == (3, 224, 224)
    else:
        with pytest.raises(DataError) as e:
            crop(s)
        assert e.value.reason == "landmarks_outside" and str(e.value).startswith("cut.png: 1 of 5 ")


def test_degenerate_landmarks_are_a_data_error():
    img = torch.rand(3, 100, 120)
    s = Sample(kind="single", sample_id="flat", image=img, lm5=torch.full((5, 2), 50.0), labelled=False,
               meta={"path": "flat.png"})
    with pytest.raises(DataError) as e:
        AlignCrop(TARGET5, 224, compute_skin=False)(s)
    assert e.value.reason == "bad_landmarks" and "flat.png: cannot align" in str(e.value)


def test_threads_option_is_checked_in_one_line(tmp_path, capsys):
    _photo(tmp_path / "p.png")
    rc = main(["reconstruct", str(tmp_path / "p.png"), "--method", "meanface", "--out", str(tmp_path / "o"),
               "--threads", "0"])
    _, err = capsys.readouterr()
    assert rc == 2 and _lines(err) == ["b3f reconstruct: error: --threads expects a positive integer, got 0"]
