"""Multi-process training with ``torch.distributed``: what the trainer needs, nothing else.

``torchrun --nproc-per-node N -m cliper.cli run train`` starts the same stage in N processes;
torchrun's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``) makes
:func:`setup` join the process group (gloo on CPU, NCCL on CUDA, ``train.distributed.backend``).
Every rank holds the full model and the full graphs (the graph operations see every train edge,
so propagation is the same as in one process) and the same random streams (same seeds, and every
rank draws the whole epoch's permutation, negatives and FREEDOM edge sample), so only the loss is
split: :func:`batch_slices` gives each rank its part of the epoch's pairs and
``DistributedDataParallel`` averages the gradients. Rank 0 evaluates and decides early stopping;
:func:`broadcast` hands its results to the others. One process (no torchrun, or
``train.distributed.enabled: false``) is world size 1 and every function here is a no-op.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from cliper.config_scale import DistributedConfig

logger = logging.getLogger(__name__)

WORLD_SIZE_ENV, RANK_ENV, LOCAL_RANK_ENV = "WORLD_SIZE", "RANK", "LOCAL_RANK"  # set by torchrun


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run: world size, rank, local rank, batch rule."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    batch: str = "global"

    @property
    def active(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: evaluates, decides, writes."""
        return self.rank == 0


def world_size(cfg: DistributedConfig) -> int:
    """The number of processes this run trains with (1 unless torchrun started several)."""
    return int(os.environ.get(WORLD_SIZE_ENV, "1")) if cfg.enabled else 1


def context(cfg: DistributedConfig) -> DistContext:
    """The :class:`DistContext` from the torchrun environment (world size 1 without it)."""
    size = world_size(cfg)
    if size <= 1:
        return DistContext(batch=cfg.batch)
    return DistContext(size, int(os.environ[RANK_ENV]), int(os.environ.get(LOCAL_RANK_ENV, "0")), cfg.batch)


def is_main() -> bool:
    """Whether this process is rank 0 (or the only one)."""
    return not dist.is_initialized() or dist.get_rank() == 0


def setup(cfg: DistributedConfig, device: torch.device) -> tuple[DistContext, torch.device]:
    """Join the process group when several processes run; returns the context and this rank's device."""
    ctx = context(cfg)
    if not ctx.active:
        return ctx, device
    if device.type == "cuda":
        torch.cuda.set_device(ctx.local_rank)
        device = torch.device("cuda", ctx.local_rank)
    if not dist.is_initialized():
        backend = cfg.backend if cfg.backend != "auto" else ("nccl" if device.type == "cuda" else "gloo")
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=cfg.timeout_s))
        logger.info("rank %d of %d joined (%s on %s)", ctx.rank, ctx.world_size, backend, device)
    return ctx, device


def finish() -> None:
    """Leave the process group (end of the train stage)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


class _Loss(nn.Module):
    """``forward`` = the model's ``calculate_loss``, so DDP sees one forward per step."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        return self.model.calculate_loss(users, pos, neg)


def loss_function(model: nn.Module, ctx: DistContext, device: torch.device) -> Callable[..., torch.Tensor]:
    """``model.calculate_loss``, wrapped in DDP (gradients averaged over ranks) when several run.

    Buffers (graphs, frozen features) are built identically on every rank from the same inputs,
    so DDP neither broadcasts nor checks them (torch.sparse CSR buffers cannot be broadcast).
    """
    if not ctx.active:
        return model.calculate_loss
    wrapper = _Loss(model)
    buffers = [f"model.{name}" for name, _ in model.named_buffers()]
    nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(wrapper, buffers)
    ids = [device.index] if device.type == "cuda" else None
    # find_unused_parameters: e.g. FREEDOM's projection biases cancel in its modality BPR terms (no grad)
    return nn.parallel.DistributedDataParallel(
        wrapper, device_ids=ids, broadcast_buffers=False, find_unused_parameters=True
    )


def batch_slices(n: int, batch_size: int, ctx: DistContext) -> list[slice]:
    """This rank's positions in the epoch's shuffled pairs, one slice per optimiser step.

    ``global``: the epoch is cut into batches of ``batch_size`` as in one process; rank ``r``
    takes positions ``r, r + N, ...`` of each (a last batch smaller than N joins the one before,
    so no rank gets an empty step). ``per_rank``: rank ``r`` takes every N-th pair from ``r``
    (``n // N`` each, the rest dropped for the epoch) in batches of ``batch_size``. Every rank
    gets the same number of steps, as DDP needs.
    """
    size, rank = ctx.world_size, ctx.rank
    if ctx.batch == "per_rank" and size > 1:
        end = rank + (n // size) * size
        return [
            slice(start, min(start + batch_size * size, end), size)
            for start in range(rank, end, batch_size * size)
        ]
    starts = list(range(0, n, batch_size))
    if size > 1 and len(starts) > 1 and n - starts[-1] < size:
        starts.pop()
    bounds = [*starts[1:], n]
    return [slice(s + rank, e, size) for s, e in zip(starts, bounds, strict=True)]


def mean_over_ranks(total: float, count: int, ctx: DistContext) -> float:
    """``sum(total) / sum(count)`` over all ranks (the epoch's mean batch loss)."""
    if not ctx.active:
        return total / max(count, 1)
    both = torch.tensor([total, float(count)], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        both = both.cuda()
    dist.all_reduce(both)
    return float(both[0] / both[1].clamp_min(1))


def broadcast(value: Any, ctx: DistContext) -> Any:
    """Rank 0's ``value`` on every rank (a picklable object)."""
    if not ctx.active:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_fields(obj: Any, names: Sequence[str], ctx: DistContext) -> None:
    """Set ``obj``'s attributes ``names`` on every rank to rank 0's values."""
    if not ctx.active:
        return
    values = broadcast({n: getattr(obj, n) for n in names} if ctx.is_main else None, ctx)
    for name, value in values.items():
        setattr(obj, name, value)
