"""Loggers: a CSV logger always, plus wandb (offline unless the user has set wandb up).

wandb runs offline by default so nothing reaches the network; it goes online when the user
has configured it: ``WANDB_MODE=online`` or an API key (``WANDB_API_KEY`` or a ``wandb login``
netrc entry). Offline runs can be uploaded later with ``wandb sync``.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path


def wandb_mode() -> str:
    """``online`` when the user has set wandb up, ``disabled`` when asked, else ``offline``."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("online", "offline", "disabled"):
        return mode
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        if netrc.netrc().authenticators("api.wandb.ai"):
            return "online"
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        pass
    return "offline"


def default_loggers(save_dir: str | Path, name: str, version: str | None = None, project: str = "benchmark3dface",
                    config: dict | None = None, use_wandb: bool = True):
    """[CSVLogger, WandbLogger] writing under ``save_dir``."""
    from lightning.pytorch.loggers import CSVLogger

    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    loggers = [CSVLogger(str(save_dir), name=name, version=version)]
    mode = wandb_mode()
    if use_wandb and mode != "disabled":
        from lightning.pytorch.loggers import WandbLogger

        os.environ.setdefault("WANDB_SILENT", "true")
        loggers.append(WandbLogger(project=project, name=f"{name}-{version}" if version else name,
                                   save_dir=str(save_dir), offline=(mode != "online"), config=config))
    return loggers
