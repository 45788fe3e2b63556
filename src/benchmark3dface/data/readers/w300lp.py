"""300W-LP (Zhu et al., 3DDFA): ~61k synthesised large-pose faces with fitted 3DMM parameters.

Layout::

    root/AFW/AFW_<id>_<k>.jpg + .mat     (also HELEN, IBUG, LFPW)
    root/AFW_Flip/...                      (horizontally flipped copies, same file names)
    root/landmarks/AFW/AFW_<id>_<k>_pts.mat   (pts_2d (68, 2), pts_3d (68, 2); no _Flip folders)

``.mat`` keys read: ``Pose_Para`` (1, 7) ``[pitch, yaw, roll, tx, ty, tz, scale]``,
``Shape_Para`` (199, 1) (BFM identity), ``Exp_Para`` (29, 1) (3DDFA expression), optional
``pt2d`` (2, 68) and ``roi``. Landmarks are 1-based MATLAB pixels, converted with
``u = x - 0.5`` (docs/conventions.md). For ``_Flip`` images without their own landmark file, the
landmarks of the unflipped image are mirrored (``u' = W - u`` plus the iBUG-68 left/right swap).

Splits: ``train`` / ``val`` are a deterministic partition by *source face* (the file name
without the trailing ``_<k>`` pose index, so every synthesised view of one face stays on the
same side): a face goes to ``val`` when ``crc32(name) % 1000 < 1000 * val_fraction``.
``all`` = everything. See datasets/300w_lp.md.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from ..sample import Sample
from .annotations import (ONE_BASED_TO_CONTINUOUS, check_array, lm5_from_lm68, load_mat,
                          mirror_lm68, yaw_bin)
from .base import FaceDatasetReader
from .errors import DataError
from .imageio import load_image, to_tensor
from .registry import register_reader

SUBSETS = ("AFW", "HELEN", "IBUG", "LFPW")


@dataclass(frozen=True)
class _Item:
    image: Path
    mat: Path
    subset: str
    flipped: bool


def source_face(stem: str) -> str:
    """``AFW_134212_1_3`` -> ``AFW_134212_1`` (drop the synthesised-pose index)."""
    head, _, tail = stem.rpartition("_")
    return head if head and tail.isdigit() else stem


@register_reader("300w_lp")
class W300LPReader(FaceDatasetReader):
    """300W-LP, labelled data for (semi-)supervised training.

    Args:
        subsets: which of AFW, HELEN, IBUG, LFPW to use.
        include_flip: also use the ``<SUBSET>_Flip`` folders.
        landmarks: ``"pts_3d"`` (3D-consistent points, default, as AFLW2000-3D),
            ``"pts_2d"`` (visible-contour points) or ``"mat"`` (the ``pt2d`` of the image .mat).
        val_fraction: fraction of source faces in the ``val`` split.

    Sample fields: ``image``, ``lm68`` (68, 2) px, ``lm5``, ``yaw`` (radians). The 3DMM labels
    are in ``meta`` because they use 3DDFA's BFM basis, not the framework's ``CoeffLayout``:
    ``shape_para`` (199,), ``exp_para`` (29,), ``pose_para`` (7,); plus ``yaw_bin``, ``subset``,
    ``flipped``, ``path``, ``annotation_path``, ``landmark_path``.
    """

    splits = ("train", "val", "all")
    source_hint = ("300W-LP comes from the 3DDFA project page "
                   "(http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/main.htm, file "
                   "300W-LP.zip, research use only); unzip it so that AFW/, HELEN/, IBUG/, LFPW/ "
                   "(+ _Flip) and landmarks/ lie in the root folder")

    def __init__(self, root, split: str = "train", image_size: int | None = None,
                 strict: bool = True, transform=None, skip: str = "next",
                 subsets: tuple[str, ...] = SUBSETS, include_flip: bool = True,
                 landmarks: str = "pts_3d", val_fraction: float = 0.02) -> None:
        if landmarks not in ("pts_3d", "pts_2d", "mat"):
            raise ValueError(f"landmarks must be 'pts_3d', 'pts_2d' or 'mat', got {landmarks!r}")
        bad = [s for s in subsets if s not in SUBSETS]
        if bad:
            raise ValueError(f"unknown 300W-LP subset(s) {bad}; choose from {SUBSETS}")
        self.subsets = tuple(subsets)
        self.include_flip = include_flip
        self.landmarks = landmarks
        self.val_fraction = float(val_fraction)
        super().__init__(root, split, image_size, strict, transform, skip)

    def _in_split(self, stem: str) -> bool:
        if self.split == "all":
            return True
        is_val = zlib.crc32(source_face(stem).encode()) % 1000 < 1000 * self.val_fraction
        return is_val == (self.split == "val")

    def _index(self) -> list[_Item]:
        items, found = [], []
        for subset in self.subsets:
            for folder, flipped in ((subset, False), (subset + "_Flip", True)):
                if flipped and not self.include_flip:
                    continue
                d = self.root / folder
                if not d.is_dir():
                    continue
                found.append(folder)
                for p in sorted(d.glob("*.jpg")):
                    if self._in_split(p.stem):
                        items.append(_Item(p, p.with_suffix(".mat"), subset, flipped))
        if not found:
            raise self.missing(self.root / self.subsets[0], f"300W-LP subset folders {list(self.subsets)}")
        if self.landmarks != "mat" and not (self.root / "landmarks").is_dir():
            raise self.missing(self.root / "landmarks",
                               "300W-LP landmarks/ folder (or pass landmarks='mat')")
        return items

    def _landmark_file(self, item: _Item) -> tuple[Path, bool]:
        """(landmark file, needs mirroring)."""
        own = self.root / "landmarks" / (item.subset + ("_Flip" if item.flipped else "")) / f"{item.image.stem}_pts.mat"
        if own.is_file() or not item.flipped:
            return own, False
        return self.root / "landmarks" / item.subset / f"{item.image.stem}_pts.mat", True

    def _lm68(self, item: _Item, mat: dict, width: int) -> tuple[torch.Tensor, str]:
        if self.landmarks == "mat":
            if "pt2d" not in mat:
                raise DataError(item.mat, "no 'pt2d' key (needed with landmarks='mat')", "missing_key")
            pts = check_array(mat["pt2d"], item.mat, "pt2d", [(2, 68)]).T
            lm = torch.from_numpy(pts.copy()).float() + ONE_BASED_TO_CONTINUOUS
            return lm, str(item.mat)
        path, mirror = self._landmark_file(item)
        if not path.is_file():
            raise self.missing(path, "300W-LP landmark file")
        lmat = load_mat(path, required=(self.landmarks,))
        pts = check_array(lmat[self.landmarks], path, self.landmarks, [(68, 2), (68, 3), (2, 68), (3, 68)])
        if pts.shape[0] != 68:
            pts = pts.T
        lm = torch.from_numpy(pts[:, :2].copy()).float() + ONE_BASED_TO_CONTINUOUS
        if mirror:
            lm = mirror_lm68(lm, float(width))
        return lm, str(path)

    def _load(self, item: _Item, index: int) -> Sample:
        mat = load_mat(item.mat, required=("Pose_Para", "Shape_Para", "Exp_Para"))
        pose = check_array(mat["Pose_Para"], item.mat, "Pose_Para", [(1, 7), (7, 1), (7,)]).reshape(7)
        shape = check_array(mat["Shape_Para"], item.mat, "Shape_Para", [(199, 1), (1, 199), (199,)]).reshape(199)
        exp = check_array(mat["Exp_Para"], item.mat, "Exp_Para", [(29, 1), (1, 29), (29,)]).reshape(29)
        img = load_image(item.image)
        lm68, lm_path = self._lm68(item, mat, img.shape[1])
        yaw = float(pose[1])
        return Sample(
            kind="single",
            sample_id=f"300w_lp/{item.image.parent.name}/{item.image.stem}",
            image=to_tensor(img),
            lm68=lm68,
            lm5=lm5_from_lm68(lm68),
            yaw=torch.tensor(yaw, dtype=torch.float32),
            labelled=True,
            meta={"path": str(item.image), "annotation_path": str(item.mat),
                  "landmark_path": lm_path, "subset": item.subset, "flipped": item.flipped,
                  "yaw_bin": yaw_bin(yaw), "pose_para": torch.from_numpy(pose).float(),
                  "shape_para": torch.from_numpy(shape).float(),
                  "exp_para": torch.from_numpy(exp).float()},
        )
