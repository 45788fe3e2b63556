"""CPU thread settings that do not collapse when the machine is busy.

The problem: PyTorch's CPU kernels run on an OpenMP thread pool (GNU libgomp in the pip wheels,
Intel's libiomp5 in some builds). By default an idle OpenMP thread *spin-waits* for a while
before it sleeps (libgomp: ``GOMP_SPINCOUNT`` 300,000 iterations, Intel: ``KMP_BLOCKTIME``
200 ms). On a machine whose cores are taken by other processes the spinning threads steal the
CPU from the thread doing the work, and every parallel region waits for a descheduled thread:
on the 2-core development machine, with two CPU-bound processes beside it, the ``fitting``
baseline took 57 s for one photo with the default policy and 3.7 s with
``OMP_WAIT_POLICY=PASSIVE`` (idle threads sleep at once; issue 19).
``benchmarks/threads_under_load.py`` measures both policies quiet and under load (figures in
docs/training.md, "CPU threads").

What ``b3f`` does (:func:`apply_openmp_defaults`, called by ``cli/main.py`` before anything
imports torch; the OpenMP runtime reads these variables once, when it is loaded):

- ``OMP_WAIT_POLICY=PASSIVE`` and ``KMP_BLOCKTIME=0`` (the Intel runtime's equivalent),
  unless the user has set them (their value wins);
- nothing at all when ``B3F_NO_THREAD_DEFAULTS=1`` (to measure or keep the runtime's own
  defaults).

Thread counts are left to PyTorch (one per physical core) unless the user asks:
``b3f reconstruct --threads N`` / ``b3f benchmark --threads N`` call :func:`set_threads`.
A library user who imports ``benchmark3dface`` from Python sets the environment variables
before importing torch.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

#: Environment set by :func:`apply_openmp_defaults` when the user has not set these names.
OPENMP_DEFAULTS: dict[str, str] = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}

#: Set to ``1`` to leave the OpenMP runtime's own defaults untouched.
OPT_OUT_VARIABLE = "B3F_NO_THREAD_DEFAULTS"

#: The thread count asked for with ``--threads`` (read by code that picks its own count, e.g.
#: the benchmark runner's training threads); unset when the user did not ask.
THREADS_VARIABLE = "B3F_THREADS"


def apply_openmp_defaults(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Put :data:`OPENMP_DEFAULTS` into ``environ`` (default ``os.environ``) where the user has
    not set them, unless :data:`OPT_OUT_VARIABLE` is ``1``/``true``/``yes``. Returns what was
    set. Effective only before the OpenMP runtime is loaded (before ``import torch``); child
    processes (DataLoader workers, DDP ranks) inherit it."""
    env = os.environ if environ is None else environ
    if env.get(OPT_OUT_VARIABLE, "").strip().lower() in ("1", "true", "yes"):
        return {}
    applied = {}
    for name, value in OPENMP_DEFAULTS.items():
        if name not in env:
            env[name] = value
            applied[name] = value
    return applied


def parse_threads(value: str | int | None) -> int | None:
    """``--threads`` value -> a positive int, or None for "PyTorch's default". Raises
    ``ValueError`` with a one-line message for anything else."""
    if value is None:
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"--threads expects a positive integer, got {value!r}") from None
    if n < 1:
        raise ValueError(f"--threads expects a positive integer, got {n}")
    return n


def set_threads(n: int | None) -> int:
    """Use ``n`` intra-op threads (``torch.set_num_threads``) and ``n`` inter-op threads
    (``torch.set_num_interop_threads``, only possible before the first inter-op parallel work;
    skipped after it) in this process, and record ``n`` in :data:`THREADS_VARIABLE`. ``None``
    changes nothing. Returns the intra-op thread count now in use."""
    import torch

    n = parse_threads(n)
    if n is not None:
        torch.set_num_threads(n)
        try:
            torch.set_num_interop_threads(n)
        except RuntimeError:  # inter-op pool already started: its size can no longer change
            pass
        os.environ[THREADS_VARIABLE] = str(n)
    return torch.get_num_threads()


def requested_threads() -> int | None:
    """The thread count the user asked for with ``--threads`` (None when not asked)."""
    value = os.environ.get(THREADS_VARIABLE)
    try:
        return parse_threads(value) if value else None
    except ValueError:
        return None


def training_threads(data_workers: int, cpu_count: int | None = None) -> int:
    """Intra-op threads for CPU training beside ``data_workers`` DataLoader worker processes:
    the user's ``--threads`` when given, else one core per worker is left free
    (``max(1, cores - workers)``)."""
    asked = requested_threads()
    if asked is not None:
        return asked
    cores = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    return max(1, int(cores) - max(0, int(data_workers)))


__all__ = ["OPENMP_DEFAULTS", "OPT_OUT_VARIABLE", "THREADS_VARIABLE", "apply_openmp_defaults", "parse_threads",
           "requested_threads", "set_threads", "training_threads"]
