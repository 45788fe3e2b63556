"""The declaration a method plugin makes about itself."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..data.sample import KINDS

#: annotations a method may require from its training data (Sample field names or tags)
ANNOTATIONS = ("lm68", "lm5", "parse", "skin_mask", "identity", "coeffs", "vertices", "depth",
               "labelled", "centers")
#: what a method's reconstructions contain
OUTPUTS = ("mesh", "landmarks2d", "depth", "albedo")


def eval_kind_base(name: str) -> str:
    """The input kind of an ``eval_kinds`` entry: ``"single_weak"`` -> ``"single"``."""
    return name if name in KINDS else name.partition("_")[0]


@dataclass(frozen=True)
class MethodSpec:
    """What the benchmark runner needs to know to train and evaluate a method.

    Attributes:
        name: unique name (the entry-point name).
        input_kind: the sample kind it consumes: single, set, multiview or multiface.
        requires: annotations its *training* needs (see ``ANNOTATIONS``), checked against the
            training data, never handed over at test time.
        inputs: what ``reconstruct`` may read at *test* time (benchmark3dface.evaluation.INPUTS:
            ``image``, ``lm68`` / ``lm5`` from the run's landmark source, ``camera``; or
            ``gt:<field>`` for an oracle-input baseline). Everything else is hidden.
        outputs: what its reconstructions contain (see ``OUTPUTS``).
        configs: profile name -> config file (path relative to the method's package, or absolute).
        trainable: False for methods with nothing to train (baselines, optimisation fitting).
        description / paper: one line each, shown by ``b3f methods``.
        version: bump when a change invalidates earlier leaderboard runs.
        checkpoint_args: init argument -> name of another method whose trained checkpoint it
            takes (e.g. C-Net's ``rnet_checkpoint`` <- ``deep3d``); the benchmark runner trains
            (or reuses) that method first with the same profile and passes the checkpoint path.
        eval_kinds: the test sets it is evaluated on (default: ``(input_kind,)``): input kinds
            (``single``, ``set``, ``multiview``, ``multiface``: the profile's test set of that
            kind, e.g. WM3DR on ``multiface`` and ``single`` crops) or variant test-set names
            ``<kind>_<variant>`` (e.g. ``single_weak``, the weak-perspective depth set), which
            a method opts into by name; ``"*"``: every test set of the profile (the baselines).
            ``requires`` is checked against the training data only, never against these test
            sets.
    """

    name: str
    input_kind: str = "single"
    requires: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ("image",)
    outputs: tuple[str, ...] = ("mesh", "landmarks2d")
    configs: dict[str, str] = field(default_factory=dict)
    trainable: bool = True
    description: str = ""
    paper: str = ""
    version: str = "1"
    checkpoint_args: dict[str, str] = field(default_factory=dict)
    eval_kinds: tuple[str, ...] = ()

    def __post_init__(self):
        if self.input_kind not in KINDS:
            raise ValueError(f"method {self.name!r}: input_kind must be one of {KINDS}, got {self.input_kind!r}")
        if not self.eval_kinds:
            object.__setattr__(self, "eval_kinds", (self.input_kind,))
        object.__setattr__(self, "eval_kinds", tuple(self.eval_kinds))
        bad = [k for k in self.eval_kinds if k != "*" and eval_kind_base(k) not in KINDS]
        if bad:
            raise ValueError(f"method {self.name!r}: eval_kinds must be input kinds {KINDS} or "
                             f"'<kind>_<variant>' test-set names, got {bad}")
        bad = [a for a in self.requires if a not in ANNOTATIONS]
        if bad:
            raise ValueError(f"method {self.name!r}: unknown annotations {bad}; known: {ANNOTATIONS}")
        from ..evaluation.inputs import check_inputs

        check_inputs(tuple(self.inputs), f"method {self.name!r}")
        bad = [o for o in self.outputs if o not in OUTPUTS]
        if bad:
            raise ValueError(f"method {self.name!r}: unknown outputs {bad}; known: {OUTPUTS}")
