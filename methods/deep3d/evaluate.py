"""True-error evaluation on synthetic data, and Deng's Table 4 (aggregation strategies).

The true error of a predicted mesh is the mean per-vertex Euclidean distance (mm) to the
ground-truth mesh of the same topology after a least-squares similarity alignment (Umeyama,
with scale) of the prediction onto the ground truth -- what a dense-correspondence protocol
measures when the prediction and the GT share the morphable model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from benchmark3dface.metrics.true_error import aligned_vertex_errors

from .networks import AGGREGATIONS, aggregate_identity

TABLE4_ROWS = ("per_image_mean", "shape_averaging", "S1", "S2", "S3", "S4")


def true_error(pred: Tensor, gt: Tensor) -> Tensor:
    """Mean per-vertex distance (mm) after similarity alignment of ``pred`` onto ``gt``
    (the protocol's :func:`~benchmark3dface.metrics.true_error.aligned_vertex_errors`).

    Args:
        pred, gt: (..., N, 3) vertices in mm, same topology.
    Returns:
        (...,) errors in mm, in ``pred``'s dtype (float64 internally).
    """
    return aligned_vertex_errors(pred, gt).mean(-1).to(pred.dtype)


def neutral_shape(facemodel, id_coeffs: Tensor) -> Tensor:
    """(..., K_id) identity coefficients -> (..., N, 3) neutral-expression shapes (mm)."""
    lead = id_coeffs.shape[:-1]
    flat = id_coeffs.reshape(-1, id_coeffs.shape[-1])
    zeros = flat.new_zeros(flat.shape[0], facemodel.layout.exp)
    return facemodel.shape(flat, zeros).reshape(*lead, -1, 3)


def gt_identity(batch, facemodel) -> Tensor:
    """GT identity coefficients (B, K_id) of a synthetic set / single batch (from ``coeffs``)."""
    if batch.coeffs is None:
        raise ValueError("aggregation evaluation needs synthetic samples with GT coefficients (coeffs)")
    c = batch.coeffs
    if c.shape[-1] != facemodel.layout.size:
        raise ValueError(f"GT coefficients have {c.shape[-1]} values, the face model needs {facemodel.layout.size}: "
                         f"the data was generated with another face model")
    ident = c[..., facemodel.layout.slice("id")]
    return ident[:, 0] if ident.dim() == 3 else ident


def table4_errors(alpha: Tensor, conf_elem: Tensor | None, conf_global: Tensor | None, gt_alpha: Tensor,
                  facemodel) -> dict[str, Tensor]:
    """Per-set errors (mm) of the Table 4 rows for one batch of sets.

    Args:
        alpha: (B, M, K) per-image identity coefficients (R-Net).
        conf_elem: (B, M, K) element-wise confidences (C-Net trained for S4; used by S2-S4).
        conf_global: (B, M, 1) global scores (C-Net trained for S1).
        gt_alpha: (B, K) GT identity coefficients.
    Returns:
        row -> (B,) errors; rows whose confidences are missing are left out.
    """
    b, m, _ = alpha.shape
    gt = neutral_shape(facemodel, gt_alpha.to(alpha))
    per_img = true_error(neutral_shape(facemodel, alpha), gt[:, None].expand(b, m, -1, -1)).mean(1)
    out = {"per_image_mean": per_img,
           "shape_averaging": true_error(neutral_shape(facemodel, aggregate_identity(alpha, None, "mean")), gt)}
    if conf_global is not None:
        out["S1"] = true_error(neutral_shape(facemodel, aggregate_identity(alpha, conf_global, "S1")), gt)
    if conf_elem is not None:
        for s in ("S2", "S3", "S4"):
            out[s] = true_error(neutral_shape(facemodel, aggregate_identity(alpha, conf_elem, s)), gt)
    return out


@torch.no_grad()
def aggregation_table(elementwise, batches: Iterable, global_score=None) -> dict[str, Any]:
    """Deng's Table 4 on synthetic identity sets.

    Args:
        elementwise: a :class:`~b3f_methods.deep3d.Deep3DCNet` whose C-Net has 80 outputs
            (trained with S4); its R-Net gives the per-image coefficients.
        batches: collated ``set`` batches with GT coefficients.
        global_score: optional Deep3DCNet with a 1-output C-Net (trained with S1; same R-Net).
    Returns:
        ``{"rows": {row: {"mean": mm, "std": mm}}, "per_set": {row: list of mm}, "sets": n}``.
    """
    fm = elementwise.facemodel
    per: dict[str, list[Tensor]] = {}
    for batch in batches:
        batch = elementwise.transfer_batch_to_device(batch, elementwise.device, 0)
        alpha, conf = elementwise.identity_and_confidence(batch.image)
        conf_g = None
        if global_score is not None:
            _, conf_g = global_score.identity_and_confidence(batch.image)
        rows = table4_errors(alpha, conf if conf.shape[-1] > 1 else None,
                             conf_g if conf_g is not None else (conf if conf.shape[-1] == 1 else None),
                             gt_identity(batch, fm), fm)
        for k, v in rows.items():
            per.setdefault(k, []).append(v.cpu())
    cat = {k: torch.cat(v) for k, v in per.items()}
    return {"rows": {k: {"mean": float(v.mean()), "std": float(v.std()) if v.numel() > 1 else 0.0}
                     for k, v in cat.items()},
            "per_set": {k: v.tolist() for k, v in cat.items()},
            "sets": int(next(iter(cat.values())).numel()) if cat else 0}


__all__ = ["AGGREGATIONS", "TABLE4_ROWS", "aggregation_table", "gt_identity", "neutral_shape", "table4_errors",
           "true_error"]
