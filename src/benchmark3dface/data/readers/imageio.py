"""Image and video loading with deliberate colour / bit-depth handling.

Rules (documented in datasets/*.md and enforced here; nothing is mis-read silently):

- Output is always ``uint8`` ``(H, W, 3)`` RGB.
- Grayscale (``L``, ``1``) is replicated to three channels.
- Images with alpha (``RGBA``, ``LA``, ``PA``, palette with transparency) are composited over
  **black**: ``rgb * alpha / 255`` rounded, so transparent background never shows stale colour.
- 16-bit images (PNG grayscale / RGB / RGBA, 16-bit TIFF grayscale) are mapped to 8 bits with
  ``round(x / 257)``, the exact inverse of the usual 8->16-bit expansion ``x * 257``
  (0 -> 0, 65535 -> 255). Pillow would silently keep only the high byte of 16-bit RGB PNGs, so
  those are decoded with OpenCV instead.
- Float images (mode ``F``) and 32-bit integer images that do not fit in 16 bits are rejected.
- Truncated or undecodable files raise :class:`DataError` (``reason="unreadable_image"``);
  Pillow's global ``LOAD_TRUNCATED_IMAGES`` is forced off while decoding.
- EXIF orientation is ignored unless ``exif_transpose=True`` (annotations of the datasets refer
  to the stored pixel grid).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError
from torch import Tensor

from .errors import DataError, MissingFileError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mjpg", ".mjpeg", ".mp4", ".avi", ".mov", ".mkv", ".mpg", ".mpeg", ".webm")


@contextmanager
def _strict_truncation():
    old = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old


def sixteen_to_eight(a: np.ndarray) -> np.ndarray:
    """Map 16-bit values to 8 bits with ``round(x / 257)`` (exact inverse of ``x * 257``)."""
    return np.floor(a.astype(np.float64) / 257.0 + 0.5).clip(0, 255).astype(np.uint8)


def composite_over_black(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``uint8`` RGB composited over black with an ``uint8`` alpha: ``round(rgb * a / 255)``."""
    out = rgb.astype(np.float32) * (alpha.astype(np.float32)[..., None] / 255.0)
    return np.floor(out + 0.5).clip(0, 255).astype(np.uint8)


def _png_bit_depth(path: Path) -> int | None:
    """Bit depth from a PNG IHDR chunk, or None when the file is not a PNG."""
    try:
        with open(path, "rb") as f:
            head = f.read(26)
    except OSError:
        return None
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return int(head[24])


def _from_array_any(a: np.ndarray, path: Path) -> np.ndarray:
    """uint8/uint16 array with 1, 3 (RGB order) or 4 (RGBA) channels -> uint8 RGB."""
    if a.dtype == np.uint16:
        a = sixteen_to_eight(a)
    elif a.dtype != np.uint8:
        raise DataError(path, f"unsupported pixel type {a.dtype}", "unsupported_image")
    if a.ndim == 2:
        return np.repeat(a[..., None], 3, axis=2)
    if a.ndim == 3 and a.shape[2] == 1:
        return np.repeat(a, 3, axis=2)
    if a.ndim == 3 and a.shape[2] == 2:
        return np.repeat(composite_over_black(a[..., :1], a[..., 1])[..., :1], 3, axis=2)
    if a.ndim == 3 and a.shape[2] == 3:
        return np.ascontiguousarray(a)
    if a.ndim == 3 and a.shape[2] == 4:
        return composite_over_black(a[..., :3], a[..., 3])
    raise DataError(path, f"unsupported image array shape {a.shape}", "unsupported_image")


