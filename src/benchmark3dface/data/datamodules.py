"""Lightning data modules: the synthetic engine (every mode) and every real-dataset reader.

Both take plain constructor arguments, so LightningCLI / jsonargparse build them from YAML::

    data:
      class_path: benchmark3dface.data.datamodules.SyntheticDataModule
      init_args: {mode: set, image_size: 128, train_size: 20000, batch_size: 8, num_workers: 2,
                  options: {set_size: 5, occlusion_prob: 0.4}}

Batches are :class:`SampleBatch` records (a :class:`~benchmark3dface.data.sample.Sample`
whose fields are batched by :func:`~benchmark3dface.data.collate.collate_samples`: sets and
multi-view triplets stack to ``(B, V, ...)``, multi-face per-face fields stay lists of
``(F_i, ...)``), plus the list of samples skipped while building the batch. ``SampleBatch``
knows how to pin its memory, so ``pin_memory=True`` works with the custom record.

Train loaders are :class:`~benchmark3dface.training.resumable.ResumableDataLoader`s: the
order of epoch ``e`` depends only on ``(seed, e)``, it is sharded over DDP ranks, and the
position is saved in checkpoints, so a resumed run (also mid-epoch) reads exactly the samples
the interrupted one had not read yet (docs/training.md).

Skipped samples (non-strict readers): a reader returns ``None`` (``skip="none"``) or the next
readable sample tagged with ``meta["skipped"]`` (``skip="next"``); the collate wrapper drops the
``None`` and records the requested sample that could not be read in ``batch.skipped`` as a
``(path, reason)`` pair, whichever the skip mode (this travels
from DataLoader worker processes with the batch). The data module adds them up per stage and
:class:`SkippedSamplesReport` (attached automatically when a trainer is present) reports how
many samples each epoch skipped and why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .collate import collate_samples
from .sample import Sample

_LIST_FIELDS = ("sample_id", "camera", "meta")


# ============================================================================ batches
@dataclass
class SampleBatch(Sample):
    """A batched :class:`Sample` plus ``skipped``: ``(path, reason)`` of the samples skipped
    (dropped or replaced) while this batch was built."""

    skipped: list[tuple[str, str]] = field(default_factory=list)

    def pin_memory(self) -> "SampleBatch":
        """Pin every tensor (also inside lists and dicts); used by ``DataLoader(pin_memory=True)``."""
        for f in fields(self):
            setattr(self, f.name, _pin(getattr(self, f.name)))
        return self

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "SampleBatch":
        """Move every tensor (also inside lists and dicts) to ``device``; other values (e.g. a
        frozen transform record in ``meta``) are kept as they are."""
        return SampleBatch(**{f.name: _move(getattr(self, f.name), device, non_blocking) for f in fields(self)})

    def __len__(self) -> int:
        return len(self.sample_id) if isinstance(self.sample_id, list) else 1


def _pin(x: Any) -> Any:
    if isinstance(x, Tensor):
        return x.pin_memory()
    if isinstance(x, list):
        return [_pin(v) for v in x]
    if isinstance(x, dict):
        return {k: _pin(v) for k, v in x.items()}
    return x


def _move(x: Any, device: torch.device | str, non_blocking: bool) -> Any:
    if isinstance(x, Tensor):
        return x.to(device, non_blocking=non_blocking)
    if isinstance(x, list):
        return [_move(v, device, non_blocking) for v in x]
    if isinstance(x, dict):
        return {k: _move(v, device, non_blocking) for k, v in x.items()}
    return x


@dataclass(frozen=True)
class Skipped:
    """Marker a wrapped dataset returns for a sample it could not read."""

    index: int
    records: tuple[tuple[str, str], ...]


def _fill_value(t: Tensor) -> Any:
    if t.is_floating_point():
        return float("nan")
    if t.dtype == torch.bool:
        return False
    return -1


def fill_partial(batch: Sample) -> Sample:
    """Stack fields that some samples lack (a list holding ``None``) when the present values
    are tensors of one shape and dtype: missing entries are filled with NaN (float), False
    (bool) or -1 (integer). Python bools (e.g. ``occluded``) become a bool tensor (False).
    Semi-supervised batches thus get e.g. ``coeffs (B, C)`` with NaN rows for unlabelled
    samples; select with ``batch.labelled``."""
    for f in fields(Sample):
        v = getattr(batch, f.name)
        if f.name in _LIST_FIELDS or not isinstance(v, list) or all(x is not None for x in v):
            continue
        present = [x for x in v if x is not None]
        if not present:
            setattr(batch, f.name, None)
            continue
        first = present[0]
        if isinstance(first, bool) and all(isinstance(x, bool) for x in present):
            setattr(batch, f.name, torch.tensor([bool(x) if x is not None else False for x in v]))
        elif isinstance(first, Tensor) and all(isinstance(x, Tensor) and x.shape == first.shape
                                               and x.dtype == first.dtype for x in present):
            filler = torch.full_like(first, _fill_value(first))
            setattr(batch, f.name, torch.stack([x if x is not None else filler for x in v]))
    return batch


class SampleCollate:
    """``collate_fn`` for DataLoaders of ``Sample``: drops ``None`` / :class:`Skipped` items,
    collects skip records, batches with :func:`collate_samples` and (``fill_missing``) stacks
    partially missing fields with :func:`fill_partial`. Returns a :class:`SampleBatch`."""

    def __init__(self, fill_missing: bool = True) -> None:
        self.fill_missing = fill_missing

    def __call__(self, items: list[Sample | Skipped | None]) -> SampleBatch:
        skipped: list[tuple[str, str]] = []
        kept: list[Sample] = []
        for it in items:
            if it is None:
                skipped.append(("", "unknown"))
            elif isinstance(it, Skipped):
                skipped.extend(it.records)
            else:
                kept.append(it)
                passed = it.meta.get("skipped") if isinstance(it.meta, dict) else None
                if passed:  # skip="next": the first record is the requested sample itself
                    skipped.append((str(passed[0][0]), str(passed[0][1])))
        if not kept:  # every sample of the batch was bad: an empty batch (len 0)
            return SampleBatch(sample_id=[], camera=[], meta=[], skipped=skipped)
        batch = collate_samples(kept)
        if self.fill_missing:
            batch = fill_partial(batch)
        return SampleBatch(**{f.name: getattr(batch, f.name) for f in fields(Sample)}, skipped=skipped)


class SkipTracked(Dataset):
    """Wraps a non-strict reader: a ``None`` item becomes a :class:`Skipped` marker carrying the
    reasons the reader recorded for it (from the change of ``reader.skipped``)."""

    def __init__(self, reader: Dataset) -> None:
        self.reader = reader

    def __len__(self) -> int:
        return len(self.reader)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        # "__getitems__" is not forwarded: DataLoader would call the reader's batch fetch and
        # bypass the skip tracking of __getitem__
        if name in ("reader", "__getitems__"):
            raise AttributeError(name)
        return getattr(self.reader, name)

    def __getitem__(self, index: int) -> Sample | Skipped:
        before = Counter(getattr(self.reader, "skipped", {}) or {})
        item = self.reader[index]
        if item is not None:
            return item
        after = Counter(getattr(self.reader, "skipped", {}) or {})
        reasons = list((after - before).elements()) or ["unknown"]
        path = ""
        files = getattr(self.reader, "skipped_files", None)
        if files and len(reasons) == 1 and reasons[0] != "unknown":
            path = str(files[-1][0]) if isinstance(files, list) else ""
        return Skipped(int(index), tuple((path, r) for r in reasons))


# ============================================================================ reporting
class SkippedSamplesReport(Callback):
    """Reports, at the end of every train/val/test/predict epoch, how many samples the data
    module skipped in that epoch and why (log line + ``data/skipped_<stage>`` metric).

    ``history`` keeps ``(stage, epoch, count, {reason: count})`` for every report.
    """

    def __init__(self, log_metric: bool = True) -> None:
        self.log_metric = log_metric
        self.history: list[tuple[str, int, int, dict[str, int]]] = []

    def _report(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        dm = getattr(trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "pop_skipped"):
            return
        counts = dm.pop_skipped(stage)
        n = sum(counts.values())
        self.history.append((stage, int(trainer.current_epoch), n, dict(counts)))
        if n:
            reasons = ", ".join(f"{r}: {c}" for r, c in counts.most_common())
            rank_zero_warn(f"{stage} epoch {trainer.current_epoch}: skipped {n} unreadable "
                           f"sample(s) ({reasons})")
        if self.log_metric and stage in ("train", "val", "test"):
            try:
                pl_module.log(f"data/skipped_{stage}", float(n), on_epoch=True, sync_dist=False)
            except Exception:  # logging not possible in this hook/context: the warning suffices
                pass

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._report(trainer, pl_module, "train")

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._report(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._report(trainer, pl_module, "test")

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        self._report(trainer, pl_module, "predict")


# ============================================================================ data modules
class _SampleDataModule(L.LightningDataModule):
    """Loader plumbing shared by the data modules (workers, pinned memory, collate, skips)."""

    def __init__(self, batch_size: int, num_workers: int, pin_memory: bool, persistent_workers: bool,
                 fill_missing: bool, drop_last: bool, shuffle_seed: int) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.persistent_workers = bool(persistent_workers) and self.num_workers > 0
        self.collate = SampleCollate(fill_missing)
        self.drop_last = bool(drop_last)
        self.shuffle_seed = int(shuffle_seed)
        self.datasets: dict[str, Dataset] = {}
        self._skips: dict[str, Counter] = {}
        self._setup_done = False

    # ---------------------------------------------------------------- loaders
    def _loader(self, split: str, shuffle: bool) -> DataLoader | list:
        if split not in self.datasets:
            if split != "train" and self._setup_done:
                return []  # no such split configured: Lightning runs no loop for it
            raise RuntimeError(f"{type(self).__name__}: no {split!r} dataset (size 0, no split "
                               f"configured, or setup() not called)")
        knobs = {"batch_size": self.batch_size, "num_workers": self.num_workers, "pin_memory": self.pin_memory,
                 "persistent_workers": self.persistent_workers, "collate_fn": self.collate}
        if shuffle:  # exactly resumable order, sharded over DDP ranks (training/resumable.py)
            from ..training.resumable import resumable_loader

            return resumable_loader(self.datasets[split], seed=self.shuffle_seed, drop_last=self.drop_last, **knobs)
        return DataLoader(self.datasets[split], shuffle=False, **knobs)

    def train_dataloader(self) -> DataLoader | list:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader | list:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader | list:
        return self._loader("test", shuffle=False)

    # ---------------------------------------------------------------- skip accounting
    def _stage(self) -> str:
        tr = getattr(self, "trainer", None)
        if tr is None:
            return "unattached"
        if tr.training:
            return "train"
        if tr.validating or tr.sanity_checking:
            return "val"
        if tr.testing:
            return "test"
        if tr.predicting:
            return "predict"
        return "unattached"

    def record_skipped(self, stage: str, records: list[tuple[str, str]]) -> None:
        if records:
            self._skips.setdefault(stage, Counter()).update(r for _, r in records)

    def pop_skipped(self, stage: str) -> Counter:
        """``Counter(reason -> count)`` of the samples skipped in ``stage`` since the last pop."""
        return self._skips.pop(stage, Counter())

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        if isinstance(batch, SampleBatch):
            return batch.to(device, non_blocking=self.pin_memory)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, SampleBatch) and batch.skipped:
            self.record_skipped(self._stage(), batch.skipped)
        return batch

    def _attach_report(self) -> None:
        tr = getattr(self, "trainer", None)
        if tr is not None and not any(isinstance(c, SkippedSamplesReport) for c in tr.callbacks):
            tr.callbacks.append(SkippedSamplesReport())


def _resolve_shard_root(shards: str | Path, split: str) -> Path | None:
    root = Path(shards)
    if (root / split / "manifest.json").is_file():
        return root / split
    if (root / "manifest.json").is_file():
        import json

        if json.loads((root / "manifest.json").read_text()).get("split") == split:
            return root
    return None


class SyntheticDataModule(_SampleDataModule):
    """The synthetic engine as a data module (on the fly, or read back from shards).

    Args:
        mode: ``single`` | ``set`` | ``multiview`` | ``multiface``.
        image_size: square image side (default 224; 512 for multiface).
        train_size / val_size / test_size: samples per split (0 = no loader); identities of
            the three splits are disjoint.
        seed: dataset seed (also seeds the train shuffling).
        batch_size, num_workers, pin_memory, persistent_workers, drop_last: DataLoader knobs.
        facemodel / facemodel_path: ``load_facemodel`` source (default the embedded procedural
            model) or a ``MorphableModel`` instance.
        shards: folder written by ``b3f synth`` (``<shards>/<split>/manifest.json``, or one
            split's folder); splits found there are read from disk instead of generated.
        options: any other :class:`~benchmark3dface.data.synthetic.SynthConfig` field
            (``preset`` allowed), e.g. ``{set_size: 5, projection: weak_perspective}``.
        fill_missing: stack partially missing fields with NaN/False/-1 fill (semi-supervised).
    """

    def __init__(self, mode: str = "single", image_size: int | None = None, train_size: int = 10000,
                 val_size: int = 500, test_size: int = 500, seed: int = 0, batch_size: int = 16,
                 num_workers: int = 0, pin_memory: bool = False, persistent_workers: bool = False,
                 facemodel: Any = "procedural", facemodel_path: str | None = None,
                 shards: str | None = None, options: dict[str, Any] | None = None,
                 fill_missing: bool = True, drop_last: bool = True) -> None:
        super().__init__(batch_size, num_workers, pin_memory, persistent_workers, fill_missing,
                         drop_last, seed)
        from .synthetic.config import SynthConfig

        opts = dict(options or {})
        for key in ("mode", "image_size"):
            if key in opts:
                raise ValueError(f"give {key!r} as a SyntheticDataModule argument, not in options")
        self.config = SynthConfig.from_dict(opts, mode=mode, image_size=image_size)
        self.sizes = {"train": int(train_size), "val": int(val_size), "test": int(test_size)}
        for split, n in self.sizes.items():
            if n < 0:
                raise ValueError(f"{split}_size must be >= 0, got {n}")
        self.seed = int(seed)
        self.facemodel_source = facemodel
        self.facemodel_path = facemodel_path
        self.shards = shards
        self._model = None

    @property
    def kind(self) -> str:
        """The ``Sample.kind`` this module produces (matches ``MethodSpec.input_kind``)."""
        return self.config.mode

    @property
    def provides(self) -> tuple[str, ...]:
        """Annotations of the samples (names of ``methods.spec.ANNOTATIONS``)."""
        out = ["lm68", "lm5", "parse", "skin_mask", "identity", "coeffs", "vertices", "depth"]
        if self.config.labelled_fraction < 1.0:
            out.append("labelled")
        if self.config.mode == "multiface":
            out.append("centers")
        return tuple(out)

    @property
    def facemodel(self):
        """The :class:`MorphableModel` the samples were rendered from (loaded on first use)."""
        if self._model is None:
            from .synthetic.dataset import resolve_facemodel

            self._model = resolve_facemodel(self.facemodel_source, self.facemodel_path)
        return self._model

    def setup(self, stage: str | None = None) -> None:
        from .synthetic.dataset import SyntheticFaceDataset
        from .synthetic.shards import ShardDataset

        for split, n in self.sizes.items():
            if split in self.datasets:
                continue
            root = _resolve_shard_root(self.shards, split) if self.shards else None
            if root is not None:
                model = self.facemodel_source if not isinstance(self.facemodel_source, str) else None
                ds = ShardDataset(root, facemodel=model, facemodel_path=self.facemodel_path)
                if ds.kind != self.config.mode:
                    raise ValueError(f"{root}: shards hold {ds.kind!r} samples but mode={self.config.mode!r}")
                self.datasets[split] = ds
            elif n > 0:
                self.datasets[split] = SyntheticFaceDataset(self.config, split, n, self.seed,
                                                            self.facemodel, self.facemodel_path)
        self._setup_done = True


class ReaderDataModule(_SampleDataModule):
    """A real dataset (``benchmark3dface.data.readers``) as a data module.

    Args:
        reader: reader name (``aflw2000``, ``300w_lp``, ``micc``, ``celeba``, ``now``,
            ``image_folder``, or one registered by a plugin).
        root: the dataset folder.
        image_size: resize to a square (None keeps native size; see the reader).
        train_split / val_split / test_split: the reader's split names for each stage
            (None = no loader; ``test_split="auto"`` = ``test`` if the reader has it, else
            ``all``, else its first split).
        strict: raise on a bad sample (True) or skip it and report (False).
        skip: non-strict behaviour: ``next`` (return the next readable sample) or ``none``
            (drop it from the batch).
        reader_options: extra keyword arguments of the reader class.
        transform: optional ``Sample -> Sample`` callable applied to every sample after reading
            (a config gives it as ``class_path`` / ``init_args``), e.g. the photo preprocessing
            :class:`~benchmark3dface.data.preprocess.photo_crop.PhotoAlignCrop` (detect, align
            with the 5 points, 68 detected landmarks; experiments/photos/deep3d_dlib.yaml).
        batch_size, num_workers, pin_memory, persistent_workers, drop_last, fill_missing,
        shuffle_seed: DataLoader knobs.
    """

    def __init__(self, reader: str, root: str, image_size: int | None = 224,
                 train_split: str | None = None, val_split: str | None = None,
                 test_split: str | None = "auto", strict: bool = True, skip: str = "next",
                 reader_options: dict[str, Any] | None = None,
                 transform: Callable[[Sample], Sample] | None = None, batch_size: int = 16,
                 num_workers: int = 0, pin_memory: bool = False, persistent_workers: bool = False,
                 fill_missing: bool = True, drop_last: bool = False, shuffle_seed: int = 0) -> None:
        super().__init__(batch_size, num_workers, pin_memory, persistent_workers, fill_missing,
                         drop_last, shuffle_seed)
        from .readers import get_reader

        self.reader_cls = get_reader(reader)
        self.reader_name = reader
        self.root = root
        self.image_size = image_size
        splits = tuple(getattr(self.reader_cls, "splits", ("all",)))
        if test_split == "auto":
            test_split = "test" if "test" in splits else ("all" if "all" in splits else splits[0])
        self.splits = {"train": train_split, "val": val_split, "test": test_split}
        for stage, name in self.splits.items():
            if name is not None and name not in splits:
                raise ValueError(f"reader {reader!r} has no split {name!r} (for {stage}); "
                                 f"its splits are {splits}")
        if skip not in ("next", "none"):
            raise ValueError(f"skip must be 'next' or 'none', got {skip!r}")
        self.strict = bool(strict)
        self.skip = skip
        self.reader_options = dict(reader_options or {})
        self.transform = transform

    @property
    def kind(self) -> str:
        return str(getattr(self.reader_cls, "kind", "single"))

    def setup(self, stage: str | None = None) -> None:
        for split_stage, name in self.splits.items():
            if name is None or split_stage in self.datasets:
                continue
            opts = dict(self.reader_options)
            if self.transform is not None:
                opts["transform"] = self.transform
            ds = self.reader_cls(self.root, split=name, image_size=self.image_size,
                                 strict=self.strict, skip=self.skip, **opts)
            self.datasets[split_stage] = ds if self.strict else SkipTracked(ds)
        self._setup_done = True
        if not self.strict:
            self._attach_report()


__all__ = ["ReaderDataModule", "SampleBatch", "SampleCollate", "SkipTracked", "Skipped",
           "SkippedSamplesReport", "SyntheticDataModule", "fill_partial"]

