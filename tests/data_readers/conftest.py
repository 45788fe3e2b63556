"""Fixture writers for the dataset readers: small folders in each dataset's true on-disk format
(file names, keys, dtypes, shapes), generated in tmp folders, never downloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

# A plausible iBUG-68 layout on a 450x450 image (0-based continuous pixels), built from a few
# anchor points so that eyes are above the nose and mouth and left/right are ordered.
def _face68(cx: float = 225.0, cy: float = 240.0, s: float = 1.0) -> np.ndarray:
    pts = np.zeros((68, 2))
    t = np.linspace(-1, 1, 17)
    pts[:17] = np.stack([cx + 95 * s * t, cy + 10 * s + 95 * s * (1 - t ** 2) ** 0.5 * 0.9], 1)
    pts[17:22] = np.stack([cx - 80 * s + 12 * s * np.arange(5), np.full(5, cy - 70 * s)], 1)
    pts[22:27] = np.stack([cx + 32 * s + 12 * s * np.arange(5), np.full(5, cy - 70 * s)], 1)
    pts[27:31] = np.stack([np.full(4, cx), cy - 45 * s + 13 * s * np.arange(4)], 1)
    pts[31:36] = np.stack([cx - 16 * s + 8 * s * np.arange(5), np.full(5, cy + 10 * s)], 1)
    for base, ex in ((36, cx - 45 * s), (42, cx + 45 * s)):
        ang = np.linspace(0, 2 * np.pi, 7)[:-1]
        pts[base:base + 6] = np.stack([ex - 15 * s * np.cos(ang), cy - 45 * s - 6 * s * np.sin(ang)], 1)
    ang = np.linspace(0, 2 * np.pi, 13)[:-1]
    pts[48:60] = np.stack([cx - 30 * s * np.cos(ang), cy + 45 * s - 10 * s * np.sin(ang)], 1)
    ang = np.linspace(0, 2 * np.pi, 9)[:-1]
    pts[60:68] = np.stack([cx - 20 * s * np.cos(ang), cy + 45 * s - 4 * s * np.sin(ang)], 1)
    return pts


def _image(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), np.full((h, w), 128)], -1)
    return (base + rng.integers(0, 20, (h, w, 3))).clip(0, 255).astype(np.uint8)


class Writers:
    """Helpers that write dataset fixtures in the datasets' real formats."""

    face68 = staticmethod(_face68)
    image = staticmethod(_image)

    @staticmethod
    def save_image(path: Path, arr: np.ndarray, **kw) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(path, **kw)
        return path

    # ------------------------------------------------------------------ AFLW2000-3D / 300W-LP
    @staticmethod
    def aflw_mat(path: Path, lm68_continuous: np.ndarray, yaw: float = 0.2, **override) -> Path:
        """An AFLW2000-3D style .mat (keys, dtypes and shapes of the real files); landmarks given
        in framework coordinates are stored 1-based (+0.5) as the dataset does."""
        pt3d = np.zeros((3, 68), np.float32)
        pt3d[:2] = (lm68_continuous + 0.5).T
        pt3d[2] = np.linspace(-80, 60, 68)
        pt2d = np.full((2, 21), -1.0)
        pt2d[:, :5] = (lm68_continuous[[36, 45, 30, 48, 54]] + 0.5).T
        d = {"pt3d_68": pt3d, "pt2d": pt2d,
             "Pose_Para": np.array([[0.05, yaw, -0.03, 220.0, 210.0, -100.0, 0.0014]], np.float32),
             "Shape_Para": np.linspace(-1e5, 1e5, 199)[:, None], "Exp_Para": np.linspace(-1, 1, 29)[:, None],
             "Tex_Para": np.zeros((199, 1)), "Color_Para": np.zeros((1, 7), np.float32),
             "Illum_Para": np.zeros((1, 10)), "roi": np.array([[100, 80, 400, 380]], np.int16)}
        d.update(override)
        d = {k: v for k, v in d.items() if v is not None}
        path.parent.mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(path, d)
        return path

    @staticmethod
    def aflw2000(root: Path, n: int = 3) -> Path:
        for i in range(n):
            lm = _face68(225 + 5 * i, 240 - 3 * i)
            Writers.save_image(root / f"image{i:05d}.jpg", _image(450, 450, i), quality=95)
            Writers.aflw_mat(root / f"image{i:05d}.mat", lm, yaw=[0.1, -0.7, 1.2][i % 3])
        return root

    @staticmethod
    def w300lp(root: Path) -> dict:
        """AFW (2 source faces x 2 views) + AFW_Flip + HELEN (1 face), with landmarks/ for the
        unflipped subsets only (as in the real archive)."""
        info = {}
        faces = {"AFW": ["AFW_134212_1_0", "AFW_134212_1_1", "AFW_2_1_0", "AFW_2_1_1"],
                 "HELEN": ["HELEN_10405146_1_0"]}
        for subset, names in faces.items():
            for k, name in enumerate(names):
                lm = _face68(220 + 7 * k, 235 + 2 * k)
                img = _image(450, 450, 10 + k)
                Writers.save_image(root / subset / f"{name}.jpg", img, quality=95)
                Writers.aflw_mat(root / subset / f"{name}.mat", lm, yaw=0.3 * k, pt3d_68=None, pt2d=(lm + 0.5).T.copy())
                lmd = root / "landmarks" / subset
                lmd.mkdir(parents=True, exist_ok=True)
                scipy.io.savemat(lmd / f"{name}_pts.mat", {"pts_2d": lm + 0.5 + 1.0, "pts_3d": lm + 0.5})
                info[(subset, name)] = lm
                if subset == "AFW":
                    Writers.save_image(root / "AFW_Flip" / f"{name}.jpg", img[:, ::-1].copy(), quality=95)
                    Writers.aflw_mat(root / "AFW_Flip" / f"{name}.mat", lm, yaw=-0.3 * k, pt3d_68=None, pt2d=None)
        return info

    # ------------------------------------------------------------------ meshes
    @staticmethod
    def obj(path: Path, scale: float = 1.0, quads: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """A 21x21 grid 'face' (about 160 x 200 mm, bulging toward +z) as an .obj."""
        path.parent.mkdir(parents=True, exist_ok=True)
        n = 21
        y, x = np.mgrid[0:n, 0:n]
        x = (x - 10) * 8.0
        y = (y - 10) * 10.0
        z = 60.0 * np.exp(-(x ** 2 + y ** 2) / (2 * 50.0 ** 2))
        v = np.stack([x, y, z], -1).reshape(-1, 3) * scale
        faces = []
        for i in range(n - 1):
            for j in range(n - 1):
                a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j + 1, (i + 1) * n + j
                faces += [(a, b, c, d)] if quads else [(a, b, c), (a, c, d)]
        with open(path, "w") as f:
            f.write("# grid face\n")
            for p in v:
                f.write(f"v {p[0]:.5f} {p[1]:.5f} {p[2]:.5f}\n")
            for fc in faces:
                f.write("f " + " ".join(str(i + 1) for i in fc) + "\n")
        tri = []
        for fc in faces:
            tri += [(fc[0], fc[k], fc[k + 1]) for k in range(1, len(fc) - 1)]
        return v, np.array(tri)

    @staticmethod
    def wrl(path: Path, v: np.ndarray, polys: list[tuple[int, ...]]) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        pts = ",\n".join(f"{p[0]} {p[1]} {p[2]}" for p in v)
        idx = ",\n".join(", ".join(str(i) for i in p) + ", -1" for p in polys)
        path.write_text("#VRML V2.0 utf8\n\nShape {\n appearance Appearance { texture ImageTexture "
                        "{ url \"tex.bmp\" } }\n geometry IndexedFaceSet {\n  coord Coordinate {\n"
                        f"   point [\n{pts}\n   ]\n  }}\n  texCoord TextureCoordinate {{ point [ 0 0, 1 0, 1 1 ] }}\n"
                        f"  coordIndex [\n{idx}\n  ]\n  texCoordIndex [ 0, 1, 2, -1 ]\n }}\n}}\n")
        return path

    # ------------------------------------------------------------------ videos
    @staticmethod
    def video(path: Path, n_frames: int, size=(48, 64)) -> Path:
        """Frame k is a flat image of intensity 10 k (identifiable after MJPEG compression)."""
        import cv2

        path.parent.mkdir(parents=True, exist_ok=True)
        w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (size[1], size[0]))
        assert w.isOpened(), "OpenCV cannot write MJPG videos here"
        for k in range(n_frames):
            w.write(np.full((size[0], size[1], 3), 10 * k, np.uint8))
        w.release()
        return path


@pytest.fixture
def writers() -> type[Writers]:
    return Writers
