"""Exceptions raised by dataset readers and image / annotation loaders.

Every error names the offending file and the problem, and carries a short machine-readable
``reason`` key (e.g. ``"unreadable_image"``) that non-strict readers use to count skipped
samples per reason.
"""

from __future__ import annotations

from pathlib import Path

#: Reason keys used across the readers (a reader may add its own).
REASONS = (
    "missing_file",
    "unreadable_image",
    "unsupported_image",
    "unreadable_annotation",
    "missing_key",
    "bad_shape",
    "non_finite",
    "bad_value",
    "unreadable_mesh",
    "unreadable_video",
    "no_face",
    "too_small",
    "landmarks_outside",
    "bad_landmarks",
)


class DataError(Exception):
    """A sample (or a whole dataset) cannot be read.

    Args:
        path: the file or folder at fault.
        problem: what is wrong, in words (the message is ``"{path}: {problem}"``).
        reason: short key for per-reason counters (see :data:`REASONS`).
    """

    def __init__(self, path: str | Path, problem: str, reason: str = "bad_value") -> None:
        self.path = str(path)
        self.problem = problem
        self.reason = reason
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):  # keep path/problem/reason through pickling (DataLoader workers)
        return (type(self), (self.path, self.problem, self.reason))


class MissingFileError(DataError, FileNotFoundError):
    """A required file or folder is absent. ``hint`` says what it is and where it comes from."""

    def __init__(self, path: str | Path, problem: str = "file not found", hint: str = "",
                 reason: str = "missing_file") -> None:
        self.hint = hint
        full = f"{problem}. {hint}" if hint else problem
        DataError.__init__(self, path, full, reason)
        self.problem = problem

    def __reduce__(self):
        return (type(self), (self.path, self.problem, self.hint, self.reason))
