"""Training plumbing shared by the LightningCLI commands and the benchmark runner.

- :mod:`.loggers`: CSV always + wandb (offline unless wandb is set up).
- :mod:`.resumable`: exactly resumable, DDP-sharded training data order (stateful DataLoader).
- :mod:`.rng`: RNG states in checkpoints (:class:`RNGStateCheckpoint`).
- :mod:`.configs`: layered LightningCLI configs (``__base__`` override files, ``resolve_config``).
- :mod:`.sweeps`: ``b3f sweep``: wandb sweep YAML files run offline with Optuna (or with wandb).

See docs/training.md.
"""

from .loggers import default_loggers, wandb_mode
from .resumable import (
           ResumableDataLoader,
           ResumableSampler,
           distributed_world,
           resumable_loader,
)
from .rng import RNGStateCheckpoint, capture_rng_state, restore_rng_state

__all__ = ["RNGStateCheckpoint", "ResumableDataLoader", "ResumableSampler", "capture_rng_state", "default_loggers",
           "distributed_world", "restore_rng_state", "resumable_loader", "wandb_mode"]
