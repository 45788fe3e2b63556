"""Weighted sum of named loss terms, with per-term values for logging.

A method builds ``terms = {"photo": ..., "landmark": ...}`` and a weight dict (from its
config) and calls ``weighted_sum(terms, weights)`` or ``LossWeights(weights)(terms)``.  Terms
whose weight is 0 are skipped (not added, not logged); ``LossWeights.active(name)`` lets the
caller skip computing them at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor


class WeightedLoss(NamedTuple):
    """``total``: the weighted sum (in the graph); ``terms``: unweighted values and
    ``weighted``: weight x value, both detached, for logging (active terms only)."""

    total: Tensor
    terms: dict[str, Tensor]
    weighted: dict[str, Tensor]


def weighted_sum(terms: Mapping[str, Tensor], weights: Mapping[str, float],
                 strict: bool = False) -> WeightedLoss:
    """``total = sum_name weights[name] * terms[name]`` over terms with a non-zero weight.

    Args:
        terms: scalar loss tensors by name.
        weights: weights by name.  Every term needs a weight (a missing weight is an error,
            which catches misspelt names); a weight without a term is fine (a term not computed
            this step) unless ``strict``.
    Raises:
        KeyError for a term without a weight (or, if ``strict``, a non-zero weight without a
        term); ValueError for a non-scalar term.
    """
    missing = [n for n in terms if n not in weights]
    if missing:
        raise KeyError(f"no weight for loss term(s) {missing}; known weights: {sorted(weights)}")
    if strict:
        absent = [n for n, w in weights.items() if w != 0 and n not in terms]
        if absent:
            raise KeyError(f"loss term(s) {absent} have non-zero weights but were not computed; "
                           f"computed: {sorted(terms)}")
    total: Tensor | None = None
    logged: dict[str, Tensor] = {}
    weighted: dict[str, Tensor] = {}
    for name, value in terms.items():
        w = float(weights[name])
        if w == 0.0:
            continue
        if value.dim() != 0:
            raise ValueError(f"loss term {name!r} must be a scalar tensor, got shape {tuple(value.shape)}")
        contrib = w * value
        total = contrib if total is None else total + contrib
        logged[name] = value.detach()
        weighted[name] = contrib.detach()
    if total is None:
        ref = next(iter(terms.values()), None)
        total = torch.zeros((), device=None if ref is None else ref.device)
    return WeightedLoss(total, logged, weighted)


@dataclass(frozen=True)
class LossWeights:
    """Named loss weights (e.g. Deng'19 ``{"photo": 1.9, "landmark": 1.6e-3, ...}``)."""

    weights: Mapping[str, float] = field(default_factory=dict)

    def active(self, name: str) -> bool:
        """True when ``name`` has a non-zero weight (compute the term only then)."""
        return float(self.weights.get(name, 0.0)) != 0.0

    def __getitem__(self, name: str) -> float:
        return float(self.weights[name])

    def __call__(self, terms: Mapping[str, Tensor], strict: bool = False) -> WeightedLoss:
        return weighted_sum(terms, self.weights, strict)
