"""Alias of ``benchmarks/learnability.py`` (the learnability instrument; same arguments).

This script's earlier version measured wrongly: its ``lm68`` target read the coefficient head's
outputs 0-135 (identity and expression outputs too) and its test "explained variance" was
normalised by the variance of 64 *training* samples. See docs/learnability.md.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location("b3f_learnability", Path(__file__).with_name("learnability.py"))
learnability = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(learnability)
main = learnability.main

if __name__ == "__main__":
    main()
