"""The ``b3f`` command. Each sub-command lives in its own module exposing
``add_parser(subparsers)`` and ``run(args) -> int``; this file only dispatches, importing a
sub-command's module when it is used (so ``b3f --help`` stays fast).

Before anything imports torch, :func:`main` sets the OpenMP wait policy that survives a busy
machine (``OMP_WAIT_POLICY=PASSIVE``, ``KMP_BLOCKTIME=0`` unless the user set them; see
``benchmark3dface/threads.py``). Errors from bad input (missing or unreadable files, bad
values, bad data) print one line ``b3f COMMAND: error: ...`` and exit with status 2;
``B3F_DEBUG=1`` shows the traceback instead."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

#: sub-command name -> module implementing it
COMMANDS = {
    "benchmark": "benchmark3dface.cli.benchmark",
    "reconstruct": "benchmark3dface.cli.reconstruct",
    "idnet": "benchmark3dface.perceptual.cli",
    "facemodel": "benchmark3dface.facemodel.cli",
    "leaderboard": "benchmark3dface.leaderboard.cli",
    "synth": "benchmark3dface.data.cli",
    "render": "benchmark3dface.cli.render",
    "methods": "benchmark3dface.cli.methods",
    "evaluate": "benchmark3dface.cli.evaluate",
    "protocols": "benchmark3dface.cli.protocols",
    "datasets": "benchmark3dface.cli.datasets",
    "sweep": "benchmark3dface.cli.sweep",
    "weights": "benchmark3dface.weights.cli",
    "zoo": "benchmark3dface.cli.zoo",
}

#: handled by LightningCLI (cli/lightning.py): b3f fit|validate|test|predict --config FILE ...
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")

HELP = {
    "benchmark": "run the benchmark (train, evaluate, leaderboard) on the embedded default",
    "reconstruct": "reconstruct 3D faces from photos with a method",
    "idnet": "train the framework's own identity encoder (perceptual loss)",
    "facemodel": "inspect, export or build morphable models",
    "leaderboard": "show, export and compare leaderboard results",
    "synth": "write synthetic dataset shards to disk",
    "render": "render faces from a morphable model to images",
    "methods": "list installed methods",
    "evaluate": "score a method or a mesh folder on any dataset; record on the leaderboard",
    "protocols": "list evaluation protocols and what each needs",
    "datasets": "list benchmark datasets and what each provides",
    "sweep": "run a wandb sweep YAML offline with Optuna (or with wandb)",
    "weights": "fetch, list and inspect pretrained face-network weights",
    "zoo": "train, list and verify reference checkpoints (the model zoo)",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="b3f", description="benchmark3dface: 3D face reconstruction benchmark")
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"benchmark3dface {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in LIGHTNING_COMMANDS:
        sub.add_parser(name, help=f"LightningCLI {name} of a method: b3f {name} --config FILE (see --help)",
                       add_help=False)
    for name, module in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=HELP[name], add_help=False)
            continue
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if not exc.name or not module.startswith(exc.name):
                raise
            sub.add_parser(name, help=HELP[name] + " (not available in this build)")
            continue
        mod.add_parser(sub)
    return parser


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is bad input to report in one line (not a bug to show a traceback for)."""
    if isinstance(exc, (FileNotFoundError, ValueError, KeyError, PermissionError, IsADirectoryError,
                        NotADirectoryError)):
        return True
    data_errors = sys.modules.get("benchmark3dface.data.readers.errors")  # imported only if data was read
    return data_errors is not None and isinstance(exc, data_errors.DataError)


def error_line(command: str, exc: BaseException) -> str:
    """``b3f COMMAND: error: message`` (a ``KeyError``'s key unquoted)."""
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    return f"b3f {command}: error: {str(msg).strip() or type(exc).__name__}"


def main(argv: list[str] | None = None) -> int:
    from ..threads import apply_openmp_defaults

    apply_openmp_defaults()  # before torch is imported: OpenMP reads it once, when loaded
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LIGHTNING_COMMANDS:
        from .lightning import run_lightning

        return run_lightning(argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    only = first if first in COMMANDS else None
    parser = build_parser(only)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    mod = importlib.import_module(COMMANDS[args.command])
    try:
        return int(mod.run(args) or 0)
    except Exception as exc:  # noqa: BLE001 - bad input: one line; anything else: the traceback
        if os.environ.get("B3F_DEBUG") or not is_user_error(exc):
            raise
        print(error_line(args.command, exc), file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
