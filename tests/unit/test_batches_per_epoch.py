"""``train.batches_per_epoch``: a fixed number of optimiser steps per epoch, whatever the data size.

Off (null) the trainer cuts the epoch into MMRec's batches of ``batch_size``; on, the batch is
``ceil(pairs / batches_per_epoch)`` so that the steps (each one a full-graph propagation for the
graph backbones) stay the same as the data grows. The steps are counted on the real optimiser.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cliper.config import load_params
from cliper.evaluate import EvalTarget
from cliper.models import InteractionData, build_model
from cliper.stages.train import settings_from
from cliper.train import Trainer, TrainSettings, seed_everything

SETTINGS = TrainSettings(epochs=1, patience=3, batch_size=10, seed=0, device="cpu", topk=(5,),
                         valid_metric="recall@5", progress=False)  # fmt: skip


def steps_in_one_epoch(n_users: int, settings: TrainSettings) -> tuple[int, int]:
    """(optimiser steps, train pairs) of one LightGCN epoch on ``n_users`` users x 4 pairs each."""
    n_items = 12
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(n_users), 4)
    items = np.concatenate([rng.choice(n_items, 4, replace=False) for _ in range(n_users)])
    valid = EvalTarget.build(n_users, n_items, users, items, np.arange(n_users), np.zeros(n_users, int))
    seed_everything(0)
    model = build_model("lightgcn", InteractionData(n_users, n_items, users, items), {"embedding_size": 4})
    trainer = Trainer(model, users, items, n_items, valid, settings)
    steps = 0
    step = trainer.optimizer.step

    def counted(*args, **kwargs):
        nonlocal steps
        steps += 1
        return step(*args, **kwargs)

    trainer.optimizer.step = counted
    trainer.train_epoch()
    return steps, len(users)


@pytest.mark.parametrize("n_users", [10, 40, 160])
def test_fixed_steps_per_epoch_as_the_data_grows(n_users: int) -> None:
    steps, pairs = steps_in_one_epoch(n_users, replace(SETTINGS, batches_per_epoch=4))
    assert steps == 4, (steps, pairs)


def test_default_keeps_mmrec_batches() -> None:
    for n_users in (10, 40):
        steps, pairs = steps_in_one_epoch(n_users, SETTINGS)
        assert steps == -(-pairs // SETTINGS.batch_size)  # ceil: 4 then 16 steps


def test_the_param_reaches_the_trainer() -> None:
    params = load_params("params.yaml", {"train.batches_per_epoch": 7})
    assert settings_from(params).batches_per_epoch == 7
    assert settings_from(load_params("params.yaml")).batches_per_epoch is None
