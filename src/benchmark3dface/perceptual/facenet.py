"""FaceNet identity encoder (Deng'19 paper's choice): facenet-pytorch's InceptionResnetV1.

The network is always constructed with ``pretrained=None`` (facenet-pytorch would download its
weights otherwise) and loaded from a local state-dict file, e.g. the VGGFace2 weights
``20180402-114759-vggface2.pt`` distributed with facenet-pytorch (its ``logits.*`` classifier
keys are ignored). Input: 160x160 crops, normalised as ``(255 x - 127.5) / 128``; the crop is a
5-point similarity warp onto the ArcFace template scaled to 160 px (facenet-pytorch crops
MTCNN boxes instead; the scale is comparable).
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from .align import template_for
from .base import IdentityEncoder, load_matching, load_state_file

FACENET_SOURCE = ("Get the InceptionResnetV1 state dict from facenet-pytorch's releases "
                  "(20180402-114759-vggface2.pt) and pass its local path as 'facenet:<path>'.")


class FaceNetEncoder(IdentityEncoder):
    """FaceNet (InceptionResnetV1, 512-d) with weights from a local file.

    Args:
        weights: path of the state dict; required unless ``random_init`` (tests).
    """

    embedding_dim = 512

    def __init__(self, weights: str | Path | None = None, random_init: bool = False) -> None:
        super().__init__(input_size=160, template=template_for(160))
        if weights is None and not random_init:
            raise ValueError(f"FaceNetEncoder needs a weights file. {FACENET_SOURCE}")
        state = None
        if weights is not None:  # check the file before building the network
            state = load_state_file(weights, "FaceNet (InceptionResnetV1)", FACENET_SOURCE)
        from facenet_pytorch import InceptionResnetV1

        self.net = InceptionResnetV1(pretrained=None, classify=False)
        if state is not None:
            load_matching(self.net, state, weights, "facenet-pytorch InceptionResnetV1", ignore_prefixes=("logits.",))

    def normalize_input(self, crops: Tensor) -> Tensor:
        return (crops * 255.0 - 127.5) / 128.0

    def embed(self, x: Tensor) -> Tensor:
        return self.net(x)
