"""Zoo recipes: ``experiments/zoo/<name>.yaml`` (see docs/zoo.md).

A recipe is a LightningCLI config of the method (``seed_everything``, ``model``, ``data``,
``trainer``; ``__base__`` layering as everywhere, :func:`~benchmark3dface.training.configs.
resolve_config`) plus a ``zoo:`` block::

    zoo:
      method: deep3d                 # the method plugin (b3f methods)
      checkpoint_every_minutes: 5    # a resumable checkpoint at least this often
      checkpoint_every_steps: null   # or every N steps (tests)
      log_every_seconds: 30          # a progress / ETA line in the log
      fp16: true                     # export floating weights as float16
      max_mb: 25                     # refuse to export a bigger file
      validation: {mode: single, size: 32, image_size: 112, seed: 20261205, batch_size: 8}
      tolerance_mm: 0.02             # verify: |recomputed - recorded| validation error
      exclude: [rnet.]               # weights not exported (prefixes): they come from a
                                     # ``zoo:NAME`` model argument (C-Net's frozen R-Net)

A model argument written ``zoo:NAME`` (e.g. C-Net's ``rnet_checkpoint: zoo:deep3d``) is the
weights file of the zoo entry NAME (verified before use).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: where ``b3f zoo`` looks for recipes by name (relative to the working directory, else the repo)
RECIPE_DIR = Path("experiments") / "zoo"
RECIPE_ENV = "B3F_ZOO_RECIPES"

_ZOO_KEYS = {"method", "name", "checkpoint_every_minutes", "checkpoint_every_steps", "log_every_seconds", "fp16",
             "max_mb", "validation", "tolerance_mm", "exclude"}
_VAL_KEYS = {"mode", "size", "image_size", "seed", "batch_size", "options"}


@dataclass
class Recipe:
    """A parsed recipe. ``config``: the method's config without the ``zoo:`` block."""

    name: str
    path: Path
    method: str
    config: dict[str, Any]
    text_sha256: str
    checkpoint_every_minutes: float = 5.0
    checkpoint_every_steps: int | None = None
    log_every_seconds: float = 30.0
    fp16: bool = True
    max_mb: float = 25.0
    validation: dict[str, Any] = field(default_factory=dict)
    tolerance_mm: float = 0.02
    exclude: tuple[str, ...] = ()

    @property
    def max_steps(self) -> int:
        return int((self.config.get("trainer") or {}).get("max_steps", -1) or -1)

    @property
    def model_args(self) -> dict[str, Any]:
        return dict((self.config.get("model") or {}).get("init_args") or {})


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


def recipe_dirs() -> list[Path]:
    """Where recipes are found by name: ``$B3F_ZOO_RECIPES``, ./experiments/zoo, the repo's."""
    out = []
    if os.environ.get(RECIPE_ENV):
        out.append(Path(os.environ[RECIPE_ENV]))
    out += [RECIPE_DIR, _repo_root() / RECIPE_DIR]
    return out


def find_recipe(name_or_path: str | Path) -> Path:
    """A recipe file from a path or a name (``deep3d`` -> ``experiments/zoo/deep3d.yaml``)."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        if not p.is_file():
            raise FileNotFoundError(f"zoo recipe {p} not found")
        return p
    for d in recipe_dirs():
        for ext in (".yaml", ".yml"):
            if (d / f"{name_or_path}{ext}").is_file():
                return d / f"{name_or_path}{ext}"
    known = sorted({f.stem for d in recipe_dirs() if d.is_dir() for f in d.glob("*.y*ml")})
    raise FileNotFoundError(f"no zoo recipe named {name_or_path!r} in {', '.join(map(str, recipe_dirs()))}; "
                            f"known: {', '.join(known) or 'none'}")


def load_recipe(name_or_path: str | Path) -> Recipe:
    """Parse a recipe; ``ValueError`` naming the file and the problem."""
    from ..training.configs import resolve_config

    path = find_recipe(name_or_path)
    cfg = resolve_config(path)
    zoo = cfg.pop("zoo", None)
    if not isinstance(zoo, dict):
        raise ValueError(f"{path}: not a zoo recipe: it has no 'zoo:' block (method, validation ...)")
    unknown = set(zoo) - _ZOO_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown zoo key(s) {sorted(unknown)}; known: {sorted(_ZOO_KEYS)}")
    if not zoo.get("method"):
        raise ValueError(f"{path}: zoo.method (the method plugin's name) is missing")
    for part in ("model", "data", "trainer"):
        if not isinstance(cfg.get(part), dict):
            raise ValueError(f"{path}: the recipe needs a '{part}:' section")
    if int((cfg["trainer"] or {}).get("max_steps", -1) or -1) <= 0:
        raise ValueError(f"{path}: trainer.max_steps must be > 0 (a zoo training has a fixed length)")
    val = dict(zoo.get("validation") or {})
    bad = set(val) - _VAL_KEYS
    if bad:
        raise ValueError(f"{path}: unknown zoo.validation key(s) {sorted(bad)}; known: {sorted(_VAL_KEYS)}")
    val = {"mode": "single", "size": 32, "image_size": 112, "seed": 20261205, "batch_size": 8, "options": {}} | val
    every_steps = zoo.get("checkpoint_every_steps")
    recipe = Recipe(
        name=str(zoo.get("name") or path.stem), path=path, method=str(zoo["method"]), config=cfg,
        text_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        checkpoint_every_minutes=float(zoo.get("checkpoint_every_minutes", 5.0)),
        checkpoint_every_steps=None if every_steps in (None, 0) else int(every_steps),
        log_every_seconds=float(zoo.get("log_every_seconds", 30.0)), fp16=bool(zoo.get("fp16", True)),
        max_mb=float(zoo.get("max_mb", 25.0)), validation=val, tolerance_mm=float(zoo.get("tolerance_mm", 0.02)),
        exclude=tuple(str(x) for x in (zoo.get("exclude") or ())))
    if recipe.exclude and not any(isinstance(v, str) and v.startswith("zoo:") for v in recipe.model_args.values()):
        raise ValueError(f"{path}: zoo.exclude {list(recipe.exclude)} drops weights, but no model argument "
                         "names the zoo entry ('zoo:NAME') they would come from")
    return recipe


__all__ = ["RECIPE_DIR", "RECIPE_ENV", "Recipe", "find_recipe", "load_recipe", "recipe_dirs"]
