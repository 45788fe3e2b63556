"""benchmark3dface: train, evaluate and compare 3D face reconstruction methods."""

__version__ = "0.1.0"
