"""What a method may read at test time: the input-only view of a sample.

The rule of the board (docs/architecture.md, "Inputs are not ground truth"): a method's
``reconstruct`` sees only what a deployed method would have. A method declares its test-time
inputs in ``MethodSpec.inputs`` (names from :data:`INPUTS`); the evaluation loop hands it an
:class:`InputView` of each batch holding those fields and nothing else. Reading any other
``Sample`` field raises :class:`GroundTruthAccessError`, so a method that peeks at the answer
fails loudly instead of scoring well.

Landmarks in the view are never the dataset's annotations: they come from the run's landmark
source (evaluation/landmarks.py: a detector by default, ground truth only as an explicitly named
oracle-input variant). An input named ``gt:<field>`` (e.g. ``gt:coeffs`` for the oracle
baseline) passes that ground-truth field through; a row that uses one is labelled as an
oracle-input row on the leaderboard.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from ..data.sample import Sample

#: test-time inputs a method may declare: name -> what it is
INPUTS: dict[str, str] = {
    "image": "the image(s), float [0, 1]",
    "lm68": "68 landmarks from the run's landmark source (detector by default), pixels",
    "lm5": "5 alignment points from the run's landmark source, pixels",
    "camera": "known camera intrinsics of the capture (Sample.camera)",
}

#: Sample fields every view carries (identifiers, not answers)
ALWAYS = ("kind", "sample_id")
#: ``meta`` keys a method may see (provenance and geometry of the input image, no labels)
META_KEYS = ("path", "dataset", "split", "index", "image_transform", "orig_size", "source",
             "projection")  # the camera model of the capture (perspective / weak_perspective), not a label
_SAMPLE_FIELDS = tuple(f.name for f in fields(Sample))


class GroundTruthAccessError(AttributeError):
    """A method read a Sample field it did not declare as a test-time input."""


def check_inputs(inputs: tuple[str, ...], where: str) -> None:
    """Validate a ``MethodSpec.inputs`` declaration."""
    for name in inputs:
        if name in INPUTS:
            continue
        if name.startswith("gt:") and name[3:] in _SAMPLE_FIELDS:
            continue
        raise ValueError(f"{where}: unknown test-time input {name!r}; known: {sorted(INPUTS)} "
                         f"or 'gt:<Sample field>' for an oracle input")


def uses_ground_truth(inputs: tuple[str, ...]) -> list[str]:
    """The ground-truth fields an input declaration passes through (``gt:<field>``)."""
    return [i[3:] for i in inputs if i.startswith("gt:")]


class InputView(Sample):
    """A ``Sample`` whose undeclared fields cannot be read (see the module docstring)."""

    def __init__(self, visible: tuple[str, ...], owner: str = "the method", **values: Any) -> None:
        object.__setattr__(self, "_visible", frozenset(visible) | frozenset(ALWAYS) | {"meta"})
        object.__setattr__(self, "_owner", owner)
        super().__init__(**values)

    def __getattribute__(self, name: str) -> Any:
        if name in _SAMPLE_FIELDS and name not in object.__getattribute__(self, "_visible"):
            owner = object.__getattribute__(self, "_owner")
            vis = sorted(object.__getattribute__(self, "_visible") - set(ALWAYS) - {"meta"})
            raise GroundTruthAccessError(
                f"{owner} read Sample.{name} at test time, which is not one of its declared inputs "
                f"{vis}: ground truth is not an input (declare it in MethodSpec.inputs, as 'gt:{name}' "
                f"for an oracle-input variant)")
        return object.__getattribute__(self, name)

    def present(self) -> list[str]:
        vis = object.__getattribute__(self, "_visible")
        out = []
        for f in fields(Sample):
            v = object.__getattribute__(self, f.name)
            if f.name in vis and v is not None and not (isinstance(v, dict) and not v):
                out.append(f.name)
        return out

    def __repr__(self) -> str:  # dataclass repr would read hidden fields
        return f"InputView(sample_id={self.sample_id!r}, fields={self.present()})"


def input_view(batch: Sample, inputs: tuple[str, ...], landmarks: dict[str, Any] | None = None,
               owner: str = "the method") -> InputView:
    """The input-only view of ``batch`` (a collated ``Sample``) for a method declaring ``inputs``.

    ``landmarks``: ``{"lm68": (..., 68, 2) | None, "lm5": (..., 5, 2) | None}`` from the run's
    landmark source; they fill the view's ``lm68`` / ``lm5`` when declared (the batch's own
    annotated landmarks never do)."""
    landmarks = landmarks or {}
    visible: list[str] = []
    values: dict[str, Any] = {"kind": batch.kind, "sample_id": batch.sample_id}
    for name in inputs:
        if name == "image":
            values["image"] = batch.image
            visible.append("image")
        elif name in ("lm68", "lm5"):
            values[name] = landmarks.get(name)
            visible.append(name)
        elif name == "camera":
            values["camera"] = batch.camera
            visible.append("camera")
        elif name.startswith("gt:"):
            values[name[3:]] = getattr(batch, name[3:])
            visible.append(name[3:])
    meta = batch.meta
    if isinstance(meta, dict):
        values["meta"] = {k: v for k, v in meta.items() if k in META_KEYS}
    elif isinstance(meta, list):
        values["meta"] = [{k: v for k, v in (m or {}).items() if k in META_KEYS} for m in meta]
    view = InputView(tuple(visible), owner, **values)
    return view


__all__ = ["INPUTS", "GroundTruthAccessError", "InputView", "check_inputs", "input_view", "uses_ground_truth"]
