"""Two-source semi-supervised data (data/semisup.py): labelled fraction, label hiding,
identity offsets, one-line errors for a missing source."""

from __future__ import annotations

import math

import pytest
import torch

from benchmark3dface.data.sample import Sample
from benchmark3dface.data.semisup import SemiSupervisedDataModule, SemiSupervisedDataset, SourceError, build_source


class Listed(torch.utils.data.Dataset):
    def __init__(self, n: int, labelled: bool, identity0: int = 0):
        self.n, self.labelled, self.identity0 = n, labelled, identity0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return Sample(sample_id=f"{'L' if self.labelled else 'U'}{i}", image=torch.zeros(3, 4, 4),
                      identity=self.identity0 + i % 3, vertices=torch.ones(5, 3), labelled=self.labelled)


@pytest.mark.parametrize("f", [0.0, 0.25, 0.5, 1 / 3, 0.9, 1.0])
def test_labelled_fraction_is_exact_over_the_epoch_and_every_window(f):
    ds = SemiSupervisedDataset(Listed(7, True), Listed(11, False), f, length=120)
    flags = [ds.source_index(i)[0] for i in range(len(ds))]
    assert sum(flags) == math.floor(120 * f + 1e-9)
    for start in range(0, 100, 7):  # any 20 consecutive items: round(20 f) +- 1 labelled
        assert abs(sum(flags[start:start + 20]) - 20 * f) <= 1
    labelled_ids = [ds[i].sample_id for i in range(len(ds)) if flags[i]]
    if labelled_ids:  # each source is read in order, wrapping
        assert labelled_ids[:8] == [f"L{j % 7}" for j in range(min(8, len(labelled_ids)))]


def test_unlabelled_items_carry_no_shape_and_offset_identities():
    ds = SemiSupervisedDataset(Listed(4, True), Listed(4, True), 0.5, length=8, identity_offset=100)
    items = [ds[i] for i in range(8)]
    lab = [s for s in items if s.meta["semisup_source"] == "labelled"]
    unl = [s for s in items if s.meta["semisup_source"] == "unlabelled"]
    assert len(lab) == len(unl) == 4
    assert all(s.labelled and s.vertices is not None and s.identity < 100 for s in lab)
    assert all(not s.labelled and s.vertices is None and s.identity >= 100 for s in unl)


def test_fraction_needs_the_matching_source():
    with pytest.raises(SourceError, match="needs an unlabelled source"):
        SemiSupervisedDataset(Listed(3, True), None, 0.5)
    with pytest.raises(ValueError, match=r"labelled_fraction must be in \[0, 1\]"):
        SemiSupervisedDataset(Listed(3, True), Listed(3, False), 1.5)


def test_missing_reader_folder_is_one_line_naming_it(tmp_path):
    missing = tmp_path / "300W_LP"
    with pytest.raises(SourceError) as e:
        build_source({"reader": "300w_lp", "root": str(missing)}, "labelled", "train", None, 64, "single", 0)
    msg = str(e.value)
    assert "\n" not in msg and str(missing) in msg and "labelled" in msg and "300w_lp" in msg
    empty = tmp_path / "photos"
    empty.mkdir()
    with pytest.raises(SourceError) as e:
        build_source({"reader": "image_folder", "root": str(empty)}, "unlabelled", "all", None, 64, "single", 0)
    assert "\n" not in str(e.value) and str(empty) in str(e.value)
    with pytest.raises(SourceError, match="no 'root'"):
        build_source({"reader": "image_folder"}, "unlabelled", "all", None, 64, "single", 0)
    with pytest.raises(SourceError, match="give 'synthetic' or 'reader'"):
        build_source({"folder": "x"}, "unlabelled", "all", None, 64, "single", 0)


def test_synthetic_default_mixes_labelled_sets_and_photos_of_other_people(tiny_model):
    dm = SemiSupervisedDataModule(mode="set", image_size=32, train_size=12, identities=6, batch_size=4,
                                  labelled_fraction=0.5, labelled={"synthetic": {"set_size": 2}},
                                  unlabelled={"synthetic": {"set_size": 2, "identity_seed": 1}}, val_size=2,
                                  facemodel=tiny_model)
    dm.setup("fit")
    ds = dm.datasets["train"]
    items = [ds[i] for i in range(len(ds))]
    lab = [s for s in items if s.labelled]
    unl = [s for s in items if not s.labelled]
    assert len(lab) == len(unl) == 6
    assert all(s.vertices is not None and s.coeffs is not None for s in lab)
    assert all(s.vertices is None and s.coeffs is None and s.lm68 is not None for s in unl)
    assert all(0 <= s.identity < 6 for s in lab) and all(6 <= s.identity < 12 for s in unl)
    batch = next(iter(dm.train_dataloader()))
    assert batch.image.shape == (4, 2, 3, 32, 32) and batch.labelled.dtype == torch.bool
    # unlabelled rows of the stacked shapes are NaN-filled, never a real label
    assert torch.isnan(batch.vertices[~batch.labelled]).all()
    assert torch.isfinite(batch.vertices[batch.labelled]).all()
    assert len(dm.datasets["val"]) == 2 and dm.num_identity_classes == 12
