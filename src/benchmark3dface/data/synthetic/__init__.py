"""The synthetic face engine: the embedded default dataset.

Random faces from any :class:`~benchmark3dface.facemodel.MorphableModel` (the embedded
procedural model by default) with full ground truth, in four modes matching the seed methods:
``single`` (Deng-aligned crops), ``set`` (one identity, varied images: Deng's C-Net, Gao),
``multiview`` (left/front/right triplets: DF-MVR) and ``multiface`` (1-10 faces under one
global camera: WM3DR); weak-perspective grayscale crops for Richardson's CoarseNet and a
labelled/unlabelled flag for Gao's semi-supervised training. See datasets/synthetic.md.

    ds = SyntheticFaceDataset({"mode": "single", "image_size": 128}, split="train", size=10000)
    sample = ds[0]                       # a Sample, bit-identical on every run and machine
    write_shards("out/train", {"mode": "set"}, split="train", num_samples=1000, workers=2)
    ShardDataset("out/train")[0]         # the same Sample, read back from disk
"""

import importlib
from typing import Any

#: public name -> submodule defining it (imported on first use, so that importing
#: ``benchmark3dface.data.synthetic.config`` for ``b3f --help`` does not pull in torch).
_EXPORTS = {
    "BACKGROUNDS": "config", "MODES": "config", "OCCLUDERS": "config", "PRESETS": "config",
    "PROJECTIONS": "config", "SynthConfig": "config",
    "SyntheticFaceDataset": "dataset", "resolve_facemodel": "dataset",
    "SyntheticEngine": "engine", "single_thread": "engine",
    "IDENTITY_OFFSETS": "seeding", "SPLITS": "seeding", "derive_seed": "seeding",
    "identity_id": "seeding", "sample_rng": "seeding", "split_of_identity": "seeding",
    "ShardDataset": "shards", "read_manifest": "shards", "record_to_sample": "shards",
    "sample_to_record": "shards", "write_shards": "shards",
    "tiny_facemodel": "testing",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BACKGROUNDS", "IDENTITY_OFFSETS", "MODES", "OCCLUDERS", "PRESETS", "PROJECTIONS", "SPLITS",
    "ShardDataset", "SynthConfig", "SyntheticEngine", "SyntheticFaceDataset", "derive_seed",
    "identity_id", "read_manifest", "record_to_sample", "resolve_facemodel", "sample_rng",
    "sample_to_record", "single_thread", "split_of_identity", "tiny_facemodel", "write_shards",
]
