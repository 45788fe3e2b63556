"""DF-MVR (Zhao et al., seed 001): multi-view 3D face reconstruction (``dfmvr``).

- :mod:`.networks`: involution (plain PyTorch, ``unfold``), RedNet-26/38/50, Tri-UNet (three
  unshared encoders, attention-gated skips, fused bottleneck), the Table IV alternatives (one
  U-Net on stacked views, plain CNN) and the coefficient heads (shared + per-view pose).
- :mod:`.method`: :class:`DFMVR` -- losses (photometric on the parse-weighted region, parse
  cross-entropy on rendered labels, 2D landmarks, aligned 101-point 3D landmarks, regulariser;
  ``paper`` / ``code`` presets), single-view training mode, ``reconstruct`` for triplets and
  single images.
- :mod:`.landmarks101`: the 101-point 3D landmark set for any face model.
- :mod:`.parse_input`: the face-parse input channel drawn from the 68 input landmarks.

Configs: ``configs/quick.yaml`` and ``configs/paper.yaml`` (package data), linked from
experiments/quick/dfmvr.yaml and experiments/paper/dfmvr.yaml; the Table IV variants are
overrides of the quick one (experiments/quick/dfmvr_v{1..6}.yaml, ``__base__``). See
docs/methods/dfmvr.md.
"""

from .landmarks101 import ALIGN7, NUM_POINTS, landmarks101
from .method import DFMVR, LOSS_PRESETS, resolve_loss
from .networks import (
    AttentionGate,
    Bottleneck,
    CoefficientHeads,
    Involution,
    PlainCNN,
    RedNet,
    StackedUNet,
    TriUNet,
)
from .parse_input import one_hot_parse, parse_from_lm68

__all__ = ["ALIGN7", "AttentionGate", "Bottleneck", "CoefficientHeads", "DFMVR", "Involution", "LOSS_PRESETS",
           "NUM_POINTS", "PlainCNN", "RedNet", "StackedUNet", "TriUNet", "landmarks101", "one_hot_parse",
           "parse_from_lm68", "resolve_loss"]
