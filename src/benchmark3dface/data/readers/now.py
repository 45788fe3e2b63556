"""NoW benchmark (Sanyal et al. 2019): 2054 images of 100 subjects, a neutral 3D scan per
subject with 7 landmarks picked on it.

Layout (``NoW_Dataset/final_release_version``)::

    root/imagepathsvalidation.txt      lines "<subject>/<condition>/IMG_xxxx.jpg"
    root/imagepathstest.txt
    root/iphone_pictures/<subject>/<condition>/IMG_xxxx.jpg
    root/scans/<subject>/<name>.obj
    root/scans_lmks_onlypp/<subject>/<name>_picked_points.pp   (or .txt / .npy, 7x3)

Scan landmarks (7, in file order): the NoW protocol uses them as [0] and [3] outer eye
corners, [1] and [2] inner eye corners, [4] nose bottom, [5] and [6] mouth corners. Scans are
assumed to be in millimetres (``scan_scale`` converts, extent checked). The test split's scans
are withheld by the benchmark authors, so for ``split="test"`` a missing scan is not an error
(``meta["scan_available"] = False``). ``split="all"`` lists every image under the image folder.
See datasets/now.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..sample import Sample
from .annotations import read_landmarks3d
from .base import FaceDatasetReader
from .errors import DataError
from .imageio import list_images, load_image, to_tensor
from .mesh import MESH_EXTENSIONS, check_face_extent_mm, load_mesh
from .registry import register_reader

SPLIT_FILES = {"val": "imagepathsvalidation.txt", "test": "imagepathstest.txt"}
_LMK_EXT_ORDER = (".pp", ".npy", ".txt")


@dataclass(frozen=True)
class _Item:
    rel: str  # "<subject>/<condition>/IMG.jpg"
    image: Path
    subject: str


@register_reader("now")
class NoWReader(FaceDatasetReader):
    """NoW-style folder: images + per-subject GT scan + 7 scan landmarks.

    Args:
        image_dir, scan_dir, landmark_dir: sub-folder names (NoW defaults).
        scan_scale: multiply scan coordinates (and landmarks) by this to get millimetres.
        load_scan: attach scan and landmarks.

    Sample fields: ``image``, ``scan_vertices`` (P, 3) mm, ``scan_triangles`` (Q, 3) or None,
    ``scan_landmarks7`` (7, 3) mm, ``labelled=True``; ``meta``: ``subject``, ``condition``,
    ``path``, ``scan_path``, ``landmark_path``, ``scan_available``.
    """

    splits = ("val", "test", "all")
    source_hint = ("NoW comes from https://now.is.tue.mpg.de (registration, non-commercial "
                   "research licence); unpack NoW_Dataset/final_release_version so that "
                   "iphone_pictures/, scans/, scans_lmks_onlypp/ and imagepaths*.txt lie in the "
                   "root folder")

    def __init__(self, root, split: str = "val", image_size: int | None = None,
                 strict: bool = True, transform=None, skip: str = "next",
                 image_dir: str = "iphone_pictures", scan_dir: str = "scans",
                 landmark_dir: str = "scans_lmks_onlypp", scan_scale: float = 1.0,
                 load_scan: bool = True) -> None:
        self.image_dir = image_dir
        self.scan_dir = scan_dir
        self.landmark_dir = landmark_dir
        self.scan_scale = float(scan_scale)
        self.load_scan = load_scan
        self._cache: dict[str, tuple] = {}
        super().__init__(root, split, image_size, strict, transform, skip)

    def _index(self) -> list[_Item]:
        img_root = self.root / self.image_dir
        if not img_root.is_dir():
            raise self.missing(img_root, "NoW image folder")
        if self.split == "all":
            rels = [p.relative_to(img_root).as_posix() for p in list_images(img_root)]
        else:
            lst = self.root / SPLIT_FILES[self.split]
            if not lst.is_file():
                raise self.missing(lst, f"NoW split list for {self.split!r}")
            rels = [ln.strip().lstrip("/") for ln in lst.read_text().splitlines() if ln.strip()]
        return [_Item(r, img_root / r, r.split("/", 1)[0]) for r in rels]

    def _pick(self, folder: Path, exts: tuple[str, ...]) -> Path | None:
        if not folder.is_dir():
            return None
        files = sorted(p for p in folder.iterdir() if p.is_file())
        for ext in exts:
            for p in files:
                if p.suffix.lower() == ext:
                    return p
        return None

    def _scan(self, subject: str) -> tuple | None:
        if subject in self._cache:
            return self._cache[subject]
        scan_path = self._pick(self.root / self.scan_dir / subject, MESH_EXTENSIONS)
        lmk_path = self._pick(self.root / self.landmark_dir / subject, _LMK_EXT_ORDER)
        if scan_path is None or lmk_path is None:
            if self.split == "test":
                return None
            missing = (self.root / self.scan_dir / subject / "<scan>.obj") if scan_path is None else \
                (self.root / self.landmark_dir / subject / "<scan>_picked_points.pp")
            what = "NoW scan" if scan_path is None else "NoW scan landmarks (.pp/.txt/.npy, 7 points)"
            raise self.missing(missing, what)
        v, f = load_mesh(scan_path)
        v = v * self.scan_scale
        check_face_extent_mm(v, scan_path)
        lm = read_landmarks3d(lmk_path, 7) * self.scan_scale
        entry = (torch.from_numpy(v), None if f is None else torch.from_numpy(f),
                 torch.from_numpy(lm).float(), str(scan_path), str(lmk_path))
        self._cache.clear()  # keep one subject
        self._cache[subject] = entry
        return entry

    def _load(self, item: _Item, index: int) -> Sample:
        parts = item.rel.split("/")
        if len(parts) < 2:
            raise DataError(item.image, f"split entry {item.rel!r} is not '<subject>/.../<image>'", "bad_value")
        meta = {"path": str(item.image), "subject": item.subject,
                "condition": parts[1] if len(parts) > 2 else ""}
        sample = Sample(kind="single", sample_id=f"now/{Path(item.rel).with_suffix('').as_posix()}",
                        labelled=True, meta=meta)
        if self.load_scan:
            scan = self._scan(item.subject)
            meta["scan_available"] = scan is not None
            if scan is not None:
                sample.scan_vertices, sample.scan_triangles, sample.scan_landmarks7 = scan[:3]
                meta["scan_path"], meta["landmark_path"] = scan[3], scan[4]
        sample.image = to_tensor(load_image(item.image))
        return sample
