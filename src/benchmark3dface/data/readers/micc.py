"""MICC Florence 2D/3D faces (Bagdanov et al. 2011): 53 subjects, a 3D scan each and three videos.

Layout (as distributed; frames may also be pre-extracted into folders)::

    root/subject_01/Model/frontal1/obj/<id>.obj     (also frontal2, sidel, sider; vrml/<id>.wrl)
    root/subject_01/Video/Indoor-Cooperative.mjpg   ("cooperative" split)
    root/subject_01/Video/PTZ-Indoor.mjpg           ("indoor")
    root/subject_01/Video/PTZ-Outdoor.mjpg          ("outdoor")

A video may instead be a folder of frames with the same name (``Video/Indoor-Cooperative/
0001.jpg ...``, also accepted directly under ``subject_XX/``), and the lower-case names
``cooperative``/``indoor``/``outdoor`` are accepted too. Videos are decoded with OpenCV.

Scans are read with open3d (obj/ply) or the VRML parser of :mod:`.mesh`; the scan is assumed to
be in millimetres (``scan_scale`` converts other units) and its extent is checked. Frames are
picked with ``frame_stride`` (every k-th frame, starting at frame 0) up to ``max_frames``.
``mode="frames"``: one ``single`` sample per frame; ``mode="set"``: one ``set`` sample per
subject with the frames stacked ``(V, 3, H, W)``. Protocol: per-subject RMSE after ICP with
scale on the scan cropped at 95 mm around the nose tip (Deng / Genova). See datasets/micc.md.

Scan annotation (optional, for the nose tip of the crop and a landmark initialisation): a file
``landmarks.txt`` / ``.pp`` / ``.npy`` (or ``<scan stem>_landmarks.*``) in the scan's folder or
its parent, holding 1 (the nose tip), 7 (NoW order) or 68 (iBUG order) 3D points in the scan's
coordinates (converted by ``scan_scale`` like the scan). Without one the protocol falls back to
the scan point with the largest z (named ``max_z`` in its config).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..sample import Sample
from .annotations import check_array, read_picked_points, read_points_npy, read_points_txt
from .base import FaceDatasetReader
from .errors import DataError
from .imageio import VIDEO_EXTENSIONS, list_images, load_image, read_video_frames, to_tensor, video_frame_count
from .mesh import check_face_extent_mm, load_mesh
from .registry import register_reader

SETTINGS = {"cooperative": ("Indoor-Cooperative", "cooperative"),
            "indoor": ("PTZ-Indoor", "indoor"),
            "outdoor": ("PTZ-Outdoor", "outdoor")}
_SCAN_EXT_ORDER = (".obj", ".ply", ".wrl", ".vrml", ".off", ".stl")
#: accepted point counts of a scan annotation: nose tip, NoW's 7, iBUG's 68
ANNOTATION_POINTS = (1, 7, 68)
_ANNOTATION_EXT = (".txt", ".pp", ".npy")
#: NoW's 7 landmarks from iBUG-68 indices (the same as ``metrics.geometry.NOW7_FROM_IBUG68``;
#: data never imports metrics)
_NOW7_FROM_IBUG68 = (36, 39, 42, 45, 33, 48, 54)


def find_scan_annotation(scan_path: Path) -> Path | None:
    """The annotation file of a scan (see the module docstring), or None: ``<stem>_landmarks``
    then ``landmarks`` with extension .txt / .pp / .npy, in the scan's folder, then its parent."""
    for folder in (scan_path.parent, scan_path.parent.parent):
        for stem in (f"{scan_path.stem}_landmarks", "landmarks"):
            for ext in _ANNOTATION_EXT:
                cand = folder / f"{stem}{ext}"
                if cand.is_file():
                    return cand
    return None


def read_scan_annotation(path: Path) -> np.ndarray:
    """``(K, 3)`` points of a scan annotation file, K in ``ANNOTATION_POINTS``; a bad file is a
    ``DataError`` naming it."""
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return read_points_txt(path, n_points=ANNOTATION_POINTS, dims=3)
    if suffix == ".npy":
        pts = read_points_npy(path, [(k, 3) for k in ANNOTATION_POINTS] + [(3,)])
        return pts.reshape(-1, 3)
    pts, _ = read_picked_points(path)
    return check_array(pts, path, "points", [(k, 3) for k in ANNOTATION_POINTS])


