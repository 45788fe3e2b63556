"""The uniform result every protocol produces (and the leaderboard stores).

The records live in :mod:`benchmark3dface.results` (plain Python, shared with the leaderboard);
this module re-exports them under their historical path. See that module for the fields.
"""

from ..results import DIRECTIONS, Curve, Direction, MetricValue, ProtocolResult

__all__ = ["DIRECTIONS", "Curve", "Direction", "MetricValue", "ProtocolResult"]
