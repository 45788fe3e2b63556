"""The declaration a method plugin makes about itself."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..data.sample import KINDS

#: annotations a method may require from its training data (Sample field names or tags)
ANNOTATIONS = ("lm68", "lm5", "parse", "skin_mask", "identity", "coeffs", "vertices", "depth",
               "labelled", "centers")
#: what a method's reconstructions contain
OUTPUTS = ("mesh", "landmarks2d", "depth", "albedo")


@dataclass(frozen=True)
class MethodSpec:
    """What the benchmark runner needs to know to train and evaluate a method.

    Attributes:
        name: unique name (the entry-point name).
        input_kind: the sample kind it consumes: single, set, multiview or multiface.
        requires: annotations its training needs (see ``ANNOTATIONS``).
        outputs: what its reconstructions contain (see ``OUTPUTS``).
        configs: profile name -> config file (path relative to the method's package, or absolute).
        trainable: False for methods with nothing to train (baselines, optimisation fitting).
        description / paper: one line each, shown by ``b3f methods``.
        version: bump when a change invalidates earlier leaderboard runs.
        checkpoint_args: init argument -> name of another method whose trained checkpoint it
            takes (e.g. C-Net's ``rnet_checkpoint`` <- ``deep3d``); the benchmark runner trains
            (or reuses) that method first with the same profile and passes the checkpoint path.
    """

    name: str
    input_kind: str = "single"
    requires: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ("mesh", "landmarks2d")
    configs: dict[str, str] = field(default_factory=dict)
    trainable: bool = True
    description: str = ""
    paper: str = ""
    version: str = "1"
    checkpoint_args: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if self.input_kind not in KINDS:
            raise ValueError(f"method {self.name!r}: input_kind must be one of {KINDS}, got {self.input_kind!r}")
        bad = [a for a in self.requires if a not in ANNOTATIONS]
        if bad:
            raise ValueError(f"method {self.name!r}: unknown annotations {bad}; known: {ANNOTATIONS}")
        bad = [o for o in self.outputs if o not in OUTPUTS]
        if bad:
            raise ValueError(f"method {self.name!r}: unknown outputs {bad}; known: {OUTPUTS}")
