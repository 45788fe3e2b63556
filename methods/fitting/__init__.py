"""Optimisation-based fitting baseline (entry point ``fitting``): per-image analysis-by-synthesis
with Deng'19's losses. See method.py and docs/methods/fitting.md."""

from .method import AGGREGATES, SHARED_GROUPS, SKIN_SOURCES, Fitting
from .multiview import FittingMV, SetAverage
from .objective import DEFAULT_REG_WEIGHTS, DEFAULT_WEIGHTS, TERMS
from .optimize import OPTIMIZERS, PARAM_SCALES, Stage, run_stage

__all__ = [
           "AGGREGATES",
           "DEFAULT_REG_WEIGHTS",
           "DEFAULT_WEIGHTS",
           "OPTIMIZERS",
           "PARAM_SCALES",
           "SHARED_GROUPS",
           "SKIN_SOURCES",
           "TERMS",
           "Fitting",
           "FittingMV",
           "SetAverage",
           "Stage",
           "run_stage",
]
