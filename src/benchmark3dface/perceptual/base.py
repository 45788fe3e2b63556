"""The identity-encoder interface and the weight-file helper shared by the encoders."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .align import ARCFACE_TEMPLATE_112, resize_square, template_for, warp_to_template


class MissingWeightsError(FileNotFoundError):
    """A user-supplied weight file is missing (nothing is ever downloaded)."""


class IdentityEncoder(nn.Module):
    """A face-recognition network: image batch in [0, 1] -> L2-normalised identity embedding.

    ``forward(images, lm5=None)``:

    - ``images``: (B, 3, H, W) float in [0, 1] (docs/conventions.md);
    - ``lm5``: optional (B, 5, 2) pixels (Deng's 5-point order). With it the face is warped onto
      the encoder's 5-point template at ``input_size`` (a differentiable similarity warp);
      without it the whole image is resized to ``input_size``.
    - returns (B, ``embedding_dim``) unit vectors.

    Subclasses implement ``normalize_input`` (the network's pixel normalisation) and ``embed``
    (raw, unnormalised features of a prepared crop). Encoders used as a loss are frozen by the
    caller (``freeze()``); gradients still flow to the input images.
    """

    input_size: int = 112
    embedding_dim: int = 512

    def __init__(self, input_size: int = 112, template: Tensor | None = None) -> None:
        super().__init__()
        self.input_size = int(input_size)
        tpl = template if template is not None else template_for(self.input_size, ARCFACE_TEMPLATE_112)
        self.register_buffer("template", tpl.float().clone(), persistent=False)

    # ------------------------------------------------------------------ to override
    def normalize_input(self, crops: Tensor) -> Tensor:
        """[0, 1] crops -> the network's input range (default: (x - 0.5) / 0.5)."""
        return (crops - 0.5) / 0.5

    def embed(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    # ------------------------------------------------------------------ shared
    def crop(self, images: Tensor, lm5: Tensor | None = None) -> Tensor:
        """Aligned (B, 3, input_size, input_size) crops in [0, 1]."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"identity encoder: images must be (B, 3, H, W), got {tuple(images.shape)}")
        if lm5 is None:
            return resize_square(images, self.input_size)
        return warp_to_template(images, lm5, self.template, self.input_size)

    def forward(self, images: Tensor, lm5: Tensor | None = None) -> Tensor:
        feats = self.embed(self.normalize_input(self.crop(images, lm5)))
        return F.normalize(feats.float(), dim=-1)

    def freeze(self) -> "IdentityEncoder":
        """Eval mode, no parameter gradients (inputs still get gradients)."""
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self


def load_state_file(path: str | Path, what: str, source: str) -> dict[str, Tensor]:
    """Load a local state dict (``torch.save`` file; a ``{"state_dict": ...}`` wrapper is
    unwrapped). Raises :class:`MissingWeightsError` naming the file, what it is and where it
    comes from when it does not exist; ``ValueError`` when it holds no state dict."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise MissingWeightsError(f"{what} weights not found: {p} does not exist. {source} "
                                  f"(benchmark3dface never downloads weights).")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt / not a torch file
        raise ValueError(f"{p}: cannot read {what} weights as a torch state dict ({exc})") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{p}: expected a state dict (name -> tensor) of {what} weights")
    return state


def load_matching(module: nn.Module, state: dict[str, Tensor], path: str | Path, what: str,
                  ignore_prefixes: tuple[str, ...] = ()) -> None:
    """Strictly load ``state`` (minus keys starting with ``ignore_prefixes``) into ``module``;
    a key/shape mismatch raises ``ValueError`` naming the file and the first offending keys."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(ignore_prefixes)}
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    bad_shape = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or bad_shape:
        raise ValueError(f"{path}: not {what} weights: {len(missing)} missing keys {missing[:3]}, "
                         f"{len(unexpected)} unexpected keys {unexpected[:3]}, "
                         f"{len(bad_shape)} shape mismatches {bad_shape[:3]}")
    module.load_state_dict(state, strict=True)
