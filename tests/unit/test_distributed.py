"""How the epoch's pairs are split across ranks (cliper.distributed.batch_slices), without processes."""

from __future__ import annotations

import numpy as np
import pytest

from cliper.config_scale import DistributedConfig
from cliper.distributed import DistContext, batch_slices, context


def _parts(n: int, batch: int, world: int, rule: str) -> list[list[np.ndarray]]:
    positions = np.arange(n)
    return [
        [positions[s] for s in batch_slices(n, batch, DistContext(world, rank, rank, rule))]
        for rank in range(world)
    ]


@pytest.mark.parametrize(("n", "batch", "world"), [(1000, 64, 2), (1001, 64, 3), (129, 64, 2), (130, 64, 4)])
def test_global_rule_splits_every_batch_of_one_process_into_disjoint_rank_parts(n, batch, world):
    parts = _parts(n, batch, world, "global")
    counts = {len(p) for p in parts}
    assert len(counts) == 1  # DDP: every rank makes the same number of steps
    steps = counts.pop()
    one = _parts(n, batch, 1, "global")[0]
    assert steps in (len(one), len(one) - 1)  # a last batch smaller than the world joins the one before
    for step in range(steps):
        joined = np.sort(np.concatenate([parts[r][step] for r in range(world)]))
        assert all(len(parts[r][step]) for r in range(world))  # no empty step on any rank
        if step < steps - 1:
            assert np.array_equal(joined, one[step])  # the same batch as in one process
    assert np.array_equal(np.sort(np.concatenate([np.concatenate(p) for p in parts])), np.arange(n))


def test_per_rank_rule_gives_each_rank_full_batches_of_disjoint_pairs():
    parts = _parts(1001, 64, 2, "per_rank")
    assert len(parts[0]) == len(parts[1]) == 8 and len(parts[0][0]) == 64
    seen = np.concatenate([np.concatenate(p) for p in parts])
    assert len(np.unique(seen)) == len(seen) == 1000  # n // world each, one pair dropped this epoch


def test_context_follows_torchrun_environment(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert context(DistributedConfig()) == DistContext(4, 3, 1, "global")
    assert context(DistributedConfig(enabled=False)).world_size == 1
    monkeypatch.delenv("WORLD_SIZE")
    assert not context(DistributedConfig()).active
