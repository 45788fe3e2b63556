"""Training plumbing shared by the LightningCLI commands and the benchmark runner."""

from .loggers import default_loggers, wandb_mode

__all__ = ["default_loggers", "wandb_mode"]
