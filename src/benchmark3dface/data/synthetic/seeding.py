"""Deterministic seeds for the synthetic engine.

Every random quantity of a sample is drawn from a ``numpy.random.Generator`` (PCG64) seeded by a
64-bit hash of ``(namespace, seed, split, index)`` (BLAKE2b), so a sample depends only on those
values: not on the order samples are drawn in, on DataLoader workers or on torch threads.
Identities work the same way from ``(identity_seed, identity id)``.

Identity ids are disjoint across splits by construction: split ``s`` owns the ids
``IDENTITY_OFFSETS[s] + k`` for ``k < number of identities of the split``; train ids start at 0
so they can be used directly as class labels.
"""

from __future__ import annotations

import hashlib

import numpy as np

SPLITS = ("train", "val", "test")
#: first identity id of each split (ids of different splits never collide).
IDENTITY_OFFSETS = {"train": 0, "val": 1_000_000, "test": 2_000_000}
_OFFSET_STEP = 1_000_000


def derive_seed(*parts: object) -> int:
    """A 64-bit integer from the ``repr`` of ``parts`` (BLAKE2b, platform independent)."""
    text = "\x1f".join(repr(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


def rng_for(*parts: object) -> np.random.Generator:
    """A PCG64 generator seeded by :func:`derive_seed` of ``parts``."""
    return np.random.Generator(np.random.PCG64(derive_seed(*parts)))


def sample_rng(seed: int, split: str, index: int, stream: str = "sample") -> np.random.Generator:
    """The generator of sample ``index`` of ``split`` (``stream`` separates independent uses)."""
    return rng_for("b3f-synth", stream, int(seed), str(split), int(index))


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; synthetic splits are {SPLITS}")
    return split


def identity_id(split: str, local_index: int) -> int:
    """Global identity id of the ``local_index``-th identity of ``split``."""
    check_split(split)
    if not 0 <= int(local_index) < _OFFSET_STEP:
        raise ValueError(f"identity index {local_index} outside [0, {_OFFSET_STEP})")
    return IDENTITY_OFFSETS[split] + int(local_index)


def split_of_identity(identity: int) -> str:
    """Inverse of :func:`identity_id`: the split that owns ``identity``."""
    k = int(identity) // _OFFSET_STEP
    if not 0 <= k < len(SPLITS):
        raise ValueError(f"identity id {identity} belongs to no split")
    return SPLITS[k]
