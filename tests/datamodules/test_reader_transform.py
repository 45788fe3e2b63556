"""ReaderDataModule's ``transform``: applied to every sample of every split after reading (the
hook the photo-folder training config uses for PhotoAlignCrop)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from benchmark3dface.data.datamodules import ReaderDataModule
from benchmark3dface.data.readers.errors import DataError


class _CentreCrop:
    """Crops the central 16x16 pixels and tags the sample; refuses images named bad_*."""

    def __call__(self, sample):
        if "bad_" in sample.meta["path"]:
            raise DataError(sample.meta["path"], "refused by the transform", "no_face")
        h, w = sample.image.shape[-2:]
        sample.image = sample.image[:, h // 2 - 8:h // 2 + 8, w // 2 - 8:w // 2 + 8]
        sample.meta["transformed"] = True
        return sample


def _folder(root, names):
    rng = np.random.default_rng(0)
    for n in names:
        Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(root / n)
    return root


def test_transform_runs_on_every_sample(tmp_path):
    root = _folder(tmp_path, [f"ok_{i}.png" for i in range(4)])
    dm = ReaderDataModule("image_folder", str(root), image_size=None, train_split="all", test_split="all",
                          transform=_CentreCrop(), batch_size=2)
    dm.setup("fit")
    for loader in (dm.train_dataloader(), dm.test_dataloader()):
        batches = list(loader)
        assert sum(len(b) for b in batches) == 4
        for b in batches:
            assert b.image.shape == (2, 3, 16, 16)
            assert all(m["transformed"] for m in b.meta)
    # the crop is the photo's own centre: compare one sample with the file read directly
    first = dm.datasets["test"][0]
    raw = torch.from_numpy(np.array(Image.open(root / "ok_0.png"))).permute(2, 0, 1).float() / 255
    assert torch.allclose(first.image, raw[:, 12:28, 7:23], atol=1e-6)


def test_transform_errors_are_skipped_and_counted_when_not_strict(tmp_path):
    root = _folder(tmp_path, ["ok_0.png", "ok_1.png", "bad_0.png"])
    dm = ReaderDataModule("image_folder", str(root), image_size=None, train_split="all", test_split=None,
                          transform=_CentreCrop(), strict=False, skip="none", batch_size=3)
    dm.setup("fit")
    (batch,) = list(dm.train_dataloader())
    assert len(batch) == 2
    assert [r for _, r in batch.skipped] == ["no_face"]
