"""WM3DR (seed paper 004): single-shot multi-face 3D reconstruction.

- :class:`WM3DR` (entry point ``wm3dr``, multi-face images): ResNet + stride-8 FPN-like neck,
  a centre heatmap and a 257-parameter map; one face per heatmap peak (3x3 max-pool above a
  threshold, no NMS), decoded under one global camera per image.
- :class:`WM3DRStage1` (``wm3dr_stage1``, single centred faces): stage 1 of the training.
- :mod:`.networks`: the network, peak decoding and the per-cell camera decoding (pure functions).

Configs: ``configs/{stage1_quick,quick,stage1_paper,paper}.yaml`` (package data), linked from
experiments/quick/wm3dr*.yaml and experiments/paper/wm3dr*.yaml. See docs/methods/wm3dr.md.
"""

from .method import PAPER_WEIGHTS, REG_WEIGHTS, TERMS, WM3DR, WM3DRStage1
from .networks import (WM3DRNet, cell_centers, cell_of, coeffs_to_raw, find_peaks, gather_cells,
                       raw_to_coeffs)

__all__ = ["PAPER_WEIGHTS", "REG_WEIGHTS", "TERMS", "WM3DR", "WM3DRNet", "WM3DRStage1", "cell_centers", "cell_of",
           "coeffs_to_raw", "find_peaks", "gather_cells", "raw_to_coeffs"]
