"""Protocol ground truth derived from a batch (synthetic data): what the protocols score against.

- :func:`with_identity_gt`: a *set* sample's GT is its identity with a neutral expression
  (Deng's Table 4 protocol: the views differ in expression).
- :func:`with_gt_scans`: the GT mesh doubles as a "scan" (and its 7 NoW landmarks and nose tip
  come from the GT topology) so the scan protocols run on synthetic data.

Both only ever go to protocols, never to a method (evaluation/inputs.py).
"""

from __future__ import annotations

import torch


def with_identity_gt(batch, facemodel) -> list:
    """Per-sample views of a synthetic *set* batch whose GT mesh is the set's identity with a
    neutral expression (model frame, mm): what a set method's aggregated identity is scored
    against (Deng's Table 4 protocol), since the views differ in expression."""
    from ..metrics import as_samples

    out = []
    for s in as_samples(batch):
        if s.coeffs is not None:
            lay = facemodel.layout
            ident = s.coeffs.reshape(-1, lay.size)[0, lay.slice("id")].to(facemodel.mean_shape)
            s.vertices = facemodel.shape(ident[None], torch.zeros(1, lay.exp, dtype=ident.dtype,
                                                                   device=ident.device))[0].to(s.coeffs.device)
        out.append(s)
    return out


def with_gt_scans(batch, stride: int = 1) -> list:
    """Per-sample views of a synthetic batch whose "scan" is the GT mesh (model frame, mm):
    scan vertices/triangles, the 7 NoW landmarks and the nose tip taken from the GT topology.
    ``stride`` keeps every stride-th vertex as a scan point (a sparser "scanner"). Samples that
    already carry a scan are left as they are. This is what lets the scan-based protocols (and
    their metric fidelity against the true error) run on synthetic data."""
    from ..metrics import NOW7_FROM_IBUG68, as_samples

    out = []
    for s in as_samples(batch):
        # (N, 3): one scan; (U, N, 3) (per view / per face GT meshes): one scan per unit, scored
        # per view / per matched face by the scan protocols (metrics/scan.py)
        if s.scan_vertices is None and s.vertices is not None and s.vertices.ndim in (2, 3):
            lm = s.vertices[..., s.landmark_indices.long(), :] if s.landmark_indices is not None else None
            s.scan_vertices = s.vertices[..., ::stride, :].contiguous()
            s.scan_triangles = s.triangles if stride == 1 else None
            if lm is not None:
                s.scan_landmarks7 = lm[..., torch.as_tensor(NOW7_FROM_IBUG68, device=lm.device), :]
                s.meta = dict(s.meta or {}, scan_nose_tip=lm[..., 30, :])
        out.append(s)
    return out
