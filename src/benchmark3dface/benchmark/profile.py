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
    """One synthetic test set: ``SyntheticDataModule`` arguments for the test split."""

    size: int = 200
    image_size: int = 128
    batch_size: int = 16
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class BenchmarkProfile:
    name: str = "quick"
    seed: int = 0
    facemodel: str = "procedural"
    facemodel_path: str | None = None
    #: input kind -> test set
    test_sets: dict[str, TestSet] = field(default_factory=lambda: {"single": TestSet()})
    #: input kind -> protocols: names (see benchmark3dface.metrics.PROTOCOLS) or one-key
    #: mappings ``{name: {option: value}}`` passing options to the protocol
    protocols: dict[str, list[Any]] = field(default_factory=lambda: {"single": ["true_error"]})
    #: synthetic "scans" for the scan protocols are the GT mesh; keep every ``scan_stride``-th
    #: vertex (1: all of them)
    scan_stride: int = 1
    num_workers: int = 0

    def protocol_specs(self, kind: str) -> dict[str, dict[str, Any]]:
        """``{protocol name: options}`` for an input kind, validated."""
        from ..metrics import PROTOCOLS

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

    def dataset_name(self, kind: str) -> str:
        """Leaderboard dataset name of a test set, e.g. ``synthetic-single@128``."""
        return f"synthetic-{kind}@{self.test_sets[kind].image_size}"

    def test_config(self, kind: str) -> dict[str, Any]:
        return {"kind": kind, "seed": self.seed, "facemodel": self.facemodel, **asdict(self.test_sets[kind])}

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
    for kind in profile.protocols:
        profile.protocol_specs(kind)  # fail early on a bad protocol entry
    return profile
