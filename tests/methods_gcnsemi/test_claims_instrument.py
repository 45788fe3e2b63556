"""methods/gcnsemi/claims.py: the identity-verification instrument on known answers."""

from __future__ import annotations

import torch

from b3f_methods.gcnsemi.claims import verification_auc


def _codes(separable: bool) -> torch.Tensor:
    """4 people x 3 images: one axis per person (separable) or the people's axes shuffled
    across their images (every pair as alike as any other)."""
    eye = torch.eye(4)
    codes = eye.repeat_interleave(3, 0)
    if not separable:
        codes = eye[torch.tensor([0, 1, 2, 3] * 3)]  # image k of person p gets axis k % 4
    return codes + 0.01 * torch.arange(12.0)[:, None] / 12  # break exact ties a little


def test_auc_is_one_for_separable_codes_and_low_when_identity_is_mixed():
    auc, per_set = verification_auc(_codes(True), 3)
    assert auc == 1.0 and per_set.shape == (4,) and torch.all(per_set == 1.0)
    auc_mixed, per_mixed = verification_auc(_codes(False), 3)
    # mixed: the positive pairs (same person) never share an axis, some negatives do
    assert auc_mixed < 0.5 and torch.all(per_mixed < 1.0)


def test_auc_agrees_with_the_pair_counting_definition():
    torch.manual_seed(0)
    codes = torch.randn(15, 6)
    auc, _ = verification_auc(codes, 3)
    z = torch.nn.functional.normalize(codes, dim=-1)
    person = torch.arange(5).repeat_interleave(3)
    pos, neg = [], []
    for i in range(15):
        for j in range(i + 1, 15):
            (pos if person[i] == person[j] else neg).append(float(z[i] @ z[j]))
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
    assert abs(auc - wins) < 1e-6
