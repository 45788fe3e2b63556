"""Richardson et al. 2017 (seed paper 002): CoarseNet (``coarsenet``) and CoarseNet + FineNet
(``coarsefine``). See docs/methods/richardson.md."""

from .coarsefine import CoarseFine
from .coarsenet import CoarseNet, CoarseNetBase
from .finenet import FineNet, sfs_energy, sfs_optimize, shading_problem
from .geometry import ParamLayout, WeakDecoder, grayscale, nominal_placement

__all__ = ["CoarseFine", "CoarseNet", "FineNet", "sfs_energy", "sfs_optimize", "shading_problem", "CoarseNetBase", "ParamLayout", "WeakDecoder", "grayscale", "nominal_placement"]
