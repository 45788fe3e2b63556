"""``coarse_sfs``: CoarseNet followed by the per-image Eq. 14 optimisation (no network): the
training-free shape-from-shading reference row of Richardson'17's refinement claim.

Nothing is trained here: the coarse network comes from the trained ``coarsenet`` checkpoint
(``coarse_checkpoint``, passed by the benchmark runner), whose input size, backbone, feedback and
iteration count are taken from the checkpoint; the refined depth map is the Eq. 14 energy
(paper weights) minimised over the depth itself, per test image.
"""

from __future__ import annotations

from typing import Any

from benchmark3dface.methods import MethodSpec
from benchmark3dface.training.weights import load_lightning_checkpoint

from .coarsefine import CoarseFine

#: CoarseNet hyperparameters the optimisation row inherits from its coarse checkpoint
FROM_COARSE = ("image_size", "backbone", "feedback", "iterations")


class CoarseSfS(CoarseFine):
    """CoarseNet + the per-image Eq. 14 optimisation (``CoarseFine`` with ``refine="optimize"``).

    Args: as ``CoarseFine``; ``image_size``, ``backbone``, ``feedback`` and ``iterations`` default
    to those stored in ``coarse_checkpoint``.
    """

    spec = MethodSpec(
        name="coarse_sfs", input_kind="single", requires=(), inputs=("image",),
        outputs=("mesh", "landmarks2d", "depth"), trainable=False, eval_kinds=("single_weak",),
        checkpoint_args={"coarse_checkpoint": "coarsenet"},
        description="Richardson'17 CoarseNet + the per-image Eq. 14 shape-from-shading optimisation (no FineNet)",
        paper="Richardson et al., Learning Detailed Face Reconstruction from a Single Image, CVPR 2017 (Eq. 14)")

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("refine", "optimize")
        path = kwargs.get("coarse_checkpoint")
        if path:
            stored = coarse_hparams(path)
            for k in FROM_COARSE:
                if k in stored:
                    kwargs.setdefault(k, stored[k])
        super().__init__(**kwargs)


def coarse_hparams(path: str) -> dict[str, Any]:
    """The hyperparameters stored in a coarsenet Lightning checkpoint (one clear error naming
    the file when it is missing, unreadable or not a checkpoint)."""
    blob = load_lightning_checkpoint(path, "a coarsenet checkpoint", "train coarsenet first "
                                     "(`b3f fit --config experiments/quick/richardson.yaml`)")
    hp = blob.get("hyper_parameters")
    if not isinstance(hp, dict):
        raise ValueError(f"{path}: expected a coarsenet Lightning checkpoint with 'hyper_parameters'")
    return hp
