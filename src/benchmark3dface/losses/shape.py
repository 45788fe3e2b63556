"""3D shape and pose supervision: Richardson'17 geometry MSE (GMSE) and pose MSE; Gao et al.
shape L1 on labelled samples and the pairwise (swapped-expression) shape loss.

Vertices are ``(B, N, 3)`` in millimetres (model frame); a basis is either a matrix
``(3N, K)`` (rows ``x0, y0, z0, x1, ...``) or a tensor ``(K, N, 3)``, in mm per unit coefficient.
"""

from __future__ import annotations

from torch import Tensor

from .common import check_same_shape, check_shape, zero_loss


def _basis_matrix(basis: Tensor) -> Tensor:
    """``(3N, K)`` or ``(K, N, 3)`` -> ``(K, 3N)`` (a view where possible)."""
    if basis.dim() == 2:
        return basis.transpose(0, 1)
    if basis.dim() == 3 and basis.shape[-1] == 3:
        return basis.reshape(basis.shape[0], -1)
    raise ValueError(f"basis: expected (3N, K) or (K, N, 3), got {tuple(basis.shape)}")


def basis_gram(basis: Tensor) -> Tensor:
    """Gram matrix ``B^T B`` ``(K, K)`` of a ``(3N, K)`` / ``(K, N, 3)`` basis (mm^2): precompute
    once so that ``gmse_loss(..., gram=G)`` costs ``O(K^2)`` per sample instead of ``O(K N)``."""
    m = _basis_matrix(basis)
    return m @ m.transpose(0, 1)


def gmse_loss(pred: Tensor, target: Tensor, basis: Tensor | None = None,
              gram: Tensor | None = None) -> Tensor:
    """Richardson'17 geometry MSE ``||B (a_hat - a)||^2`` for coefficient vectors.

    The vertex offsets are never formed when ``gram = B^T B`` is given
    (``d^T G d``); otherwise one ``(B, K) @ (K, 3N)`` product is evaluated.

    Args:
        pred, target: ``(B, K)`` coefficients (e.g. identity+expression, 200+84 in Richardson).
        basis: ``(3N, K)`` or ``(K, N, 3)`` basis (mm per unit coefficient).
        gram: ``(K, K)`` precomputed ``basis_gram(basis)``; takes precedence over ``basis``.
    Returns:
        Scalar: per-sample squared vertex error summed over the 3N coordinates (mm^2),
        averaged over the batch.  Divide by N for a per-vertex mean squared error.
    """
    check_shape("pred", pred, (None, None))
    check_same_shape("pred", pred, "target", target)
    d = pred - target
    k = d.shape[1]
    if gram is not None:
        check_shape("gram", gram, (k, k))
        return ((d @ gram.to(d.dtype)) * d).sum(-1).mean()
    if basis is None:
        raise ValueError("gmse_loss needs `basis` or `gram`")
    m = _basis_matrix(basis)
    if m.shape[0] != k:
        raise ValueError(f"basis has {m.shape[0]} components, coefficients have {k}")
    return ((d @ m.to(d.dtype)) ** 2).sum(-1).mean()


def pose_mse_loss(pred: Tensor, target: Tensor, weights: Tensor | None = None) -> Tensor:
    """Pose parameter MSE (Richardson'17): ``mean_{b,k} w_k (p_hat - p)^2``.

    Args:
        pred, target: ``(B, P)`` pose parameters (angles in radians, translations, scale).
        weights: optional ``(P,)`` per-parameter weights (units differ across parameters).
    """
    check_shape("pred", pred, (None, None))
    check_same_shape("pred", pred, "target", target)
    d2 = (pred - target) ** 2
    if weights is not None:
        check_shape("weights", weights, (pred.shape[1],))
        d2 = d2 * weights.to(d2.dtype)
    return d2.mean()


def shape_l1_loss(pred: Tensor, target: Tensor, labelled: Tensor | None = None,
                  target_index: Tensor | None = None) -> Tensor:
    """Gao et al. shape loss (Eq. 7): ``||s_hat - s[:, T]||_1`` on labelled samples only.

    Args:
        pred: ``(B, N, 3)`` predicted vertices (mm, model frame, template topology).
        target: ``(B, M, 3)`` ground-truth vertices (mm); ``M = N`` unless ``target_index``.
        labelled: ``(B,)`` bool: which samples carry a ground-truth shape (semi-supervised
            batches); None = all.
        target_index: ``(N,)`` long: the template's vertices in the target topology (``T``).
    Returns:
        Scalar: mean absolute coordinate error over labelled samples, vertices and xyz (mm);
        0 (still in the graph) when no sample is labelled.
    """
    check_shape("pred", pred, (None, None, 3))
    check_shape("target", target, (pred.shape[0], None, 3))
    if target_index is not None:
        target = target[:, target_index.long()]
    check_same_shape("pred", pred, "target (after target_index)", target)
    err = (pred - target).abs().mean((1, 2))  # (B,)
    if labelled is None:
        return err.mean()
    check_shape("labelled", labelled, (pred.shape[0],))
    w = labelled.to(err.dtype)
    return (err * w).sum() / w.sum().clamp_min(1.0) + zero_loss(err)


def pairwise_shape_loss(decoded_swapped: Tensor, target_swapped: Tensor,
                        labelled: Tensor | None = None, target_index: Tensor | None = None) -> Tensor:
    """Gao et al. pairwise shape loss (Eq. 8): L1 between the decoder's shape for
    ``[c_id,A, c_exp,B]`` and the 3DMM shape ``s_AB = mean + A_id alpha_id,A + A_exp alpha_exp,B``.

    The caller prepares both (decoding swapped codes, building ``s_AB`` from the labels); this
    is ``shape_l1_loss`` on them.  Arguments as in ``shape_l1_loss`` (``labelled`` marks pairs
    whose two samples are both labelled).
    """
    return shape_l1_loss(decoded_swapped, target_swapped, labelled, target_index)
