"""Deng et al. 2019 (seed paper 000): R-Net (``deep3d``) and C-Net (``deep3d_cnet``).

- :class:`Deep3D`: single-image R-Net with the weakly-supervised hybrid loss (photometric with
  skin attention, 68 landmarks, identity perceptual loss, regularisers).
- :class:`Deep3DCNet`: confidence subnet on frozen R-Net features, identity aggregation over
  image sets (strategies S1-S4 and shape averaging).
- :mod:`.evaluate`: true error on synthetic data and Deng's Table 4 rows.

Configs: ``configs/{quick,paper,cnet_quick,cnet_paper}.yaml`` in this package (package data; the
spec's ``configs`` paths are relative to this package directory), linked from
experiments/quick/deep3d*.yaml and experiments/paper/deep3d*.yaml. See docs/methods/deep3d.md.
"""

from .cnet import Deep3DCNet, load_rnet_checkpoint
from .evaluate import aggregation_table, table4_errors, true_error
from .losses import ABLATIONS, LOSS_PRESETS, REG_PRESETS, DengLoss, resolve_weights
from .method import Deep3D
from .networks import AGGREGATIONS, CNet, RNet, aggregate_identity, coefficient_output_scale

__all__ = ["ABLATIONS", "AGGREGATIONS", "CNet", "Deep3D", "Deep3DCNet", "DengLoss", "LOSS_PRESETS", "REG_PRESETS",
           "RNet", "aggregate_identity", "aggregation_table", "coefficient_output_scale", "load_rnet_checkpoint", "resolve_weights",
           "table4_errors", "true_error"]
