"""The model zoo: reference checkpoints trained by the project's own recipes (docs/zoo.md).

- a *recipe* (``experiments/zoo/<name>.yaml``) is a method's LightningCLI config (``model``,
  ``data``, ``trainer``, ``seed_everything``; ``__base__`` layering) plus a ``zoo:`` block: the
  method plugin, how often to checkpoint, fp16 export, the size limit and the small fixed
  validation sample (:mod:`.recipes`);
- ``b3f zoo train NAME`` runs or resumes the long training in the background, on a GPU when
  present and on the CPU otherwise, with periodic checkpoints and a progress / ETA log
  (:mod:`.train`);
- a finished training is exported to ``zoo/<name>.pt`` (a compact weights file read with
  ``torch.load(weights_only=True)``) with its manifest ``zoo/<name>.json``: sha256, recipe,
  git commit, steps, wall time, hardware and the validation true error on the fixed sample,
  which ``b3f zoo verify`` reproduces (:mod:`.entries`);
- the benchmark runner evaluates every zoo entry as its own row ``<name>@zoo``.
"""

from .entries import (
    ZOO_ENV,
    ZooEntry,
    ZooError,
    default_zoo_dir,
    export_entry,
    load_entry_model,
    verify_entry,
    zoo_entries,
)
from .recipes import Recipe, find_recipe, load_recipe

__all__ = [
    "ZOO_ENV",
    "Recipe",
    "ZooEntry",
    "ZooError",
    "default_zoo_dir",
    "export_entry",
    "find_recipe",
    "load_entry_model",
    "load_recipe",
    "verify_entry",
    "zoo_entries",
]