def annotation_fields(points: np.ndarray) -> dict[str, torch.Tensor]:
    """Sample fields from annotation points (mm): 1 point -> ``scan_nose_tip``; 7 ->
    ``scan_landmarks7``; 68 -> ``scan_landmarks68``, ``scan_nose_tip`` (point 30) and
    ``scan_landmarks7`` (NoW's 7 of the 68)."""
    pts = torch.from_numpy(np.asarray(points, np.float64)).float()
    if len(pts) == 1:
        return {"scan_nose_tip": pts[0]}
    if len(pts) == 7:
        return {"scan_landmarks7": pts}
    return {"scan_landmarks68": pts, "scan_nose_tip": pts[30], "scan_landmarks7": pts[list(_NOW7_FROM_IBUG68)]}


@dataclass
class _Item:
    subject: str
    subject_dir: Path
    source: Path | None  # video file or frames folder
    frames: list[int] = field(default_factory=list)  # frame indices (video) / positions (folder)
    problem: str = ""


def _subject_id(name: str) -> int | None:
    tail = name.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


@register_reader("micc")
class MICCFlorenceReader(FaceDatasetReader):
    """MICC Florence, split = recording setting (``cooperative``, ``indoor``, ``outdoor``).

    Args:
        mode: ``"frames"`` (one sample per frame) or ``"set"`` (one sample per subject).
        frame_stride: keep every ``frame_stride``-th frame.
        max_frames: at most this many frames per video (None = all kept frames).
        scan: which scan of ``Model/`` to use (``frontal1`` is the usual GT).
        scan_scale: multiply scan coordinates by this to get millimetres.
        load_scan: attach the GT scan (set False to read frames only).
        scan_cache: number of subjects' scans kept in memory.
        scan_annotation: read the scan's annotation file when there is one (module docstring).

    Sample fields: ``image`` ((3, H, W) or (V, 3, H, W)), ``scan_vertices`` (P, 3) mm,
    ``scan_triangles`` (Q, 3) or None, ``identity`` (subject number), ``labelled=True``;
    ``scan_landmarks7`` (7, 3) mm when annotated; ``meta``: ``subject``, ``setting``,
    ``frame_index`` / ``frame_indices``, ``source``, ``scan_path``, and from an annotation
    ``scan_nose_tip`` (3,) mm, ``scan_landmarks68`` (68, 3) mm, ``scan_annotation_path``.
    """

    splits = tuple(SETTINGS)
    source_hint = ("MICC Florence 2D/3D comes from https://www.micc.unifi.it/resources/datasets/"
                   "florence-3d-faces/ (request form, research use); unpack it so that "
                   "subject_01/ ... subject_53/ lie in the root folder")

    def __init__(self, root, split: str = "cooperative", image_size: int | None = None,
                 strict: bool = True, transform=None, skip: str = "next", mode: str = "frames",
                 frame_stride: int = 10, max_frames: int | None = None, scan: str = "frontal1",
                 scan_scale: float = 1.0, load_scan: bool = True, scan_cache: int = 2,
                 scan_annotation: bool = True) -> None:
        if mode not in ("frames", "set"):
            raise ValueError(f"mode must be 'frames' or 'set', got {mode!r}")
        if frame_stride < 1:
            raise ValueError("frame_stride must be >= 1")
        self.mode = mode
        self.frame_stride = int(frame_stride)
        self.max_frames = max_frames
        self.scan_name = scan
        self.scan_scale = float(scan_scale)
        self.load_scan = load_scan
        self.scan_annotation = scan_annotation
        self._scan_cache: OrderedDict[str, tuple] = OrderedDict()
        self._scan_cache_size = max(1, int(scan_cache))
        self._video_cache: OrderedDict[str, dict[int, np.ndarray]] = OrderedDict()
        super().__init__(root, split, image_size, strict, transform, skip)

    # ------------------------------------------------------------------ indexing
    def _find_source(self, subject_dir: Path) -> Path | None:
        for base in (subject_dir / "Video", subject_dir):
            for name in SETTINGS[self.split]:
                d = base / name
                if d.is_dir() and list_images(d, recursive=False):
                    return d
                for ext in VIDEO_EXTENSIONS:
                    for cand in (base / f"{name}{ext}", base / f"{name}{ext.upper()}"):
                        if cand.is_file():
                            return cand
        return None

    def _select(self, n: int) -> list[int]:
        idx = list(range(0, n, self.frame_stride))
        return idx[: self.max_frames] if self.max_frames is not None else idx

    def _index(self) -> list[_Item]:
        subjects = sorted(d for d in self.root.iterdir() if d.is_dir() and d.name.lower().startswith("subject"))
        if not subjects:
            raise self.missing(self.root / "subject_01", "MICC subject folders (subject_XX/)")
        items: list[_Item] = []
        for sd in subjects:
            src = self._find_source(sd)
            if src is None:
                names = " or ".join(SETTINGS[self.split])
                items.append(_Item(sd.name, sd, None, [], f"no video or frame folder named {names} "
                                   f"under {sd / 'Video'} or {sd}"))
                continue
            frames: list[int] = []
            problem = ""
            if self.mode == "frames" or src.is_dir():
                try:
                    n = len(list_images(src, recursive=False)) if src.is_dir() else video_frame_count(src)
                    frames = self._select(n)
                    if not frames:
                        problem = "no frames"
                except DataError as e:
                    problem = e.problem
            if self.mode == "frames":
                if problem:
                    items.append(_Item(sd.name, sd, src, [], problem))
                else:
                    items.extend(_Item(sd.name, sd, src, [f]) for f in frames)
            else:
                items.append(_Item(sd.name, sd, src, frames, problem))
        return items

    # ------------------------------------------------------------------ loading
    def _find_scan(self, subject_dir: Path) -> Path:
        model = subject_dir / "Model" / self.scan_name
        pool = sorted(model.rglob("*")) if model.is_dir() else sorted(subject_dir.glob("*"))
        for ext in _SCAN_EXT_ORDER:
            for p in pool:
                if p.is_file() and p.suffix.lower() == ext:
                    return p
        raise self.missing(model / "obj" / "<id>.obj", f"MICC scan ({self.scan_name}, .obj/.ply/.wrl)")

    def _scan(self, subject_dir: Path) -> tuple:
        """(vertices, triangles, scan path, annotation fields, annotation path) of a subject."""
        key = str(subject_dir)
        if key in self._scan_cache:
            self._scan_cache.move_to_end(key)
            return self._scan_cache[key]
        path = self._find_scan(subject_dir)
        v, f = load_mesh(path)
        v = v * self.scan_scale
        check_face_extent_mm(v, path)
        ann, ann_path = {}, None
        if self.scan_annotation:
            ann_path = find_scan_annotation(path)
            if ann_path is not None:
                ann = annotation_fields(read_scan_annotation(ann_path) * self.scan_scale)
        entry = (torch.from_numpy(v), None if f is None else torch.from_numpy(f), str(path), ann,
                 None if ann_path is None else str(ann_path))
        self._scan_cache[key] = entry
        while len(self._scan_cache) > self._scan_cache_size:
            self._scan_cache.popitem(last=False)
        return entry

    def _frames(self, item: _Item, wanted: list[int]) -> list[np.ndarray]:
        src = item.source
        assert src is not None
        if src.is_dir():
            files = list_images(src, recursive=False)
            return [load_image(files[i]) for i in wanted]
        key = str(src)
        cache = self._video_cache.get(key)
        if cache is None or any(i not in cache for i in wanted):
            # decode this video's selected frames once (sequential access), keep one video cached
            all_wanted = wanted if self.mode == "set" else self._select(video_frame_count(src))
            frames = read_video_frames(src, all_wanted)
            cache = dict(zip(all_wanted, frames))
            self._video_cache.clear()
            self._video_cache[key] = cache
        return [cache[i] for i in wanted]

    def _load(self, item: _Item, index: int) -> Sample:
        if item.problem or item.source is None:
            raise DataError(item.source or item.subject_dir, item.problem or "no frames", "unreadable_video"
                            if item.source is not None else "missing_file")
        wanted = item.frames
        if self.mode == "set" and not wanted:  # video in set mode: select after counting
            wanted = self._select(video_frame_count(item.source))
            if not wanted:
                raise DataError(item.source, "no frames", "unreadable_video")
        frames = self._frames(item, wanted)
        shapes = {f.shape for f in frames}
        if len(shapes) > 1:
            raise DataError(item.source, f"frames of different sizes {sorted(shapes)}", "bad_shape")
        meta = {"subject": item.subject, "setting": self.split, "source": str(item.source),
                "path": str(item.source)}
        sample = Sample(kind="single" if self.mode == "frames" else "set", labelled=True,
                        identity=_subject_id(item.subject), meta=meta)
        if self.mode == "frames":
            sample.image = to_tensor(frames[0])
            meta["frame_index"] = wanted[0]
            sample.sample_id = f"micc/{self.split}/{item.subject}/{wanted[0]:06d}"
        else:
            sample.image = torch.stack([to_tensor(f) for f in frames])
            meta["frame_indices"] = list(wanted)
            sample.sample_id = f"micc/{self.split}/{item.subject}"
        if self.load_scan:
            v, f, scan_path, ann, ann_path = self._scan(item.subject_dir)
            sample.scan_vertices, sample.scan_triangles = v, f
            meta["scan_path"] = scan_path
            if ann_path is not None:
                meta["scan_annotation_path"] = ann_path
                sample.scan_landmarks7 = ann.get("scan_landmarks7")
                for k in ("scan_nose_tip", "scan_landmarks68"):
                    if k in ann:
                        meta[k] = ann[k]
        return sample
