"""Built-in benchmark3dface method plugins (one sub-package per method)."""
