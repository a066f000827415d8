"""Grid points trained side by side: ``train.workers`` processes fill the checkpoint cache.

With ``train.workers: N > 1`` the train stage first trains every grid point in a pool of ``N``
processes (spawned; each with ``1/N`` of this process's torch threads), then runs its usual
grid search, which finds every point finished in ``train.cache_dir`` and only reloads it. The
compared fusions (``train.compare_fusions``) follow the same way once the point is chosen. The
seeds of ``train.repeat_seeds`` are trained in the same phase. The
checkpoint folders are the ones a single process would write (same data, features, config and
seed), so the chosen point, the models and a killed run's resume are those of ``workers: 1``
at the same thread count (``tests/pipeline/test_train_workers.py``). A small CPU model uses the
threads of one process poorly, so processes finish a grid sooner: the demo's train stage on 2
cores, 380 s in one process, 284 s in two, byte-identical outputs
(``benchmarks/results/train_workers.md``).
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from cliper.config import FusionConfig, Params
from cliper.errors import CliperError
from cliper.fusion import is_learnable

if TYPE_CHECKING:
    from cliper.stages.train import GridContext

logger = logging.getLogger(__name__)

# per worker process: the loaded inputs of the run it serves, keyed by (root, params)
_CONTEXTS: dict[tuple[str, str], GridContext] = {}


def _context(params: Params, root: Path, threads: int) -> GridContext:
    from cliper.stages.train import grid_context  # the stage imports this module

    torch.set_num_threads(threads)
    key = (str(root), repr(params))
    if key not in _CONTEXTS:
        ctx = grid_context(params, root)
        _CONTEXTS.clear()
        _CONTEXTS[key] = replace(ctx, settings=replace(ctx.settings, progress=False))
    return _CONTEXTS[key]


def train_task(
    params: Params, root: Path, threads: int, point: dict[str, Any], fusion: FusionConfig | None,
    seed: int | None = None,
) -> dict[str, Any]:
    """Train one grid point (or one compared fusion, or one repeated seed, at it) into the checkpoint cache.

    Runs in a worker process; returns the best epoch, its valid score and the seconds taken.
    """
    from cliper.stages.train import compare_fusions, repeat_point, search_grid

    ctx, started = _context(params, root, threads), time.perf_counter()
    if seed is not None:
        record = repeat_point(params, ctx, point, seed)
    elif fusion is None:
        record = search_grid(params, ctx, [point]).points[0]
    else:
        record = compare_fusions(params, ctx, point, [fusion])[fusion.name][1]
    score = record["valid"].get(ctx.settings.valid_metric, float("nan"))
    return {"best_epoch": record["best_epoch"], "valid": score, "seconds": time.perf_counter() - started}


class Workers:
    """What the train stage asks of the pool; with ``workers: 1`` every call does nothing."""

    def __init__(
        self, params: Params, root: Path, executor: ProcessPoolExecutor | None, threads: int
    ) -> None:
        self.params, self.root, self.executor, self.threads = params, root, executor, threads

    def train_points(self, points: list[dict[str, Any]]) -> None:
        """Train every grid point in the pool (their checkpoints are then resumed, finished)."""
        self._run([(p, None, None) for p in points], "grid points")

    def train_retrains(self, point: dict[str, Any], fusions: list[FusionConfig], seeds: list[int]) -> None:
        """Train every compared fusion, then every repeated seed, at the chosen ``point`` in the pool.

        Learnable fusions go first: one runs in every training step (the demo's self-attention
        run is the longest), so starting it first keeps it from running alone at the end.
        """
        ordered = sorted(fusions, key=lambda f: not is_learnable(f.name))  # stable: list order otherwise
        self._run([(point, f, None) for f in ordered] + [(point, None, s) for s in seeds], "retrains")

    def _run(self, tasks: list[tuple[dict[str, Any], FusionConfig | None, int | None]], what: str) -> None:
        if self.executor is None or len(tasks) < 2:  # one run: the stage trains it itself, all threads
            return
        futures: dict[Future, str] = {
            self.executor.submit(train_task, self.params, self.root, self.threads, point, fusion, seed):
            (fusion.name if fusion is not None else f"seed {seed}" if seed is not None else str(point))
            for point, fusion, seed in tasks
        }
        bar = tqdm(total=len(futures), desc=f"train: {what}", unit="run",
                   disable=not self.params.train.progress)
        try:
            for future in as_completed(futures):
                out = future.result()
                bar.update(1)
                logger.info("%s %s: valid %.4f at epoch %d (%.0f s, worker process)", what,
                            futures[future], out["valid"], out["best_epoch"], out["seconds"])
        except BrokenProcessPool as exc:
            raise CliperError(
                "a train.workers process died (out of memory, or killed); the runs it finished are kept "
                "in train.cache_dir and resume: rerun the stage, with fewer train.workers if memory is short"
            ) from exc
        finally:
            bar.close()


@contextmanager
def pool(params: Params, root: Path, ctx: GridContext, most_tasks: int) -> Iterator[Workers]:
    """A :class:`Workers` over ``min(train.workers, most_tasks)`` spawned processes (none when 1).

    ``most_tasks``: the most runs one phase trains (grid points, or compared fusions); more
    processes than that would only split the threads further.

    Raises:
        CliperError: ``train.workers > 1`` under torchrun (each rank is already a process).
    """
    n = min(params.train.workers, most_tasks)
    if n <= 1:
        yield Workers(params, root, None, 1)
        return
    if ctx.settings.world_size > 1:
        raise CliperError(
            f"params.yaml train.workers is {params.train.workers} under torchrun "
            f"(world size {ctx.settings.world_size}); "
            "distributed training uses one process per rank: set train.workers: 1"
        )
    threads = max(1, torch.get_num_threads() // n)
    logger.info("train.workers: %d processes, %d torch thread(s) each", n, threads)
    spawn = multiprocessing.get_context("spawn")  # no forked torch thread pools
    with ProcessPoolExecutor(max_workers=n, mp_context=spawn) as executor:
        try:
            yield Workers(params, root, executor, threads)
        except BaseException:
            executor.shutdown(wait=False, cancel_futures=True)
            raise