def pil_to_rgb_uint8(im: Image.Image, path: str | Path = "<image>") -> np.ndarray:
    """Convert a decoded Pillow image to ``uint8`` ``(H, W, 3)`` RGB under the module's rules."""
    path = Path(path)
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im, dtype=np.uint8).copy()
    if mode in ("L", "1"):
        return _from_array_any(np.asarray(im.convert("L"), dtype=np.uint8), path)
    if mode in ("RGBA", "LA", "RGBa", "La", "PA") or (mode == "P" and "transparency" in im.info):
        return _from_array_any(np.asarray(im.convert("RGBA"), dtype=np.uint8), path)
    if mode in ("P", "CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    if mode.startswith("I;16"):
        return _from_array_any(np.asarray(im, dtype=np.uint16), path)
    if mode == "I":
        a = np.asarray(im, dtype=np.int64)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise DataError(path, "32-bit integer image with values outside [0, 65535]; convert it "
                            "to 8-bit RGB first", "unsupported_image")
        return _from_array_any(a.astype(np.uint16), path)
    raise DataError(path, f"unsupported image mode {mode!r} (float or exotic pixel format); "
                    "convert it to 8-bit RGB first", "unsupported_image")


def load_image(path: str | Path, *, exif_transpose: bool = False) -> np.ndarray:
    """Read an image file as ``uint8`` ``(H, W, 3)`` RGB (see the module rules).

    Raises:
        MissingFileError: the file does not exist.
        DataError: truncated / undecodable file (``unreadable_image``) or a pixel format that
            cannot be converted without guessing (``unsupported_image``).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "image file not found")
    if _png_bit_depth(path) == 16:
        import cv2

        a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if a is None:
            raise DataError(path, "cannot decode 16-bit PNG", "unreadable_image")
        if a.ndim == 3 and a.shape[2] == 3:
            a = a[..., ::-1]
        elif a.ndim == 3 and a.shape[2] == 4:
            a = a[..., [2, 1, 0, 3]]
        return _from_array_any(np.ascontiguousarray(a), path)
    try:
        with _strict_truncation(), Image.open(path) as im:
            im.load()
            if exif_transpose:
                im = ImageOps.exif_transpose(im)
            out = pil_to_rgb_uint8(im, path)
    except DataError:
        raise
    except UnidentifiedImageError:
        raise DataError(path, "not a recognised image file (corrupt or wrong extension)",
                        "unreadable_image") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise DataError(path, f"cannot decode image ({e})", "unreadable_image") from None
    if out.shape[0] == 0 or out.shape[1] == 0:
        raise DataError(path, "empty image", "unreadable_image")
    return out


def to_tensor(img: np.ndarray) -> Tensor:
    """``uint8`` ``(H, W, 3)`` -> float ``(3, H, W)`` in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)


def as_uint8_hwc(image) -> np.ndarray:
    """Accept a Pillow image, ``uint8`` HxWx3 array, or float ``(3, H, W)`` tensor in [0, 1];
    return ``uint8`` ``(H, W, 3)`` RGB."""
    if isinstance(image, Image.Image):
        return pil_to_rgb_uint8(image)
    if isinstance(image, Tensor):
        t = image.detach().cpu()
        if t.ndim != 3 or t.shape[0] not in (1, 3):
            raise ValueError(f"expected a (3, H, W) image tensor, got {tuple(t.shape)}")
        if t.dtype == torch.uint8:
            a = t.permute(1, 2, 0).numpy()
        else:
            a = (t.float().clamp(0, 1) * 255.0 + 0.5).floor().to(torch.uint8).permute(1, 2, 0).numpy()
        return _from_array_any(np.ascontiguousarray(a), Path("<tensor>"))
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ValueError(f"expected a uint8 HxWx3 array, got dtype {a.dtype}")
    return _from_array_any(a, Path("<array>"))


def as_float_chw(image) -> Tensor:
    """Accept the same inputs as :func:`as_uint8_hwc`; return float ``(3, H, W)`` in [0, 1]
    (float tensors are passed through untouched)."""
    if isinstance(image, Tensor) and image.is_floating_point():
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"expected a (3, H, W) image tensor, got {tuple(image.shape)}")
        return image
    return to_tensor(as_uint8_hwc(image))


def list_images(folder: Path, recursive: bool = True) -> list[Path]:
    """Image files under ``folder`` (sorted, hidden files and folders skipped)."""
    it = folder.rglob("*") if recursive else folder.glob("*")
    out = [p for p in it if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
           and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    return sorted(out)


def video_frame_count(path: str | Path) -> int:
    """Number of frames in a video file (container metadata, else counted by decoding)."""
    import cv2

    path = Path(path)
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DataError(path, "cannot open video (unsupported codec/container, or not a video); "
                        "extract its frames to an image folder instead", "unreadable_video")
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if n > 0:
            return n
        n = 0
        while cap.grab():
            n += 1
        return n
    finally:
        cap.release()


def read_video_frames(path: str | Path, indices: list[int]) -> list[np.ndarray]:
    """Decode the frames at ``indices`` (sorted, 0-based) as ``uint8`` RGB arrays.

    Frames are read sequentially (``grab`` for skipped frames, ``retrieve`` for kept ones),
    which is exact even for containers without reliable seeking (raw MJPEG).
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "video file not found")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DataError(path, "cannot open video (unsupported codec/container); extract its "
                        "frames to an image folder instead", "unreadable_video")
    want = sorted(set(int(i) for i in indices))
    out: dict[int, np.ndarray] = {}
    try:
        k = 0
        for target in want:
            while k <= target:
                if not cap.grab():
                    raise DataError(path, f"video ended at frame {k}, frame {target} requested",
                                    "unreadable_video")
                if k == target:
                    ok, frame = cap.retrieve()
                    if not ok or frame is None:
                        raise DataError(path, f"cannot decode frame {k}", "unreadable_video")
                    out[k] = np.ascontiguousarray(frame[..., ::-1])
                k += 1
    finally:
        cap.release()
    return [out[int(i)] for i in indices]
