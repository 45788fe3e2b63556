"""Re-export of the output contract (now in :mod:`benchmark3dface.contracts`, which imports no
Lightning so protocols can use it); kept so ``benchmark3dface.methods.reconstruction`` imports
in plugins keep working."""

from ..contracts import FaceReconstruction, Reconstruction

__all__ = ["FaceReconstruction", "Reconstruction"]
