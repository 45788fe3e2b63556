"""Two-source semi-supervised training data (Gao et al.: 300W-LP fitted shapes + CelebA photos):
a *labelled* source (GT shapes) and an *unlabelled* source (photos) in one loader.

:class:`SemiSupervisedDataset` interleaves the two deterministically: item ``i`` is labelled iff
``floor((i + 1) f) > floor(i f)`` (``f`` = ``labelled_fraction``), so any ``n`` consecutive
items hold ``round(n f)`` +- 1 labelled ones and over the epoch exactly that fraction is
labelled; each source is read in order, wrapping around when shorter. The train loader shuffles
the items (resumably), so a batch holds ``f B`` labelled samples on average (binomial).

Identity labels: the unlabelled source's labels are offset by ``identity_offset`` (default: one
past the labelled source's largest label when known), so the two sources' people never share a
label (Gao's recognition loss classifies photos of both).

A source is either the synthetic engine (``{"synthetic": {...SynthConfig fields...}}``, the
default: labelled ``labelled_fraction: 1`` samples and unlabelled ``labelled_fraction: 0``
samples of *other* people, ``identity_seed`` differs) or a reader
(``{"reader": "300w_lp", "root": "...", "split": "train", "options": {...}}``, e.g. 300W-LP
fits + an ``image_folder`` / ``celeba`` photo folder).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from .datamodules import SkipTracked, _SampleDataModule
from .sample import Sample


class SourceError(ValueError):
    """A semi-supervised source that cannot be built (one line naming the source and why)."""


def build_source(spec: dict[str, Any], role: str, split: str, size: int | None, image_size: int | None,
                 mode: str, seed: int, facemodel: Any = "procedural") -> Dataset:
    """One source from its config mapping (see the module docstring)."""
    spec = dict(spec or {})
    if "synthetic" in spec:
        from .synthetic.config import SynthConfig
        from .synthetic.dataset import SyntheticFaceDataset

        opts = dict(spec["synthetic"] or {})
        opts.setdefault("labelled_fraction", 1.0 if role == "labelled" else 0.0)
        cfg = SynthConfig.from_dict(opts, mode=mode, image_size=image_size)
        n = int(spec.get("size", size or 1000))
        return SyntheticFaceDataset(cfg, split, n, seed + (0 if role == "labelled" else 7919), facemodel)
    if "reader" in spec:
        from .readers import get_reader
        from .readers.errors import MissingFileError

        root = spec.get("root")
        if not root:
            raise SourceError(f"semisup {role} source {spec['reader']!r}: no 'root' folder given")
        if not Path(root).exists():
            raise SourceError(f"semisup {role} source {spec['reader']!r}: {root}: folder does not exist")
        try:
            cls = get_reader(spec["reader"])
        except (KeyError, ValueError) as e:
            raise SourceError(f"semisup {role} source: {e}") from None
        strict = bool(spec.get("strict", False))
        try:
            ds = cls(root, split=spec.get("split", getattr(cls, "splits", ("all",))[0]), image_size=image_size,
                     strict=strict, skip=spec.get("skip", "next"), **dict(spec.get("options") or {}))
        except MissingFileError as e:
            raise SourceError(f"semisup {role} source {spec['reader']!r}: {e}") from None
        if len(ds) == 0:
            raise SourceError(f"semisup {role} source {spec['reader']!r}: {root}: 0 samples found")
        return ds if strict else SkipTracked(ds)
    raise SourceError(f"semisup {role} source: give 'synthetic' or 'reader', got keys {sorted(spec)}")


def _is_labelled(i: int, f: float) -> bool:
    return math.floor((i + 1) * f + 1e-9) > math.floor(i * f + 1e-9)


class SemiSupervisedDataset(Dataset):
    """Labelled + unlabelled sources interleaved with ``labelled_fraction`` (module docstring).

    Args:
        labelled, unlabelled: datasets of :class:`Sample`; either may be None when the fraction
            is 1 / 0.
        labelled_fraction: share of labelled items in [0, 1].
        length: items per epoch (default: enough to read the larger source's share once).
        identity_offset: added to the unlabelled samples' identity labels (None: no offset).
    """

    def __init__(self, labelled: Dataset | None, unlabelled: Dataset | None, labelled_fraction: float,
                 length: int | None = None, identity_offset: int | None = None) -> None:
        f = float(labelled_fraction)
        if not 0.0 <= f <= 1.0:
            raise ValueError(f"labelled_fraction must be in [0, 1], got {labelled_fraction}")
        if f > 0 and (labelled is None or len(labelled) == 0):
            raise SourceError(f"semisup: labelled_fraction {f} needs a labelled source with samples")
        if f < 1 and (unlabelled is None or len(unlabelled) == 0):
            raise SourceError(f"semisup: labelled_fraction {f} needs an unlabelled source with samples")
        self.labelled, self.unlabelled, self.fraction = labelled, unlabelled, f
        self.identity_offset = identity_offset
        if length is None:
            need = []
            if f > 0:
                need.append(math.ceil(len(labelled) / f))
            if f < 1:
                need.append(math.ceil(len(unlabelled) / (1 - f)))
            length = max(need)
        self.length = int(length)

    def __len__(self) -> int:
        return self.length

    def source_index(self, index: int) -> tuple[bool, int]:
        """``(labelled?, index in that source)`` of item ``index``."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range [0, {self.length})")
        f = self.fraction
        n_lab_before = math.floor(index * f + 1e-9)
        if _is_labelled(index, f):
            return True, n_lab_before % len(self.labelled)
        return False, (index - n_lab_before) % len(self.unlabelled)

    def __getitem__(self, index: int) -> Sample:
        lab, j = self.source_index(index)
        s = (self.labelled if lab else self.unlabelled)[j]
        if s is None or not isinstance(s, Sample):
            return s  # a skipped-sample marker of a non-strict reader: the collate records it
        s.labelled = bool(lab) and bool(getattr(s, "labelled", True))
        if not lab:
            # the unlabelled source never hands out shape labels, whatever it holds
            for name in ("coeffs", "vertices", "vertices_cam", "depth"):
                setattr(s, name, None)
            if self.identity_offset is not None and s.identity is not None and s.identity >= 0:
                s.identity = int(s.identity) + int(self.identity_offset)
        s.meta = {**(s.meta or {}), "semisup_source": "labelled" if lab else "unlabelled"}
        return s


