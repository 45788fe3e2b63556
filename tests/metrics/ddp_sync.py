"""torchmetrics' own ``Metric.sync`` driven by a fake all_gather: what a DDP run's ranks would
hand each other, without processes (shared by the protocol DDP tests)."""

from __future__ import annotations

import torch


def sync_like_ddp(local, others) -> None:
    """Sync ``local`` as rank 0 of a run whose other ranks hold ``others``' states
    (the fake all_gather returns ``[local, *others]`` per state)."""
    states = [{k: (torch.cat(v) if isinstance(v, list) and v else (torch.zeros(0) if isinstance(v, list) else v))
               for k, v in o.metric_state.items()} for o in others]
    names = list(local._reductions)

    def gather(tensor, group=None):
        name = names.pop(0)
        return [tensor] + [s[name] for s in states]

    local.sync(dist_sync_fn=gather, should_sync=True, distributed_available=lambda: True)
