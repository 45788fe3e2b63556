"""Build an identity encoder from a method's ``perceptual`` option string.

Spec strings:

- ``"none"`` (or empty): no encoder; the perceptual term is off (with a warning).
- ``"idnet"``: the framework's own IdNet of the default :class:`IdNetConfig`, from the cache;
  trained first when missing and ``train_missing`` (else: off, with a warning).
- ``"idnet:<path>"``: an IdNet file saved by ``b3f idnet train`` / :func:`save_idnet`.
- ``"facenet:<path>"``: FaceNet (InceptionResnetV1) weights, a local file.
- ``"arcface:<path>"`` / ``"arcface-r100:<path>"``: arcface_torch iresnet weights, a local file.
- ``"dlib"``: dlib's face-recognition ResNet, weights converted by ``b3f weights fetch dlib_resnet``
  (an error naming that command when not fetched); ``"dlib:<path>"``: its ``.dat`` or a state dict.

A missing user file named in the spec is an error (the user asked for it); an unavailable
default (``idnet`` not trained yet) is a warning.
"""

from __future__ import annotations

from collections.abc import Callable

from .base import IdentityEncoder

PERCEPTUAL_KINDS = ("none", "idnet", "facenet", "arcface", "dlib")


def parse_spec(spec: str | None) -> tuple[str, str | None]:
    """``"kind[:path]"`` -> (kind, path or None); validates the kind."""
    text = (spec or "none").strip()
    kind, _, path = text.partition(":")
    kind = kind.strip().lower()
    arch = None
    if kind.startswith("arcface-"):
        kind, arch = "arcface", kind.split("-", 1)[1]
    if kind not in PERCEPTUAL_KINDS:
        raise ValueError(f"perceptual encoder {spec!r}: expected one of 'none', 'idnet', 'idnet:<path>', "
                         f"'facenet:<path>', 'arcface:<path>', 'dlib', 'dlib:<path>'")
    if kind in ("facenet", "arcface") and not path:
        raise ValueError(f"perceptual encoder {spec!r}: {kind} needs a local weights file, e.g. '{kind}:/path/to/weights.pt'")
    if arch is not None:
        return kind, f"{arch}|{path}"
    return kind, (path or None)


def build_encoder(spec: str | None, train_missing: bool = False,
                  log: Callable[[str], None] | None = print) -> tuple[IdentityEncoder | None, list[str]]:
    """Resolve ``spec`` (see module docstring) to a frozen encoder, or None plus the warnings
    explaining why the perceptual term is off."""
    kind, path = parse_spec(spec)
    if kind == "none":
        return None, ["perceptual loss off: no identity encoder configured (perceptual='none')"]
    if kind == "facenet":
        from .facenet import FaceNetEncoder

        return FaceNetEncoder(path).freeze(), []
    if kind == "dlib":
        from .dlib import DlibEncoder

        return DlibEncoder(path).freeze(), []
    if kind == "arcface":
        from .arcface import ArcFaceEncoder

        arch, _, p = path.partition("|") if "|" in path else ("r50", "", path)
        return ArcFaceEncoder(p, arch=f"r{arch.lstrip('r')}").freeze(), []
    from .idnet import IdNetConfig, cached_idnet, load_idnet, load_or_train_idnet

    if path:
        model, _ = load_idnet(path)
        return model.freeze(), []
    got = cached_idnet(IdNetConfig())
    if got is not None:
        return got[0].freeze(), []
    if train_missing:
        model, _, _ = load_or_train_idnet(IdNetConfig(), log=log)
        return model.freeze(), []
    return None, ["perceptual loss off: the default IdNet is not trained yet (run `b3f idnet train`, "
                  "or set train_missing / give 'idnet:<path>')"]
