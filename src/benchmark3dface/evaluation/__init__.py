"""Fair, general evaluation: input-only views, landmark sources, benchmark datasets and
protocols as plugins, and the one evaluation loop (see loop.py) shared by ``b3f benchmark``,
``b3f evaluate`` and ``ReconstructionMethod.test_step``."""

from .inputs import INPUTS, GroundTruthAccessError, InputView, check_inputs, input_view, uses_ground_truth
from .landmarks import ROW_SUFFIX, SOURCES, build_landmark_source

__all__ = ["INPUTS", "ROW_SUFFIX", "SOURCES", "GroundTruthAccessError", "InputView", "build_landmark_source",
           "check_inputs", "input_view", "uses_ground_truth"]
