"""The benchmark runner behind ``b3f benchmark``: train, evaluate, store, report."""

from .profile import BenchmarkProfile, load_profile
from .runner import BenchmarkRunner, MethodOutcome

__all__ = ["BenchmarkProfile", "BenchmarkRunner", "MethodOutcome", "load_profile"]
