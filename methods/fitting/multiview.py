"""Fitting baselines for the multi-image boards (entry points ``fitting_mv`` and ``set_average``).

- ``fitting_mv`` (kind ``multiview``): one analysis-by-synthesis problem per (left, front,
  right) triplet -- Deng'19's objective of ``fitting`` summed over the views, with the identity,
  expression, albedo and SH light shared by the views and one pose (angles, translation) per
  view (``Fitting.fit(..., views=V)``). Its per-view faces go to ``per_view``, the aggregated face
  is the front view's. Compared with single-view ``fitting`` on the same triplets (which fits
  every view on its own), it measures what the extra views add.
- ``set_average`` (kind ``set``): shape averaging on identity sets -- every image fitted on its
  own (``fitting``), the aggregated face is the mean of the per-view identity coefficients with a
  neutral expression (what the set board scores against: Deng's Table 4 protocol).
"""

from __future__ import annotations

from typing import Any

from benchmark3dface.methods import MethodSpec

from .method import Fitting


class FittingMV(Fitting):
    """Multi-view fitting: shared identity / expression / albedo / light, a pose per view."""

    spec = MethodSpec(name="fitting_mv", input_kind="multiview", requires=(), inputs=("image", "lm68", "lm5"),
                      trainable=False, outputs=("mesh", "landmarks2d", "albedo"),
                      description="multi-view analysis-by-synthesis: shared shape/albedo/light, one pose per view",
                      paper="baseline (optimisation; losses of Deng et al. 2019, views tied)")

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("aggregate", "front")
        super().__init__(**kwargs)
        self.tie_views = True


class SetAverage(Fitting):
    """Per-image fits of an identity set, identity coefficients averaged (neutral expression).

    Defaults to the landmark stage only (``photo_iters=0``): 200 images per quick set board at
    ~1.1 s per photometric fit would not fit the CPU budget; pass ``photo_iters`` to change it."""

    spec = MethodSpec(name="set_average", input_kind="set", requires=(), inputs=("image", "lm68", "lm5"),
                      trainable=False, outputs=("mesh", "landmarks2d", "albedo"),
                      description="per-image fits of an identity set, identity averaged (shape averaging)",
                      paper="baseline (optimisation; per-view fits averaged)")

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("aggregate", "mean_identity")
        kwargs.setdefault("photo_iters", 0)
        super().__init__(**kwargs)


__all__ = ["FittingMV", "SetAverage"]
