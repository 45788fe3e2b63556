"""Evaluation protocols (torchmetrics ``Metric``s) and their geometry.

Every protocol consumes ``Reconstruction``s (methods/reconstruction.py) and ground truth
(``Sample`` fields), never anything method-specific, and returns a ``ProtocolResult``:
named numbers (``MetricValue``: value, std, n, n_failed, unit), per-sample values keyed by
sample id, failures with reasons, and curves (CED). See docs/protocols.md.
"""

from __future__ import annotations

from .base import ProtocolMetric, as_samples, pair_up
from .depth import DepthError, common_valid_mask, compare_depth, compare_depth_methods, render_depth
from .detection import FaceDetection
from .fidelity import Fidelity, fidelity_report, format_fidelity, metric_fidelity
from .geometry import NOW7_FROM_IBUG68
from .matching import MatchRule, iter_scored_faces, match_faces
from .nme import AFLW2000NME, AFLW2000DenseNME, nme
from .result import Curve, MetricValue, ProtocolResult
from .scan import MICCRMSE, NoWMetrical, NoWScanToMesh
from .true_error import TrueError

#: protocol name -> class (what the runner / CLI / leaderboard refer to)
PROTOCOLS: dict[str, type[ProtocolMetric]] = {
    cls.name: cls
    for cls in (MICCRMSE, NoWScanToMesh, NoWMetrical, AFLW2000NME, AFLW2000DenseNME, DepthError, TrueError, FaceDetection)
}


def build_protocol(name: str, **options) -> ProtocolMetric:
    """A protocol by name (see ``PROTOCOLS``) with its options."""
    if name not in PROTOCOLS:
        raise KeyError(f"unknown protocol {name!r}; known: {sorted(PROTOCOLS)}")
    return PROTOCOLS[name](**options)


__all__ = [
    "AFLW2000NME",
    "MICCRMSE",
    "NOW7_FROM_IBUG68",
    "PROTOCOLS",
    "AFLW2000DenseNME",
    "Curve",
    "DepthError",
    "FaceDetection",
    "Fidelity",
    "MatchRule",
    "MetricValue",
    "NoWMetrical",
    "NoWScanToMesh",
    "ProtocolMetric",
    "ProtocolResult",
    "TrueError",
    "as_samples",
    "build_protocol",
    "common_valid_mask",
    "compare_depth",
    "compare_depth_methods",
    "fidelity_report",
    "format_fidelity",
    "iter_scored_faces",
    "match_faces",
    "metric_fidelity",
    "nme",
    "pair_up",
    "render_depth",
]
