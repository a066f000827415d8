"""Typed config sections for running past one process: sharded extraction and multi-process training.

Part of :class:`cliper.config.Params` (``clip.extract.shards`` and ``train.distributed``), kept in
their own module so ``cliper/config.py`` stays small. Ranges use the ``field(metadata={"ge": ...})``
convention of :mod:`cliper.config_bounds`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# Prefect issue #12877: with DaskTaskRunner, a flow submitting ~2,000 tasks stopped scheduling after
# ~200 and failed with a PoolTimeout on the API. Shards are coarse units (many batches each), so a
# catalog of any size needs only a few shards per worker; the cap keeps every run far below that.
MAX_SHARDS = 128


@dataclass(frozen=True)
class ShardConfig:
    """``clip.extract.shards``: split extraction into shards run as Prefect tasks on a Dask cluster.

    ``n_shards: 0`` extracts in the stage's own process (no Prefect, no Dask). With ``n_shards >= 1``
    the stage hands the shards to ``executor`` (``module:function``, default the Prefect flow in
    ``flows/extract_shards.py`` with prefect-dask's ``DaskTaskRunner``): on the scheduler at
    ``address``, else at Dask's own ``DASK_SCHEDULER_ADDRESS``, else on a temporary ``LocalCluster``
    of ``n_workers`` processes (one per GPU when the machine has GPUs). Shards write the same batch
    files as a single-process run, so the final arrays are identical and a killed shard resumes.
    """

    n_shards: int = field(default=0, metadata={"ge": 0, "le": MAX_SHARDS})
    address: str | None = None  # tcp://host:8786 of a running Dask scheduler
    n_workers: int = field(default=2, metadata={"ge": 1})  # LocalCluster worker processes (CPU)
    host: str = "127.0.0.1"  # interface the temporary LocalCluster listens on
    executor: str = "flows.extract_shards:run_shards"


@dataclass(frozen=True)
class DistributedConfig:
    """``train.distributed``: DistributedDataParallel when launched by ``torchrun`` (WORLD_SIZE > 1).

    The same ``cliper run train`` runs in every process: the train pairs are split across ranks
    each epoch, every rank propagates the full graph, gradients are averaged by DDP, rank 0
    evaluates, decides early stopping (broadcast to all) and writes checkpoints and outputs.
    ``batch: global`` keeps ``train.batch_size`` as the batch of one optimiser step (each rank
    takes 1/N of it: the same steps as one process); ``per_rank`` gives each rank a full batch
    (N times fewer steps per epoch).
    """

    enabled: bool = True  # false: ignore the torchrun environment (every process trains alone)
    backend: Literal["auto", "gloo", "nccl"] = "auto"  # auto: nccl on CUDA, gloo on CPU
    batch: Literal["global", "per_rank"] = "global"
    timeout_s: int = field(
        default=1800, metadata={"ge": 1}
    )  # collective timeout (rank 0 evaluates meanwhile)
