"""Base class of the dataset readers: indexing, strict / non-strict error handling, resizing.

A reader is a ``torch.utils.data.Dataset`` of :class:`~benchmark3dface.data.sample.Sample`
records at the image's native resolution (or resized, see ``image_size``). Subclasses set
their own attributes, call ``super().__init__(...)`` (which checks the root and calls
:meth:`_index`), and implement :meth:`_load`.

Error policy:

- Construction errors (missing root, missing split list / index file, unknown split) always
  raise: they mean the dataset is not there.
- Per-sample errors raise :class:`DataError` from ``__getitem__`` when ``strict=True``
  (default). With ``strict=False`` the bad sample is recorded (``reader.skipped`` ->
  ``{reason: count}``, ``reader.skipped_files`` -> ``[(path, reason, message)]``) and
  ``__getitem__`` returns the next readable sample (``skip="next"``, default, wrapping around)
  or ``None`` (``skip="none"``, for a collate function that drops ``None``). The samples
  returned after skipping carry ``meta["skipped"] = [(path, reason), ...]`` so that a data
  module can aggregate skips made inside DataLoader worker processes (whose counters are
  separate copies).
- Nothing is skipped silently: every newly skipped sample is logged once as a one-line warning
  (logger ``benchmark3dface.data``: ``"<reader>: skipped sample i of N: <file>: <problem>"``),
  and :meth:`FaceDatasetReader.skip_report` sums them up as
  ``"k of N samples skipped: <file>: <problem>; ..."``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..preprocess.transform import ScaleTranslation, warp_scale_translation
from ..sample import Sample
from .errors import DataError, MissingFileError

_log = logging.getLogger("benchmark3dface.data")

_POINT_FIELDS = ("lm68", "lm5", "centers")
_MASK_FIELDS = ("parse", "skin_mask", "face_mask", "occlusion_mask", "depth")


def _warp_stack(x: Tensor, tr: ScaleTranslation, size: int, resample: str) -> Tensor:
    """Warp ``(..., C, H, W)`` or ``(..., H, W)`` maps with the same transform."""
    if x.ndim == 2:
        return _warp_stack(x[None], tr, size, resample)[0]
    lead = x.shape[:-3]
    flat = x.reshape(-1, *x.shape[-3:])
    out = torch.stack([warp_scale_translation(f, tr, (size, size), resample) for f in flat])
    return out.reshape(*lead, *out.shape[-3:])


def resize_sample(sample: Sample, size: int) -> Sample:
    """Resize a sample's image(s) to ``size x size`` keeping the aspect ratio: the image is
    scaled by ``size / max(H, W)`` and centred, the rest padded with black. Landmarks, centres,
    masks and ``lm68_3d`` (x, y mapped, depth scaled) follow; the transform from the original
    pixels is composed into ``meta["image_transform"]`` (:class:`ScaleTranslation`)."""
    if sample.image is None:
        return sample
    h, w = sample.image.shape[-2:]
    s = size / max(h, w)
    tr = ScaleTranslation(s, ((size - s * w) / 2.0, (size - s * h) / 2.0))
    img = sample.image
    flat = img.reshape(-1, *img.shape[-3:])
    out = torch.stack([warp_scale_translation(f, tr, (size, size), "bicubic") for f in flat])
    sample.image = out.reshape(*img.shape[:-3], *out.shape[-3:]).clamp_(0.0, 1.0)
    for name in _POINT_FIELDS:
        v = getattr(sample, name)
        if v is not None:
            setattr(sample, name, tr.apply(v))
    if sample.lm68_3d is not None:
        v = sample.lm68_3d.clone()
        v[..., :2] = tr.apply(v[..., :2])
        v[..., 2] = v[..., 2] * s
        sample.lm68_3d = v
    for name in _MASK_FIELDS:
        v = getattr(sample, name)
        if v is not None:
            dtype = v.dtype
            mode = "bilinear" if name == "skin_mask" else "nearest"
            setattr(sample, name, _warp_stack(v.float(), tr, size, mode).to(dtype))
    prev = sample.meta.get("image_transform", ScaleTranslation.identity())
    sample.meta["image_transform"] = prev.then(tr)
    sample.meta.setdefault("orig_size", (int(h), int(w)))
    return sample


class FaceDatasetReader(Dataset):
    """Common behaviour of all readers; see the module docstring for the error policy.

    Args:
        root: dataset folder.
        split: one of the reader's ``splits``.
        image_size: ``None`` keeps native resolution; an int resizes to a square
            (:func:`resize_sample`).
        strict: raise on a bad sample (True) or skip it (False).
        transform: optional callable ``Sample -> Sample`` applied last (e.g. the
            preprocessing ``AlignCrop``); a :class:`DataError` it raises is handled like a
            reader error.
        skip: ``"next"`` or ``"none"``, what a non-strict reader returns for a bad sample.
    """

    name: ClassVar[str] = ""
    splits: ClassVar[tuple[str, ...]] = ("all",)
    #: What the dataset is and where it comes from (used in missing-file errors).
    source_hint: ClassVar[str] = ""

    def __init__(self, root: str | Path, split: str = "all", image_size: int | None = None,
                 strict: bool = True, transform: Callable[[Sample], Sample] | None = None,
                 skip: str = "next") -> None:
        self.root = Path(root).expanduser()
        if split not in self.splits:
            raise ValueError(f"{self.name}: unknown split {split!r}; choose one of {self.splits}")
        if skip not in ("next", "none"):
            raise ValueError(f"skip must be 'next' or 'none', got {skip!r}")
        if image_size is not None and int(image_size) <= 0:
            raise ValueError(f"image_size must be a positive int or None, got {image_size!r}")
        self.split = split
        self.image_size = None if image_size is None else int(image_size)
        self.strict = bool(strict)
        self.transform = transform
        self.skip = skip
        self._bad: dict[int, tuple[str, str, str]] = {}
        if not self.root.is_dir():
            raise MissingFileError(self.root, f"{self.name} dataset folder not found",
                                   hint=self.source_hint)
        self.items: list[Any] = self._index()

    # ---------------------------------------------------------------- subclass interface
    def _index(self) -> list[Any]:
        """List the split's samples (cheap records: paths, parsed list entries)."""
        raise NotImplementedError

    def _load(self, item: Any, index: int) -> Sample:
        """Read one sample at native resolution; raise :class:`DataError` on bad input."""
        raise NotImplementedError

    def missing(self, path: Path, what: str) -> MissingFileError:
        """A missing-file error naming the file, what it is, and where the dataset comes from."""
        return MissingFileError(path, f"{what} not found", hint=self.source_hint)

    # ---------------------------------------------------------------- dataset protocol
    def __len__(self) -> int:
        return len(self.items)

    def _read(self, index: int) -> Sample:
        sample = self._load(self.items[index], index)
        sample.meta.setdefault("dataset", self.name)
        sample.meta.setdefault("split", self.split)
        sample.meta.setdefault("index", index)
        if self.image_size is not None:
            sample = resize_sample(sample, self.image_size)
        if self.transform is not None:
            sample = self.transform(sample)
        return sample

    def __getitem__(self, index: int) -> Sample | None:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"{self.name}: index {index} out of range for {n} samples")
        index %= n
        if self.strict:
            return self._read(index)
        passed: list[tuple[str, str]] = []
        for k in range(n):
            j = (index + k) % n
            if j not in self._bad:
                try:
                    sample = self._read(j)
                except DataError as e:
                    self._record_bad(j, e)
                else:
                    if passed:
                        sample.meta["skipped"] = passed
                    return sample
            passed.append(self._bad[j][:2])
            if self.skip == "none":
                return None
        raise DataError(self.root, f"none of the {n} samples of split {self.split!r} is readable; "
                        f"reasons: {dict(self.skipped)}", "no_readable_sample")

    # ---------------------------------------------------------------- skip accounting
    @property
    def skipped(self) -> dict[str, int]:
        """``{reason: number of distinct bad samples}`` met so far (this process only)."""
        return dict(Counter(reason for _, reason, _ in self._bad.values()))

    @property
    def skipped_files(self) -> list[tuple[str, str, str]]:
        """``[(path, reason, message)]`` of the bad samples met so far, by sample index."""
        return [self._bad[i] for i in sorted(self._bad)]

    def reset_skipped(self) -> None:
        self._bad.clear()

    def validate(self) -> dict[str, int]:
        """Read every sample once (whatever ``strict`` is) and record the bad ones; returns
        :attr:`skipped`. Useful as a pre-flight check in the main process."""
        for i in range(len(self)):
            if i in self._bad:
                continue
            try:
                self._read(i)
            except DataError as e:
                self._record_bad(i, e)
        return self.skipped

    def _record_bad(self, index: int, exc: DataError) -> None:
        """Record a bad sample once and log it (one line naming the file and the problem)."""
        if index in self._bad:
            return
        self._bad[index] = (exc.path, exc.reason, str(exc))
        _log.warning("%s: skipped sample %d of %d: %s", self.name or type(self).__name__, index, len(self), exc)

    def skip_report(self, max_files: int = 10) -> str:
        """``"k of N samples skipped: <file>: <problem>; ..."`` for the bad samples met so far
        (this process only; :meth:`validate` reads them all first), listing at most
        ``max_files`` of them (``"... and m more"``); ``"0 of N samples skipped"`` when none."""
        files = self.skipped_files
        head = f"{len(files)} of {len(self)} samples skipped"
        if not files:
            return head
        shown = "; ".join(msg for _, _, msg in files[:max_files])
        more = f"; ... and {len(files) - max_files} more" if len(files) > max_files else ""
        return f"{head}: {shown}{more}"

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
                f"n={len(self)}, image_size={self.image_size}, strict={self.strict})")
