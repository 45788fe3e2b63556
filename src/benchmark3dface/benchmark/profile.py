"""Benchmark profiles: the synthetic test sets and protocols a profile evaluates on.

A profile is ``experiments/<name>/benchmark.yaml`` (``quick``: minutes on a 2-core CPU;
``paper``: paper settings, GPU). Every method of a run is evaluated on the *same* test samples
of its input kind, so leaderboard rows are comparable and paired tests are possible.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

EXPERIMENTS = Path(__file__).resolve().parents[3] / "experiments"


@dataclass
class TestSet:
    """One synthetic test set: ``SyntheticDataModule`` arguments for the test split.

    ``kind``: the input kind of its samples (default: the test set's key in the profile, or the
    part before ``_`` of a variant key such as ``single_weak``); ``options``: synthetic-engine
    options (``SynthConfig``, e.g. ``projection: weak_perspective``, ``view_yaws``)."""

    size: int = 200
    image_size: int = 128
    batch_size: int = 16
    options: dict[str, Any] = field(default_factory=dict)
    kind: str | None = None


@dataclass
class BenchmarkProfile:
    name: str = "quick"
    seed: int = 0
    facemodel: str = "procedural"
    facemodel_path: str | None = None
    #: test-set key (an input kind, or ``<kind>_<variant>`` with ``kind:``) -> test set
    test_sets: dict[str, TestSet] = field(default_factory=lambda: {"single": TestSet()})
    #: test-set key -> protocols: names (see benchmark3dface.metrics.PROTOCOLS) or one-key
    #: mappings ``{name: {option: value}}`` passing options to the protocol
    protocols: dict[str, list[Any]] = field(default_factory=lambda: {"single": ["true_error"]})
    #: synthetic "scans" for the scan protocols are the GT mesh; keep every ``scan_stride``-th
    #: vertex (1: all of them)
    scan_stride: int = 1
    num_workers: int = 0
    #: where methods that declare ``lm68``/``lm5`` inputs get them at test time:
    #: ``detector`` | ``gt_noise`` | ``{gt_noise: {sigma: 0.04}}`` (evaluation/landmarks.py);
    #: ``gt`` only in ``input_variants``
    landmarks: Any = "detector"
    #: method -> extra landmark sources to run it with as separately named oracle-input rows,
    #: e.g. ``{fitting: [gt]}`` -> a row ``fitting[gt-landmarks]``
    input_variants: dict[str, list[Any]] = field(default_factory=dict)
    #: test samples per kind shown in the report's gallery (0: none)
    gallery: int = 6

    def protocol_specs(self, kind: str) -> dict[str, dict[str, Any]]:
        """``{protocol name: options}`` for an input kind, validated."""
        from ..evaluation.protocols import available_protocols

        PROTOCOLS = available_protocols()

        out: dict[str, dict[str, Any]] = {}
        for item in self.protocols.get(kind, []):
            if isinstance(item, str):
                name, opts = item, {}
            elif isinstance(item, dict) and len(item) == 1:
                name, opts = next(iter(item.items()))
                opts = dict(opts or {})
            else:
                raise ValueError(f"profile {self.name!r}: protocols.{kind} entries must be a name or "
                                 f"{{name: {{options}}}}, got {item!r}")
            if name not in PROTOCOLS:
                raise ValueError(f"profile {self.name!r}: unknown protocol {name!r}; known: {sorted(PROTOCOLS)}")
            out[name] = opts
        return out

    def dataset_name(self, key: str) -> str:
        """Leaderboard dataset name of a test set (by its key), e.g. ``synthetic-single@128``,
        ``synthetic-single_weak@128``."""
        return f"synthetic-{key}@{self.test_sets[key].image_size}"

    def kind_of(self, key: str) -> str:
        """The input kind of test set ``key``."""
        from ..methods.spec import eval_kind_base

        return self.test_sets[key].kind or eval_kind_base(key)

    def test_config(self, key: str) -> dict[str, Any]:
        cfg = {"kind": self.kind_of(key), "seed": self.seed, "facemodel": self.facemodel,
               **{k: v for k, v in asdict(self.test_sets[key]).items() if k != "kind"}}
        if key != cfg["kind"]:
            cfg["key"] = key
        # the engine's resolved defaults (pose prior, ranges ...) are part of what the test set is:
        # a changed default makes new leaderboard runs instead of reusing ones made on other data
        try:
            from ..data.synthetic.config import ADDED_OFF, SynthConfig

            ts = self.test_sets[key]
            engine = SynthConfig(mode=cfg["kind"], image_size=ts.image_size, **dict(ts.options or {}))
            cfg["engine"] = {k: v for k, v in asdict(engine).items()
                             if isinstance(v, (str, int, float, bool, type(None), list, tuple))
                             and not (k in ADDED_OFF and v == ADDED_OFF[k])}
        except (TypeError, ValueError):  # options the engine rejects are reported when the set is built
            pass
        return cfg

    def test_sets_for(self, spec: Any) -> list[str]:
        """Keys of the test sets a method is evaluated on: those its ``eval_kinds`` names, a
        kind naming the test set of the same key (variants such as ``single_weak`` only when
        named; ``"*"``: every test set)."""
        wanted = tuple(getattr(spec, "eval_kinds", None) or (spec.input_kind,))
        return [k for k in self.test_sets if k in wanted or "*" in wanted]

    def override(self, size: int | None = None, image_size: int | None = None) -> "BenchmarkProfile":
        for ts in self.test_sets.values():
            if size is not None:
                ts.size = size
            if image_size is not None:
                ts.image_size = image_size
        return self


def load_profile(name_or_path: str) -> BenchmarkProfile:
    """Load ``experiments/<name>/benchmark.yaml`` or a YAML file path."""
    p = Path(name_or_path)
    if not p.suffix:
        p = EXPERIMENTS / name_or_path / "benchmark.yaml"
    if not p.is_file():
        known = sorted(d.name for d in EXPERIMENTS.iterdir() if (d / "benchmark.yaml").is_file()) if EXPERIMENTS.is_dir() else []
        raise FileNotFoundError(f"benchmark profile {p} not found; known profiles: {known}")
    raw = yaml.safe_load(p.read_text()) or {}
    allowed = {f.name for f in fields(BenchmarkProfile)}
    unknown = set(raw) - allowed
    if unknown:
        raise ValueError(f"{p}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
    raw.setdefault("name", p.parent.name)
    raw["test_sets"] = {k: TestSet(**v) for k, v in (raw.get("test_sets") or {}).items()}
    profile = BenchmarkProfile(**raw)
    from ..data.sample import KINDS

    for key in profile.test_sets:
        if profile.kind_of(key) not in KINDS:
            raise ValueError(f"{p}: test_sets.{key}: kind must be one of {KINDS} (give `kind:` for a variant "
                             f"key), got {profile.kind_of(key)!r}")
    unknown = set(profile.protocols) - set(profile.test_sets)
    if unknown:
        raise ValueError(f"{p}: protocols for unknown test sets {sorted(unknown)}; test sets: {sorted(profile.test_sets)}")
    for kind in profile.protocols:
        profile.protocol_specs(kind)  # fail early on a bad protocol entry
    from ..evaluation.landmarks import SOURCES

    def _name(spec: Any) -> str:
        return next(iter(spec)) if isinstance(spec, dict) else str(spec)

    if _name(profile.landmarks) not in SOURCES or _name(profile.landmarks) == "gt":
        raise ValueError(f"{p}: landmarks must be 'detector' or 'gt_noise' (ground-truth landmarks only as an "
                         f"input_variants entry, shown as an oracle-input row), got {profile.landmarks!r}")
    for method, variants in profile.input_variants.items():
        for v in variants:
            if _name(v) not in SOURCES:
                raise ValueError(f"{p}: input_variants.{method}: unknown landmark source {v!r}; known: {SOURCES}")
    return profile
