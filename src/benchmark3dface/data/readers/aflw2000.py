"""AFLW2000-3D (Zhu et al., 3DDFA): 2000 in-the-wild images with 68 3D-consistent landmarks.

Layout: ``root/imageNNNNN.jpg`` + ``root/imageNNNNN.mat`` (or the same inside
``root/AFLW2000/``). ``.mat`` keys read: ``pt3d_68`` (3, 68), ``Pose_Para`` (1, 7)
``[pitch, yaw, roll, tx, ty, tz, scale]`` (radians), ``pt2d`` (2, 21), ``roi`` (1, 4),
``Shape_Para`` (199, 1), ``Exp_Para`` (29, 1) (the last four are optional).

Coordinates: ``pt3d_68`` rows are x, y in 1-based MATLAB image pixels (the 3DDFA code flips y
with ``height + 1 - y``, i.e. pixel centres at integers 1..H) and a depth z scaled like x, y
(larger = nearer the camera). The reader converts x, y to the framework convention with
``u = x - 0.5``, ``v = y - 0.5`` and keeps z. Yaw is kept as stored (radians); on the real files
a positive yaw turns the nose toward the viewer's left (smaller u). ``roi`` refers to the
original AFLW photo, not to the 450x450 image, and is only passed through. Protocol: NME of the
68 2D points normalised by the GT box ``sqrt(w h)``, by yaw bins of ``|yaw|``
(``meta["yaw_bin"]``: 0 = [0,30], 1 = (30,60], 2 = above 60 degrees). See datasets/aflw2000.md.

Re-annotated landmarks (option ``landmarks_file``): 3DDFA distributes a corrected 68-point set
as ``AFLW2000-3D-Reannotated.pts68.npy`` -- an array (N, 2 or 3, 68) (x, y[, z] rows, 1-based
pixels like ``pt3d_68``) whose row i belongs to the image named on line i of
``AFLW2000-3D_crop.list`` (``landmarks_list``; by default that file next to the array). With
it, ``lm68`` / ``lm5`` come from the re-annotation (``lm68_3d`` stays ``pt3d_68``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..sample import Sample
from .annotations import ONE_BASED_TO_CONTINUOUS, check_array, lm5_from_lm68, load_mat, read_points_npy, yaw_bin
from .base import FaceDatasetReader
from .errors import DataError, MissingFileError
from .imageio import load_image, to_tensor
from .registry import register_reader


@dataclass(frozen=True)
class _Item:
    image: Path
    mat: Path


@register_reader("aflw2000")
class AFLW2000Reader(FaceDatasetReader):
    """AFLW2000-3D test set (split ``"test"``; ``"all"`` is an alias).

    Sample fields: ``image``, ``lm68`` (68, 2) px, ``lm68_3d`` (68, 3) (u, v px + stored depth),
    ``lm5`` (from lm68), ``yaw`` (radians, as stored in ``Pose_Para``). ``meta``: ``yaw_bin``,
    ``pose_para`` (7,), ``pt2d`` (21, 2) px with missing points NaN, ``roi`` (4,),
    ``shape_para`` (199,), ``exp_para`` (29,), ``path``, ``annotation_path``, ``lm68_source``
    (``"pt3d_68"`` or ``"reannotated:<file>"``), ``lm68_original`` (the ``pt3d_68`` points, with
    a re-annotation).
    """

    splits = ("test", "all")
    source_hint = ("AFLW2000-3D comes from the 3DDFA project page "
                   "(http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/main.htm, file "
                   "AFLW2000-3D.zip, research use only); unzip it so that imageNNNNN.jpg and "
                   "imageNNNNN.mat lie in the root folder")

    def __init__(self, root, split: str = "test", image_size: int | None = None,
                 strict: bool = True, transform=None, skip: str = "next",
                 landmarks_file: str | Path | None = None, landmarks_list: str | Path | None = None) -> None:
        """``landmarks_file`` / ``landmarks_list``: 3DDFA's re-annotated 68 points and their
        image-name list (module docstring); a bad or inconsistent file raises a ``DataError``
        naming it."""
        super().__init__(root, split, image_size, strict, transform, skip)
        self.reannotated: dict[str, torch.Tensor] | None = None
        self.landmarks_file = None if landmarks_file is None else Path(landmarks_file).expanduser()
        if self.landmarks_file is not None:
            lst = Path(landmarks_list).expanduser() if landmarks_list is not None else \
                self.landmarks_file.parent / "AFLW2000-3D_crop.list"
            self.landmarks_list = lst
            self.reannotated = read_reannotated_pts68(self.landmarks_file, lst)

    def _index(self) -> list[_Item]:
        folder = self.root
        if not any(folder.glob("image*.jpg")) and (folder / "AFLW2000").is_dir():
            folder = folder / "AFLW2000"
        images = sorted(folder.glob("image*.jpg"))
        if not images:
            raise self.missing(folder / "image00000.jpg", "AFLW2000-3D images (imageNNNNN.jpg)")
        self.data_dir = folder
        return [_Item(p, p.with_suffix(".mat")) for p in images]

    def _load(self, item: _Item, index: int) -> Sample:
        mat = load_mat(item.mat, required=("pt3d_68", "Pose_Para"))
        pt3d = check_array(mat["pt3d_68"], item.mat, "pt3d_68", [(3, 68)])
        pose = check_array(mat["Pose_Para"], item.mat, "Pose_Para", [(1, 7), (7, 1), (7,)]).reshape(7)
        img = load_image(item.image)
        lm3 = torch.from_numpy(pt3d.T.copy()).float()
        lm3[:, :2] += ONE_BASED_TO_CONTINUOUS
        lm68 = lm3[:, :2].clone()
        yaw = float(pose[1])
        meta = {"path": str(item.image), "annotation_path": str(item.mat), "yaw_bin": yaw_bin(yaw),
                "pose_para": torch.from_numpy(pose).float(), "lm68_source": "pt3d_68"}
        if self.reannotated is not None:
            if item.image.name not in self.reannotated:
                raise DataError(self.landmarks_list, f"image {item.image.name} is not in the re-annotation list",
                                "missing_key")
            meta["lm68_original"] = lm68
            meta["lm68_source"] = f"reannotated:{self.landmarks_file.name}"
            lm68 = self.reannotated[item.image.name].clone()
        if "pt2d" in mat:
            pt2d = check_array(mat["pt2d"], item.mat, "pt2d", [(2, None)], finite=False).T.copy()
            pt2d = torch.from_numpy(pt2d).float()
            missing = (pt2d < 0).any(-1)  # AFLW marks absent points with -1
            pt2d = pt2d + ONE_BASED_TO_CONTINUOUS
            pt2d[missing] = float("nan")
            meta["pt2d"] = pt2d
        if "roi" in mat:
            meta["roi"] = torch.from_numpy(check_array(mat["roi"], item.mat, "roi", [(1, 4)]).reshape(4)).float()
        for key, out, n in (("Shape_Para", "shape_para", 199), ("Exp_Para", "exp_para", 29)):
            if key in mat:
                meta[out] = torch.from_numpy(
                    check_array(mat[key], item.mat, key, [(n, 1), (1, n), (n,)]).reshape(n)).float()
        return Sample(
            kind="single",
            sample_id=f"aflw2000/{item.image.stem}",
            image=to_tensor(img),
            lm68=lm68,
            lm5=lm5_from_lm68(lm68),
            lm68_3d=lm3,
            yaw=torch.tensor(yaw, dtype=torch.float32),
            labelled=True,
            meta=meta,
        )


def read_reannotated_pts68(path: Path, list_path: Path) -> dict[str, torch.Tensor]:
    """3DDFA's re-annotated AFLW2000-3D landmarks: ``{image file name: (68, 2) px}`` in the
    framework convention (1-based -> continuous, ``u = x - 0.5``). ``path``: (N, 2|3, 68) or
    (N, 68, 2|3) array; ``list_path``: N image names, one per line, in the array's row order."""
    if not list_path.is_file():
        raise MissingFileError(list_path, "image-name list of the re-annotated landmarks not found",
                               "pass landmarks_list= (3DDFA: test.data/AFLW2000-3D_crop.list)")
    names = [ln.strip().rsplit("/", 1)[-1] for ln in list_path.read_text().splitlines() if ln.strip()]
    arr = read_points_npy(path, [(None, 2, 68), (None, 3, 68), (None, 68, 2), (None, 68, 3)])
    if arr.shape[1] != 68:
        arr = arr.transpose(0, 2, 1)
    if len(arr) != len(names):
        raise DataError(path, f"{len(arr)} landmark sets for {len(names)} image names in {list_path}", "bad_shape")
    if len(set(names)) != len(names):
        raise DataError(list_path, "repeated image names", "bad_value")
    pts = torch.from_numpy(arr[:, :, :2].copy()).float() + ONE_BASED_TO_CONTINUOUS
    return {n: pts[i] for i, n in enumerate(names)}
