"""The worker pool's scheduling: learnable fusions first, then repeated seeds; a single run left to
the stage; a dead worker."""

from __future__ import annotations

from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from types import SimpleNamespace

import pytest
import torch

from cliper.config import FusionConfig, Params, from_dict
from cliper.errors import CliperError
from cliper.stages.train_workers import Workers, pool

PARAMS = from_dict(Params, {"train": {"progress": False}})


class RecordingExecutor:
    """Runs nothing: records what was submitted and answers with a finished future (or an error)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.submitted: list[tuple] = []
        self.error = error

    def submit(self, fn, *args):
        self.submitted.append(args)
        future: Future = Future()
        if self.error is not None:
            future.set_exception(self.error)
        else:
            future.set_result({"best_epoch": 1, "valid": 0.5, "seconds": 0.1})
        return future


def test_learnable_fusions_are_submitted_first_and_the_rest_keep_their_order():
    executor = RecordingExecutor()
    workers = Workers(PARAMS, None, executor, 1)
    names = ["mean", "concat", "self_attention", "sum"]
    workers.train_retrains({"x": 1}, [FusionConfig(name=n) for n in names], [])
    assert [args[4].name for args in executor.submitted] == ["self_attention", "mean", "concat", "sum"]
    assert all(args[3] == {"x": 1} for args in executor.submitted)


def test_repeated_seeds_follow_the_fusions_in_the_same_phase():
    executor = RecordingExecutor()
    Workers(PARAMS, None, executor, 1).train_retrains({"x": 1}, [FusionConfig(name="mean")], [1000, 1001])
    assert [(args[3], args[4] and args[4].name, args[5]) for args in executor.submitted] == [
        ({"x": 1}, "mean", None), ({"x": 1}, None, 1000), ({"x": 1}, None, 1001)]


def test_grid_points_are_all_submitted_and_one_process_submits_nothing():
    executor = RecordingExecutor()
    Workers(PARAMS, None, executor, 1).train_points([{"w": 0.1}, {"w": 0.3}])
    assert [args[3] for args in executor.submitted] == [{"w": 0.1}, {"w": 0.3}]
    assert [args[4:] for args in executor.submitted] == [(None, None), (None, None)]
    Workers(PARAMS, None, None, 1).train_points([{"w": 0.1}])  # workers: 1, no pool: nothing to do


def test_a_single_run_is_left_to_the_stage_itself():
    executor = RecordingExecutor()
    Workers(PARAMS, None, executor, 1).train_retrains({"x": 1}, [FusionConfig(name="mean")], [])
    Workers(PARAMS, None, executor, 1).train_retrains({"x": 1}, [], [1000])
    Workers(PARAMS, None, executor, 1).train_points([{"w": 0.1}])
    assert executor.submitted == []  # trained in the stage's process, with all its threads


def test_a_dead_worker_process_is_a_clear_error():
    workers = Workers(PARAMS, None, RecordingExecutor(BrokenProcessPool("gone")), 1)
    with pytest.raises(CliperError, match="train.workers process died"):
        workers.train_points([{"w": 0.1}, {"w": 0.3}])


@pytest.mark.parametrize(
    ("workers", "most_tasks", "processes"), [(4, 1, None), (4, 2, 2), (2, 7, 2), (1, 7, None)]
)
def test_the_pool_has_no_more_processes_than_a_phase_has_runs(workers, most_tasks, processes):
    params = from_dict(Params, {"train": {"workers": workers, "progress": False}})
    ctx = SimpleNamespace(settings=SimpleNamespace(world_size=1))
    with pool(params, None, ctx, most_tasks) as made:
        size = None if made.executor is None else made.executor._max_workers
    assert size == processes
    if processes:
        assert made.threads == max(1, torch.get_num_threads() // processes)
