"""Richardson et al. 2017 (seed paper 002): CoarseNet (``coarsenet``) and CoarseNet + FineNet
(``coarsefine``), and CoarseNet + the per-image Eq. 14 optimisation (``coarse_sfs``). See
docs/methods/richardson.md."""

from .coarsefine import CoarseFine
from .coarsenet import CoarseNet, CoarseNetBase
from .finenet import FineNet, sfs_energy, sfs_optimize, shading_problem
from .geometry import ParamLayout, WeakDecoder, grayscale, nominal_placement
from .sfs import CoarseSfS

__all__ = ["CoarseFine", "CoarseNet", "CoarseSfS", "FineNet", "sfs_energy", "sfs_optimize", "shading_problem", "CoarseNetBase", "ParamLayout", "WeakDecoder", "grayscale", "nominal_placement"]
