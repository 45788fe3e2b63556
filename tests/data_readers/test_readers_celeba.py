"""CelebA reader on a fixture in the true list-file format (two header lines, partition list,
identity list), flat and official (Img/Anno/Eval) layouts."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark3dface.data.readers import CelebAReader, DataError, MissingFileError

HEADER = "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y"
PTS = {f"{i:06d}.jpg": [69 + i, 109, 106 + i, 113, 77 + i, 142, 73 + i, 152, 108 + i, 154] for i in range(1, 7)}


def _write(root, writers, official=False, bad_line=None):
    img_dir = root / ("Img" if official else "") / "img_align_celeba"
    anno = root / ("Anno" if official else "")
    ev = root / ("Eval" if official else "")
    for d in (anno, ev):
        d.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(PTS):
        writers.save_image(img_dir / name, writers.image(218, 178, k), quality=95)
    lines = [str(len(PTS)), HEADER]
    for name, p in PTS.items():
        row = " ".join(f"{v:4d}" for v in p)
        lines.append(f"{name} {row}" if name != bad_line else f"{name} 69 109 106")
    (anno / "list_landmarks_align_celeba.txt").write_text("\n".join(lines) + "\n")
    parts = [0, 0, 0, 1, 2, 2]
    (ev / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for n, p in zip(PTS, parts)))
    (anno / "identity_CelebA.txt").write_text("".join(f"{n} {100 + k % 2}\n" for k, n in enumerate(PTS)))
    return root


@pytest.mark.parametrize("official", [False, True])
def test_splits_landmarks_identity(tmp_path, writers, official):
    root = _write(tmp_path, writers, official)
    tr, va, te, al = (CelebAReader(root, split=s) for s in ("train", "val", "test", "all"))
    assert (len(tr), len(va), len(te), len(al)) == (3, 1, 2, 6)
    s = te[1]
    assert s.sample_id == "celeba/000006" and s.image.shape == (3, 218, 178)
    expected = np.array(PTS["000006.jpg"], float).reshape(5, 2) + 0.5
    np.testing.assert_allclose(s.lm5.numpy(), expected)
    assert s.identity == 101 and not s.labelled and s.lm68 is None
    # Deng's order: left eye left of right eye, eyes above mouth
    assert s.lm5[0, 0] < s.lm5[1, 0] and s.lm5[:2, 1].max() < s.lm5[3:, 1].min()


def test_resize_and_bad_line(tmp_path, writers):
    root = _write(tmp_path, writers, bad_line="000002.jpg")
    r = CelebAReader(root, split="train", image_size=128)
    s = r[0]
    assert s.image.shape == (3, 128, 128)
    k = 128 / 218
    exp = (np.array(PTS["000001.jpg"], float).reshape(5, 2) + 0.5) * k + [(128 - 178 * k) / 2, 0]
    np.testing.assert_allclose(s.lm5.numpy(), exp, atol=1e-4)
    with pytest.raises(DataError) as e:
        r[1]
    assert "list_landmarks_align_celeba.txt" in str(e.value) and "expected 10" in str(e.value)
    lax = CelebAReader(root, split="train", strict=False)
    assert lax[1].sample_id == "celeba/000003" and lax.skipped == {"unreadable_annotation": 1}


def test_missing_and_malformed_lists(tmp_path, writers):
    root = _write(tmp_path, writers)
    (root / "list_eval_partition.txt").unlink()
    assert len(CelebAReader(root, split="all")) == 6  # 'all' needs no partition file
    with pytest.raises(MissingFileError) as e:
        CelebAReader(root, split="train")
    assert "list_eval_partition.txt" in str(e.value) and "mmlab.ie.cuhk.edu.hk" in str(e.value)
    lm = root / "list_landmarks_align_celeba.txt"
    lm.write_text("\n".join(lm.read_text().splitlines()[1:]))  # header count line removed
    with pytest.raises(DataError, match="number of images"):
        CelebAReader(root, split="all")
    (root / "img_align_celeba" / "000001.jpg").unlink()
    lm.unlink()
    with pytest.raises(MissingFileError, match="list_landmarks_align_celeba.txt"):
        CelebAReader(root, split="all")