class SemiSupervisedDataModule(_SampleDataModule):
    """Labelled + unlabelled training sources in one loader; val / test from the labelled
    source's kind of data (synthetic: its ``val`` / ``test`` splits, exact labels).

    Args:
        labelled / unlabelled: source mappings (module docstring); default: the synthetic
            engine (labelled: ``label_noise_std`` as configured; unlabelled: other people).
        labelled_fraction: share of labelled training items.
        mode: synthetic sample kind (``single`` or ``set``: sets of one person's photos, what the
            recognition / centre loss needs); image_size: square side.
        train_size: items per epoch; val_size / test_size: synthetic val/test samples (0 = none).
        identities: identity pool size of each synthetic source (the classifier's classes are
            ``2 * identities``: labelled then unlabelled people).
        facemodel: the synthetic sources' morphable model (name or instance).
    """

    def __init__(self, labelled: dict[str, Any] | None = None, unlabelled: dict[str, Any] | None = None,
                 labelled_fraction: float = 0.5, mode: str = "single", image_size: int | None = None,
                 train_size: int = 10000, val_size: int = 64, test_size: int = 0, identities: int = 500,
                 seed: int = 0, batch_size: int = 16, num_workers: int = 0, pin_memory: bool = False,
                 persistent_workers: bool = False, drop_last: bool = True, facemodel: Any = "procedural") -> None:
        super().__init__(batch_size, num_workers, pin_memory, persistent_workers, True, drop_last, seed)
        self.labelled_spec = dict(labelled) if labelled is not None else {"synthetic": {}}
        self.unlabelled_spec = dict(unlabelled) if unlabelled is not None else {"synthetic": {"identity_seed": 1}}
        for spec in (self.labelled_spec, self.unlabelled_spec):
            if "synthetic" in spec:
                spec["synthetic"] = {"train_identities": int(identities), **dict(spec["synthetic"] or {})}
        self.labelled_fraction = float(labelled_fraction)
        if not 0.0 <= self.labelled_fraction <= 1.0:
            raise ValueError(f"labelled_fraction must be in [0, 1], got {labelled_fraction}")
        self.mode = mode
        self.image_size = image_size
        self.train_size, self.val_size, self.test_size = int(train_size), int(val_size), int(test_size)
        self.identities = int(identities)
        self.seed = int(seed)
        self.facemodel_source = facemodel

    @property
    def kind(self) -> str:
        return self.mode

    @property
    def num_identity_classes(self) -> int:
        """Identity classes over both sources (labelled labels, then the offset unlabelled ones)."""
        return 2 * self.identities

    @property
    def provides(self) -> tuple[str, ...]:
        return ("lm68", "lm5", "identity", "coeffs", "vertices", "labelled")

    def setup(self, stage: str | None = None) -> None:
        if "train" not in self.datasets:
            f = self.labelled_fraction
            lab = (build_source(self.labelled_spec, "labelled", "train", self.train_size, self.image_size,
                                self.mode, self.seed, self.facemodel_source) if f > 0 else None)
            unl = (build_source(self.unlabelled_spec, "unlabelled", "train", self.train_size, self.image_size,
                                self.mode, self.seed, self.facemodel_source) if f < 1 else None)
            self.datasets["train"] = SemiSupervisedDataset(lab, unl, f, self.train_size, self.identities)
        if "synthetic" in self.labelled_spec:
            from .synthetic.config import SynthConfig
            from .synthetic.dataset import SyntheticFaceDataset

            opts = {k: v for k, v in self.labelled_spec["synthetic"].items() if k != "label_noise_std"}
            cfg = SynthConfig.from_dict(opts, mode=self.mode, image_size=self.image_size)
            for split, n in (("val", self.val_size), ("test", self.test_size)):
                if n > 0 and split not in self.datasets:
                    self.datasets[split] = SyntheticFaceDataset(cfg, split, n, self.seed, self.facemodel_source)
        self._setup_done = True


__all__ = ["SemiSupervisedDataModule", "SemiSupervisedDataset", "SourceError", "build_source"]
