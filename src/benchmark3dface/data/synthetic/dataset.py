"""Map-style datasets of synthetic samples, generated on the fly (DataLoader workers welcome)."""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from ...facemodel.model import MorphableModel
from ..sample import Sample
from .config import SynthConfig
from .engine import SyntheticEngine
from .seeding import check_split


def resolve_facemodel(facemodel: MorphableModel | str | None = "procedural",
                      path: str | None = None) -> MorphableModel:
    """A :class:`MorphableModel` instance from an instance or a ``load_facemodel`` source name."""
    if isinstance(facemodel, MorphableModel):
        return facemodel
    from ...facemodel import load_facemodel

    return load_facemodel(facemodel or "procedural", path)


class SyntheticFaceDataset(Dataset):
    """``size`` synthetic samples of ``split``; item ``i`` is a pure function of
    ``(config, facemodel, seed, split, i)``.

    Args:
        config: :class:`SynthConfig` or a dict of its fields (``preset`` allowed).
        split: ``train`` | ``val`` | ``test`` (disjoint identity pools).
        size: number of samples (the dataset is virtual: any size is free).
        seed: dataset seed.
        facemodel: a model instance or a ``load_facemodel`` source (default the embedded
            procedural model); facemodel_path: its files, for file-based sources.
    """

    def __init__(self, config: SynthConfig | dict[str, Any] | None = None, split: str = "train",
                 size: int = 1000, seed: int = 0, facemodel: MorphableModel | str | None = "procedural",
                 facemodel_path: str | None = None) -> None:
        self.config = config if isinstance(config, SynthConfig) else SynthConfig.from_dict(config)
        self.split = check_split(split)
        if int(size) < 0:
            raise ValueError(f"dataset size must be >= 0, got {size}")
        self.size = int(size)
        self.seed = int(seed)
        self.facemodel_source = facemodel if isinstance(facemodel, str) else getattr(facemodel, "name", "custom")
        self.facemodel_path = facemodel_path
        self.model = resolve_facemodel(facemodel, facemodel_path)
        self.engine = SyntheticEngine(self.model, self.config)

    @property
    def kind(self) -> str:
        return self.config.mode

    def __len__(self) -> int:
        return self.size

    def _check(self, index: int) -> int:
        if not -self.size <= index < self.size:
            raise IndexError(f"synthetic {self.split} index {index} out of range for {self.size} samples")
        return int(index) % self.size

    def __getitem__(self, index: int) -> Sample:
        return self.engine.generate(self.split, self._check(index), self.seed)

    def __getitems__(self, indices: list[int]) -> list[Sample]:
        """A whole batch at once (what ``DataLoader`` calls when it batches): the same samples
        as one ``__getitem__`` each, generated with one shared decode (``generate_many``)."""
        return self.engine.generate_many(self.split, [self._check(i) for i in indices], self.seed)
