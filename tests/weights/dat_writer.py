"""A minimal writer of dlib's serialisation for the reader tests (written from the format
description in docs/weights.md, independently of the reader): integers, floats, strings, bools,
tensors, alias tensors and layers."""

from __future__ import annotations

import numpy as np


def w_int(v: int) -> bytes:
    mag = abs(int(v))
    body = mag.to_bytes((mag.bit_length() + 7) // 8, "little") if mag else b""
    return bytes([len(body) | (0x80 if v < 0 else 0)]) + body


def w_float(mantissa: int, exponent: int) -> bytes:
    return w_int(mantissa) + w_int(exponent)


def w_str(s: str) -> bytes:
    return w_int(len(s)) + s.encode("ascii")


def w_bool(b: bool) -> bytes:
    return b"1" if b else b"0"


def w_tensor(arr: np.ndarray | None, shape: tuple[int, int, int, int] | None = None) -> bytes:
    if arr is None:
        return w_int(2) + b"".join(w_int(0) for _ in range(4))
    shape = shape or (1, arr.size, 1, 1)
    return w_int(2) + b"".join(w_int(s) for s in shape) + np.asarray(arr, "<f4").tobytes()


def w_alias(shape: tuple[int, int, int, int]) -> bytes:
    return w_int(1) + b"".join(w_int(s) for s in shape)


ONE = w_float(1, 0)
TAIL = w_bool(True) + w_bool(True) + w_bool(False) + w_tensor(None) * 3


def con(params: np.ndarray, o: int, c: int, k: int, stride: int, pad: int) -> bytes:
    """A ``con_4`` layer (weights OIHW then bias in ``params``)."""
    return (w_str("con_4") + w_tensor(params) + w_int(o) + w_int(k) + w_int(k) + w_int(stride) * 2
            + w_int(pad) * 2 + w_alias((o, c, k, k)) + w_alias((1, o, 1, 1)) + ONE * 3 + w_float(0, 0))


def affine(params: np.ndarray, c: int) -> bytes:
    return w_str("affine_") + w_tensor(params) + w_alias((1, c, 1, 1)) * 2 + w_int(0)


def pool(kind: str, k: int, stride: int) -> bytes:
    return w_str(f"{kind}_2") + w_int(k) * 2 + w_int(stride) * 2 + w_int(0) * 2


def fc(params: np.ndarray, n_out: int, n_in: int) -> bytes:
    """An ``fc_2`` layer without bias (weights stored (in, out))."""
    return (w_str("fc_2") + w_int(n_out) + w_int(n_in) + w_tensor(params) + w_alias((n_in, n_out, 1, 1))
            + w_alias((0, 0, 0, 0)) + w_int(1) + ONE * 3 + w_float(0, 0))


def header(n_wrappers: int, mean=((30722, -8), (29952, -8), (26700, -8)), size: int = 150) -> bytes:
    """Version, loss_metric_2 (margin 0.04, threshold 0.6 as dlib stores them), wrapper
    versions (1 / 2 ..., the last 3), the input layer. ``mean``: (mantissa, exponent) triples."""
    out = w_int(1) + w_str("loss_metric_2") + w_float(10737418, -28) + w_float(10066330, -24)
    out += b"".join(w_int(2 if i % 3 else 1) for i in range(n_wrappers - 1)) + w_int(3)
    out += w_str("input_rgb_image_sized") + b"".join(w_float(m, e) for m, e in mean) + w_int(size) * 2
    return out


def layer(body: bytes, first: bool = False) -> bytes:
    """A layer's fields + the three bools and three (empty) tensors; the first layer after the
    input carries the sample expansion factor (wrapper version 3)."""
    return body + TAIL + (w_int(1) if first else b"")
