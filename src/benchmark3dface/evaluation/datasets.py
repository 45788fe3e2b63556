"""Benchmark datasets: what ``b3f evaluate --data NAME:ROOT`` can score on.

A benchmark dataset is a :class:`DatasetSpec`: the input kind of its samples, the ground truth
it provides (``Sample`` field names; a protocol applies when its ``needs`` are provided), its
default protocols, a builder returning a ``torch.utils.data.Dataset`` of ``Sample``\\ s, and an
optional ``targets`` hook that derives protocol ground truth from a batch (the synthetic data's
GT mesh doubles as a "scan" for the scan protocols).

Built-in datasets are declared here; third-party ones register through the entry-point group
``benchmark3dface.datasets`` (``name = "package.module:OBJECT"``, where OBJECT is a
``DatasetSpec`` or a zero-argument callable returning one), so a new dataset needs no core edit.
``b3f datasets`` lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch.utils.data import Dataset

from ..data.sample import KINDS

ENTRY_POINT_GROUP = "benchmark3dface.datasets"


@dataclass(frozen=True)
class DatasetSpec:
    """See the module docstring.

    ``build(root, split, image_size, **options) -> Dataset``; ``root`` is what follows the colon
    in ``NAME:ROOT`` (a folder for real datasets; the kind for ``synthetic``)."""

    name: str
    kind: str
    provides: tuple[str, ...]
    protocols: tuple[str, ...]
    build: Callable[..., Dataset]
    description: str = ""
    splits: tuple[str, ...] = ("test",)
    default_split: str = "test"
    targets: Callable[..., Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"dataset {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")


_BUILTIN: dict[str, DatasetSpec] = {}
_LOADED: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    if spec.name in _BUILTIN and _BUILTIN[spec.name] is not spec:
        raise ValueError(f"dataset {spec.name!r} is already registered")
    _BUILTIN[spec.name] = spec
    return spec


def available_datasets() -> dict[str, DatasetSpec]:
    """Built-in and entry-point datasets, by name."""
    from importlib.metadata import entry_points

    out = dict(_BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in out:
            continue
        if ep.name not in _LOADED:
            obj = ep.load()
            spec = obj if isinstance(obj, DatasetSpec) else obj()
            if not isinstance(spec, DatasetSpec):
                raise TypeError(f"entry point {ep.value!r} ({ENTRY_POINT_GROUP}) must give a DatasetSpec, got {type(spec)}")
            _LOADED[ep.name] = spec
        out[ep.name] = _LOADED[ep.name]
    return out


def get_dataset(name: str) -> DatasetSpec:
    found = available_datasets()
    key = name.lower().replace("-", "_")
    if key not in found:
        raise KeyError(f"unknown dataset {name!r}; available: {sorted(found)} (b3f datasets lists them)")
    return found[key]


def parse_data_arg(arg: str) -> tuple[DatasetSpec, str]:
    """``NAME:ROOT`` -> (spec, root)."""
    name, sep, root = arg.partition(":")
    if not sep or not name or not root:
        raise ValueError(f"--data expects NAME:ROOT (e.g. aflw2000:/data/AFLW2000 or synthetic:single), got {arg!r}")
    return get_dataset(name), root


# ============================================================================ built-ins
def _reader_builder(reader: str, **fixed: Any) -> Callable[..., Dataset]:
    def build(root: str, split: str, image_size: int | None = None, **options: Any) -> Dataset:
        from ..data.datamodules import SkipTracked
        from ..data.readers import get_reader

        cls = get_reader(reader)
        ds = cls(root, split=split, image_size=image_size, strict=False, skip="none", **{**fixed, **options})
        return SkipTracked(ds)

    return build


def _synthetic_builder(root: str, split: str, image_size: int | None = None, size: int = 100, seed: int = 0,
                       facemodel: str = "procedural", facemodel_path: str | None = None, **options: Any) -> Dataset:
    from ..data.datamodules import SyntheticDataModule

    kind = root
    if kind not in KINDS:
        raise ValueError(f"synthetic:KIND expects one of {KINDS}, got {kind!r}")
    dm = SyntheticDataModule(mode=kind, image_size=image_size or 128, train_size=0, val_size=0, test_size=int(size),
                             seed=int(seed), batch_size=1, num_workers=0, facemodel=facemodel,
                             facemodel_path=facemodel_path, options=options, drop_last=False)
    dm.setup("test")
    return dm.datasets["test"]


def synthetic_targets(batch, kind: str, facemodel=None, scan_stride: int = 1, needs_scan: bool = False):
    """Protocol ground truth of a synthetic batch: the set's identity shape for ``set`` samples
    (Deng's Table 4 protocol) and the GT mesh as a "scan" for the scan protocols."""
    from .targets import with_gt_scans, with_identity_gt

    target = batch
    if kind == "set" and facemodel is not None:
        target = with_identity_gt(target, facemodel)
    if needs_scan:
        target = with_gt_scans(target, scan_stride)
    return target


SYNTHETIC = register_dataset(DatasetSpec(
    name="synthetic", kind="single",
    provides=("vertices", "triangles", "lm68", "lm5", "coeffs", "yaw", "depth", "parse", "skin_mask",
              "scan_vertices", "scan_landmarks7"),
    protocols=("true_error", "aflw2000_nme", "micc", "now"),
    build=_synthetic_builder, targets=synthetic_targets,
    description="the embedded procedural model's synthetic renders with exact ground truth (ROOT = the input kind: "
                "single, set, multiview, multiface)", splits=("test",)))
register_dataset(DatasetSpec(
    name="aflw2000", kind="single", provides=("lm68", "lm68_3d", "yaw", "pose"),
    protocols=("aflw2000_nme",), build=_reader_builder("aflw2000"), splits=("test", "all"),
    description="AFLW2000-3D (Zhu et al. 2016): 2000 images with 68 3D landmarks (datasets/aflw2000.md)"))
register_dataset(DatasetSpec(
    name="micc", kind="single", provides=("scan_vertices", "identity"),
    protocols=("micc",), build=_reader_builder("micc"), splits=("cooperative", "indoor", "outdoor"),
    default_split="cooperative",
    description="MICC Florence (Bagdanov et al. 2011): video frames + a 3D scan per subject (datasets/micc.md)"))
register_dataset(DatasetSpec(
    name="now", kind="single", provides=("scan_vertices", "scan_triangles", "scan_landmarks7"),
    protocols=("now",), build=_reader_builder("now"), splits=("val", "test", "all"), default_split="val",
    description="NoW (Sanyal et al. 2019): photos + a neutral scan with 7 landmarks per subject (datasets/now.md)"))
register_dataset(DatasetSpec(
    name="image_folder", kind="single", provides=(), protocols=(), build=_reader_builder("image_folder"),
    splits=("all",), default_split="all",
    description="a folder of photos without ground truth (reconstruct only; no protocol applies)"))
register_dataset(DatasetSpec(
    name="frgc", kind="single", provides=("depth", "scan_vertices", "lm68", "lm5"), protocols=("depth",),
    build=_reader_builder("frgc"), splits=("all",), default_split="all",
    description="FRGC-style .abs range images (+ texture, landmarks): depth error (datasets/frgc.md)"))


def kind_of(spec: DatasetSpec, root: str) -> str:
    """The input kind of the samples ``spec`` builds from ``root``."""
    return root if spec.name == "synthetic" else spec.kind


__all__ = ["DatasetSpec", "available_datasets", "get_dataset", "kind_of", "parse_data_arg", "register_dataset",
           "synthetic_targets"]
