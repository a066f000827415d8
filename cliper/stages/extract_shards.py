"""Sharded extraction: the shard plan, the shard compute function and the hand-off to an executor.

A shard is a set of the extraction's batch files (``text_#####.npy``, ``image_#####.npy`` in the
stage's cache folder, :mod:`cliper.clip.extract`), strided over the batch order so every shard
gets short and long text chunks alike. :func:`run_shard` encodes the batches of one shard that
have no file yet, exactly as the single-process stage would (same batches, same padding), so the
arrays the stage assembles afterwards are identical whatever ran where. A shard whose files all
exist is skipped without loading the model; a shard killed half-way keeps its finished batches.

The executor (``clip.extract.shards.executor``, ``module:function``) runs the shards somewhere:
the default is the Prefect flow of ``flows/extract_shards.py`` on a Dask cluster. The library
never imports Prefect or Dask; the executor is only called, with JSON-able arguments:
``executor(params: dict, root: str, jobs: list[dict]) -> list[dict]`` (one :class:`ShardReport`
as a dict per job).
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cliper.clip.extract import (
    encode_image_batches,
    encode_text_batches,
    image_batches,
    plan_text,
    text_batches,
)
from cliper.config import Params, from_dict, to_dict
from cliper.errors import CliperError
from cliper.stages.extract import ExtractSetup, prepare
from cliper.views.prompts import BpeTokenizer

log = logging.getLogger(__name__)

Executor = Callable[[dict[str, Any], str, list[dict[str, Any]]], list[dict[str, Any]]]
_SETUP: dict[str, ExtractSetup] = {}  # per worker process: the last setup, reused by its next shard


@dataclass(frozen=True)
class ShardJob:
    """One shard: its batch indices, the cache folder they belong in and the device kind."""

    index: int
    n_shards: int
    text: tuple[int, ...]
    image: tuple[int, ...]
    cache: str
    device: str  # "cpu" | "cuda" (the driver's device kind: it is part of the cache key)

    def files(self) -> list[Path]:
        """The batch files this shard writes."""
        cache = Path(self.cache)
        return [cache / f"text_{k:05d}.npy" for k in self.text] + [
            cache / f"image_{k:05d}.npy" for k in self.image
        ]


@dataclass(frozen=True)
class ShardReport:
    """What one shard did: batches it owns, batches it encoded (0 = all were already done)."""

    index: int
    batches: int
    encoded: int
    seconds: float
    pid: int


def plan_shards(n_text: int, n_image: int, n_shards: int, cache: Path, device: str) -> list[ShardJob]:
    """``n_shards`` jobs, batch ``k`` in shard ``k % n_shards`` (empty shards dropped)."""
    jobs = [
        ShardJob(
            s,
            n_shards,
            tuple(range(s, n_text, n_shards)),
            tuple(range(s, n_image, n_shards)),
            str(cache),
            device,
        )
        for s in range(n_shards)
    ]
    return [j for j in jobs if j.text or j.image]


def _setup_for(params: Params, root: Path, job: ShardJob) -> ExtractSetup:
    cached = _SETUP.get(job.cache)
    if cached is None:
        cached = prepare(params, root, device=job.device)
        if str(cached.cache) != job.cache:
            raise CliperError(
                f"extract shard {job.index}: this worker sees other inputs or settings "
                f"(cache {cached.cache}, driver {job.cache}); give every worker the same files and packages"
            )
        _SETUP.clear()
        _SETUP[job.cache] = cached
    return cached


def run_shard(params: Params, root: Path, job: ShardJob, gpu_index: int | None = None) -> ShardReport:
    """Encode the missing batch files of ``job`` (on GPU ``gpu_index`` when given)."""
    started = time.perf_counter()
    n_batches = len(job.text) + len(job.image)
    if all(path.exists() for path in job.files()):
        return ShardReport(job.index, n_batches, 0, time.perf_counter() - started, os.getpid())
    if gpu_index is not None:
        torch.cuda.set_device(gpu_index)
    setup = _setup_for(params, root, job)
    loaded, cfg = setup.loaded, params.clip.extract
    # DataLoader workers cannot start inside a daemonic process (a Dask worker by default)
    num_workers = 0 if multiprocessing.current_process().daemon else cfg.num_workers
    tok = BpeTokenizer.from_open_clip(loaded.tokenizer, loaded.context_length)
    plan = plan_text(setup.ordered, setup.prefixes, tok)
    was_training = loaded.model.training
    loaded.model.eval()
    try:
        encoded = encode_text_batches(loaded, plan, setup.cache, cfg.batch_size, job.text)
        encoded += encode_image_batches(
            loaded, setup.paths, setup.cache, cfg.batch_size, num_workers, job.image
        )
    finally:
        loaded.model.train(was_training)
    log.info("extract shard %d/%d: %d of %d batches encoded", job.index, job.n_shards, encoded, n_batches)
    return ShardReport(job.index, n_batches, encoded, time.perf_counter() - started, os.getpid())


def run_shard_json(params: dict[str, Any], root: str, job: dict[str, Any], gpu_index: int | None) -> dict:
    """:func:`run_shard` with the executor's JSON-able arguments and result."""
    shard = ShardJob(**{**job, "text": tuple(job["text"]), "image": tuple(job["image"])})
    report = run_shard(from_dict(Params, params, source="<shard params>"), Path(root), shard, gpu_index)
    return dataclasses.asdict(report)


def resolve_executor(spec: str) -> Executor:
    """``module:function`` -> the function; a CliperError naming ``clip.extract.shards.executor``."""
    module_name, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise CliperError(
            f"params.yaml clip.extract.shards.executor: cannot load '{spec}' ({exc}); "
            "expected module:function (default flows.extract_shards:run_shards, needs prefect-dask)"
        ) from exc


def run_shards(params: Params, root: Path, setup: ExtractSetup) -> dict[str, int]:
    """Plan the shards, hand them to the executor, check every batch file exists; returns metrics."""
    cfg = params.clip.extract
    loaded = setup.loaded
    plan = plan_text(
        setup.ordered, setup.prefixes, BpeTokenizer.from_open_clip(loaded.tokenizer, loaded.context_length)
    )
    n_text = len(text_batches(plan, cfg.batch_size))
    n_image = len(image_batches(len(setup.paths), cfg.batch_size))
    setup.cache.mkdir(parents=True, exist_ok=True)
    jobs = plan_shards(n_text, n_image, cfg.shards.n_shards, setup.cache, loaded.device.type)
    executor = resolve_executor(cfg.shards.executor)
    log.info(
        "extract: %d text + %d image batches in %d shards -> %s",
        n_text,
        n_image,
        len(jobs),
        cfg.shards.executor,
    )
    reports = executor(to_dict(params), str(root), [dataclasses.asdict(j) for j in jobs])
    missing = [str(p) for j in jobs for p in j.files() if not p.exists()]
    if missing:
        raise CliperError(
            f"extract: shard executor done but {len(missing)} batch files are missing (e.g. {missing[0]})"
        )
    return {
        "n_shards": len(jobs),
        "batches_total": n_text + n_image,
        "batches_encoded": int(sum(r["encoded"] for r in reports)),
    }
