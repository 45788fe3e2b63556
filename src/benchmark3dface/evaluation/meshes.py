"""Score a folder of meshes from any reconstruction method: ``b3f evaluate --meshes DIR``.

Layout (docs/evaluating-meshes.md walks through an example)::

    DIR/<sample id>.obj | .ply            one mesh per sample, millimetres, any frame
    DIR/<sample id>.lm3d.txt | .lm3d.npy  optional 3D landmarks in the mesh's frame: 7 rows
                                          (NoW order) or 68 rows (iBUG order), "x y z" per row
    DIR/<sample id>.lm2d.txt | .lm2d.npy  optional 68 iBUG 2D landmarks in input-image pixels
                                          (for the AFLW2000-3D NME protocol)

``<sample id>`` is the dataset's sample id (``b3f evaluate --data ... --list-ids`` prints
them), with or without its leading dataset name (``aflw2000/image00050`` or
``image00050``); ids with ``/`` are sub-folders. A sample without a mesh, or whose files
cannot be read, is a counted failure with the file and the problem; the other samples are
scored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.readers.errors import DataError
from ..data.sample import Sample
from ..contracts import FaceReconstruction, Reconstruction

MESH_SUFFIXES = (".obj", ".ply")


class MeshFolder:
    """A "method" whose reconstructions are read from ``root`` (see the module docstring)."""

    inputs = ("image",)

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"--meshes: folder {self.root} not found")
        self.problems: list[str] = []

    def _find(self, sid: str, suffixes: tuple[str, ...]) -> Path | None:
        names = [sid]
        if "/" in sid:
            names.append(sid.split("/", 1)[1])
        for name in names:
            for suf in suffixes:
                p = self.root / f"{name}{suf}"
                if p.is_file():
                    return p
        return None

    def load(self, sid: str) -> FaceReconstruction:
        from ..data.readers.annotations import read_landmarks3d, read_points_npy, read_points_txt
        from ..data.readers.mesh import load_mesh

        path = self._find(sid, MESH_SUFFIXES)
        if path is None:
            return FaceReconstruction(None, None, failure=f"no mesh file {sid}.obj|.ply in {self.root}")
        try:
            v, f = load_mesh(path)
            if f is None or len(f) == 0:
                raise DataError(path, "the mesh has no triangles", "unreadable_mesh")
            face = FaceReconstruction(torch.as_tensor(np.asarray(v), dtype=torch.float32),
                                      torch.as_tensor(np.asarray(f), dtype=torch.long))
            lm3 = self._find(sid, (".lm3d.txt", ".lm3d.npy"))
            if lm3 is not None:
                pts = None
                for n in (7, 68):
                    try:
                        pts = read_landmarks3d(lm3, n)
                        break
                    except DataError:
                        continue
                if pts is None:
                    raise DataError(lm3, "3D landmarks must be 7 (NoW) or 68 (iBUG) rows of x y z", "bad_value")
                face.landmarks3d = torch.as_tensor(np.asarray(pts), dtype=torch.float32)
            lm2 = self._find(sid, (".lm2d.txt", ".lm2d.npy"))
            if lm2 is not None:
                arr = read_points_npy(lm2, [(68, 2)]) if lm2.suffix == ".npy" else read_points_txt(lm2, n_points=(68,), dims=2)
                face.landmarks2d = torch.as_tensor(np.asarray(arr), dtype=torch.float32)
        except (DataError, OSError, ValueError) as exc:
            msg = str(exc).splitlines()[0]
            self.problems.append(msg)
            return FaceReconstruction(None, None, failure=f"unreadable: {msg}")
        return face

    def reconstruct(self, batch: Sample) -> list[Reconstruction]:
        ids = batch.sample_id if isinstance(batch.sample_id, list) else [batch.sample_id]
        return [Reconstruction(str(sid), [self.load(str(sid))]) for sid in ids]


__all__ = ["MESH_SUFFIXES", "MeshFolder"]
