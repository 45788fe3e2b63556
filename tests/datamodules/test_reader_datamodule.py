"""ReaderDataModule: real readers as data modules, non-strict skip reporting."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from benchmark3dface.data.datamodules import (ReaderDataModule, SampleBatch, SkippedSamplesReport)

readers = pytest.importorskip("benchmark3dface.data.readers")


def _photos(root, good: int = 5, bad: int = 2):
    rng = np.random.default_rng(0)
    for i in range(good):
        Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(root / f"ok_{i}.png")
    for i in range(bad):
        (root / f"bad_{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    return root


class _Count(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen = 0

    def training_step(self, batch, idx):
        assert isinstance(batch, SampleBatch)
        self.seen += len(batch)
        if len(batch) == 0:
            return None
        return (batch.image.mean() - self.w).square()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("skip,workers", [("none", 2), ("next", 0)])
def test_non_strict_reader_reports_skips_per_epoch(tmp_path, skip, workers):
    dm = ReaderDataModule("image_folder", str(_photos(tmp_path)), image_size=32, train_split="all",
                          test_split=None, strict=False, skip=skip, batch_size=3,
                          num_workers=workers)
    model = _Count()
    report = SkippedSamplesReport(log_metric=False)
    trainer = L.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[report])
    with pytest.warns(UserWarning, match="skipped 2 unreadable"):
        trainer.fit(model, datamodule=dm)
    train = [h for h in report.history if h[0] == "train"]
    assert [h[1] for h in train] == [0, 1]
    for _, _, n, reasons in train:
        assert n == 2 and reasons == {"unreadable_image": 2}
    expected = 5 if skip == "none" else 7  # "next" replaces a bad sample by the next good one
    assert model.seen == 2 * expected


def test_report_callback_is_attached_automatically(tmp_path):
    dm = ReaderDataModule("image_folder", str(_photos(tmp_path)), image_size=32, train_split="all",
                          test_split=None, strict=False, skip="none", batch_size=4)
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    with pytest.warns(UserWarning, match="unreadable_image: 2"):
        trainer.fit(_Count(), datamodule=dm)
    assert any(isinstance(c, SkippedSamplesReport) for c in trainer.callbacks)


def test_strict_reader_raises_with_the_file_name(tmp_path):
    from benchmark3dface.data.readers import DataError

    dm = ReaderDataModule("image_folder", str(_photos(tmp_path, good=1, bad=1)), image_size=32,
                          strict=True, batch_size=2)
    dm.setup("test")
    with pytest.raises(DataError, match="bad_0.jpg"):
        next(iter(dm.test_dataloader()))


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="no split"):
        ReaderDataModule("image_folder", str(tmp_path), train_split="train")
    with pytest.raises(KeyError, match="unknown dataset reader"):
        ReaderDataModule("no_such_dataset", str(tmp_path))


def test_aflw2000_sample_batches(shared_data):
    root = shared_data("aflw2000_sample")
    dm = ReaderDataModule("aflw2000", str(root), image_size=64, batch_size=4, num_workers=0)
    assert dm.splits["test"] == "test"
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert batch.image.shape == (4, 3, 64, 64)
    assert batch.lm68.shape == (4, 68, 2) and batch.yaw.shape == (4,)
    assert ((batch.lm68 >= 0) & (batch.lm68 <= 64)).float().mean() > 0.9
