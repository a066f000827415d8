"""Sharded extraction on Dask: one Prefect task per shard through prefect-dask's ``DaskTaskRunner``.

:func:`run_shards` is the executor named by ``clip.extract.shards.executor``; the extract stage
(``cliper run extract``, so also ``dvc repro``) calls it with the shard jobs and then assembles the
arrays from the batch files the shards wrote. The cluster is, in this order: the scheduler at
``clip.extract.shards.address``; the one in Dask's own ``DASK_SCHEDULER_ADDRESS``; else a temporary
``LocalCluster`` on ``clip.extract.shards.host`` with ``n_workers`` single-threaded processes, or
one process per GPU (each task then asks for the worker's ``GPU`` resource, so one shard per GPU at
a time). A worker that dies mid-shard has its task rescheduled by Dask; the shard keeps the batches
it had finished.
"""

from __future__ import annotations

import os
from typing import Any

from prefect import flow, get_run_logger, unmapped
from prefect_dask import DaskTaskRunner

from cliper.config import Params, from_dict
from tasks.extract_shards import extract_shard

ADDRESS_ENV = "DASK_SCHEDULER_ADDRESS"  # Dask's own setting (dask.config "scheduler-address")
GPU_RESOURCE = "GPU"


def _gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def task_runner(params: Params) -> DaskTaskRunner:
    """The ``DaskTaskRunner`` for ``clip.extract.shards``: an existing cluster or a LocalCluster."""
    cfg = params.clip.extract.shards
    address = cfg.address or os.environ.get(ADDRESS_ENV)
    if address:
        return DaskTaskRunner(address=address)
    gpus = _gpus()
    kwargs: dict[str, Any] = {
        "n_workers": gpus or cfg.n_workers,
        "threads_per_worker": 1,
        "processes": True,
        "host": cfg.host,
        "dashboard_address": None,
    }
    if gpus:
        kwargs["resources"] = {GPU_RESOURCE: 1}
    return DaskTaskRunner(cluster_kwargs=kwargs)


@flow(name="cliper-extract-shards", validate_parameters=False)
def extract_shards_flow(
    params: dict[str, Any], root: str, jobs: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Submit one ``extract-shard`` task per job to the flow's Dask task runner and wait for all."""
    logger = get_run_logger()
    logger.info("%d extraction shards", len(jobs))
    futures = extract_shard.map(params=unmapped(params), root=unmapped(root), job=jobs)
    reports = [f.result() for f in futures]
    logger.info(
        "%d of %d batches encoded", sum(r["encoded"] for r in reports), sum(r["batches"] for r in reports)
    )
    return reports


def run_shards(params: dict[str, Any], root: str, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Executor for ``clip.extract.shards.executor``: run the shard flow on its Dask cluster."""
    runner = task_runner(from_dict(Params, params, source="<shard params>"))
    flow_ = extract_shards_flow.with_options(task_runner=runner)
    if isinstance(runner.cluster_kwargs.get("resources"), dict):
        import dask

        with dask.annotate(resources={GPU_RESOURCE: 1}):
            return flow_(params=params, root=root, jobs=jobs)
    return flow_(params=params, root=root, jobs=jobs)
