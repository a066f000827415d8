"""The Prefect task of one extraction shard (sharded ``extract`` stage, :mod:`flows.extract_shards`).

The task only picks the worker's GPU and calls the library's shard function
(:func:`cliper.stages.extract_shards.run_shard_json`); a shard whose batch files all exist returns
at once, so a retried or rescheduled task never redoes finished work.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from cliper.stages.extract_shards import run_shard_json


def worker_gpu() -> int | None:
    """The GPU of this Dask worker: its ordinal among the machine's GPUs (None on CPU workers).

    A temporary ``LocalCluster`` names its workers 0..n-1 and gets one worker per GPU; a worker
    started with one visible GPU (``CUDA_VISIBLE_DEVICES``, as dask-cuda does) uses that one.
    """
    import torch

    if not torch.cuda.is_available():
        return None
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):  # not inside a Dask worker
        return None
    ordinal = int(name) if str(name).isdigit() else 0
    return ordinal % torch.cuda.device_count()


@task(
    name="extract-shard",
    task_run_name="extract-shard-{job[index]}",
    retries=1,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def extract_shard(params: dict[str, Any], root: str, job: dict[str, Any]) -> dict[str, Any]:
    """Encode the missing batch files of one shard; returns its :class:`ShardReport` as a dict."""
    report = run_shard_json(params, root, job, worker_gpu())
    get_run_logger().info(
        "shard %d: %d of %d batches encoded in %.1f s (pid %d)",
        report["index"],
        report["encoded"],
        report["batches"],
        report["seconds"],
        report["pid"],
    )
    return report
