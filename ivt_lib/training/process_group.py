"""Data parallelism over ``accelerate launch`` processes without the DDP wrapper: sums, gathers and one all-reduce of
the LoRA gradients (see :mod:`ivt_lib.training.grpo` for why not ``DistributedDataParallel``). With one process every call is
the identity, so the same trainer code runs in a notebook and under ``accelerate launch``."""
from __future__ import annotations

from typing import Sequence

import torch


class ProcessGroup:
    """This process's place in the group (``rank`` of ``world``) and the few collectives the GRPO trainer needs."""

    def __init__(self, rank: int = 0, world: int = 1) -> None:
        self.rank, self.world = rank, world
        self.is_main = rank == 0

    def barrier(self) -> None:
        """Wait for every process (e.g. while the main one writes a checkpoint)."""
        if self.world > 1:
            torch.distributed.barrier()

    def broadcast(self, params: Sequence[torch.Tensor]) -> None:
        """Copy rank 0's tensors to every process, as DDP does at start."""
        if self.world > 1:
            for p in params:
                torch.distributed.broadcast(p.data, src=0)

    def all_sum(self, *values: float, device=None) -> list[float]:
        """Sum scalars over processes."""
        if self.world == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def all_gather(self, obj) -> list:
        """Every process's ``obj``, in rank order."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def sum_gradients(self, params: Sequence[torch.Tensor]) -> None:
        """One ``all_reduce`` of the flattened gradients: each process's loss is already scaled by the global token
        count, so the sum is the gradient of the whole batch's loss."""
        if self.world == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        off = 0
        for p in params:
            n = p.numel()
            p.grad = flat[off:off + n].view_as(p).clone()
            off += n
