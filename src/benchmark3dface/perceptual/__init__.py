"""Identity (face-recognition) encoders shared by methods with a perceptual/identity loss.

One interface, :class:`IdentityEncoder`: images (B, 3, H, W) in [0, 1] plus optional 5-point
landmarks -> L2-normalised embeddings, with a differentiable 5-point alignment. Encoders:

- :class:`FaceNetEncoder` (facenet-pytorch InceptionResnetV1; weights from a local file),
- :class:`ArcFaceEncoder` (arcface_torch iresnet-50, state-dict compatible; local file),
- :class:`IdNet` (trained by the framework on synthetic identities, cached by config hash).

:func:`build_encoder` resolves a method's ``perceptual`` option string. Nothing is downloaded.
"""

from .align import ARCFACE_TEMPLATE_112, similarity_2d, template_for, warp_to_template
from .arcface import ArcFaceEncoder, IResNet
from .base import IdentityEncoder, MissingWeightsError, load_state_file
from .facenet import FaceNetEncoder
from .factory import PERCEPTUAL_KINDS, build_encoder, parse_spec
from .idnet import (IdNet, IdNetConfig, MarginSoftmax, cache_dir, cached_idnet, identity_crops, idnet_cache_path,
                    load_idnet, load_or_train_idnet, save_idnet, train_idnet, verification_report)

__all__ = [
    "ARCFACE_TEMPLATE_112", "ArcFaceEncoder", "FaceNetEncoder", "IResNet", "IdNet", "IdNetConfig",
    "IdentityEncoder", "MarginSoftmax", "MissingWeightsError", "PERCEPTUAL_KINDS", "build_encoder",
    "cache_dir", "cached_idnet", "identity_crops", "idnet_cache_path", "load_idnet", "load_or_train_idnet",
    "load_state_file", "parse_spec", "save_idnet", "similarity_2d", "template_for", "train_idnet",
    "verification_report", "warp_to_template",
]
