"""The method plugin contract: base class, declaration, output type and registry.

No concrete method lives here; built-in and third-party methods register through the
``benchmark3dface.methods`` entry-point group (see registry.py and docs/adding-a-method.md).
"""

from .base import ReconstructionMethod
from .reconstruction import FaceReconstruction, Reconstruction
from .registry import GROUP, get_method, installed_methods
from .spec import ANNOTATIONS, OUTPUTS, MethodSpec

__all__ = ["ANNOTATIONS", "GROUP", "OUTPUTS", "FaceReconstruction", "MethodSpec", "Reconstruction",
           "ReconstructionMethod", "get_method", "installed_methods"]
