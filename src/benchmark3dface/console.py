"""A quiet main job: library warnings go to the run's log file, progress is one line per phase.

``b3f benchmark`` prints its plan, one progress line per phase (training a method, evaluating
it) with an ETA, and the tables. Python warnings (deprecations, Lightning tips, wandb notices)
and Lightning's info lines are written to ``<out>/benchmark.log`` instead of the terminal;
``--verbose`` shows them as well.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path


#: loggers whose records go to the log file (torch's own loggers are left alone: raising their
#: level would switch on its exit-time statistics)
LIBRARY_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "wandb", "py.warnings")


def route_library_output(log_file: Path, verbose: bool = False) -> logging.Handler:
    """Send Python warnings and library log records to ``log_file`` (and, with ``verbose``,
    to stderr too). Returns the file handler (remove it to undo)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    logging.captureWarnings(True)
    warnings.simplefilter("default")  # each distinct warning once per location, into the log
    pyw = logging.getLogger("py.warnings")
    pyw.addHandler(handler)
    pyw.propagate = bool(verbose)
    # Lightning attaches its own console handlers when imported: import it now (its import-time
    # warnings already go to the log), then take those handlers off
    try:
        import lightning.pytorch  # noqa: F401
    except ImportError:  # pragma: no cover - lightning is a dependency
        pass
    for name in LIBRARY_LOGGERS:
        lg = logging.getLogger(name)
        lg.handlers = [h for h in lg.handlers if not isinstance(h, logging.StreamHandler)
                       or isinstance(h, logging.FileHandler)]
        if handler not in lg.handlers:
            lg.addHandler(handler)
        lg.propagate = bool(verbose)
        lg.setLevel(logging.INFO)
    if verbose:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return handler


def format_seconds(s: float) -> str:
    s = max(0.0, float(s))
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


__all__ = ["format_seconds", "route_library_output"]
