"""Early stopping (MMRec ``utils.early_stopping``): stop after exactly ``patience + 1`` evaluations
in a row that do not beat the best valid score (ties do not count as better), then restore the
weights of the best evaluation.

The valid scores are scripted (``Trainer.evaluate`` replaced), the training is real, so the
weights change every epoch and the restored weights can be told apart.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest
import torch

from cliper.evaluate import EvalTarget
from cliper.models import InteractionData, build_model
from cliper.train import Trainer, TrainSettings, seed_everything

N_USERS, N_ITEMS = 6, 8
SETTINGS = TrainSettings(
    epochs=100, patience=3, batch_size=8, learning_rate=0.05, seed=0, device="cpu",
    topk=(5,), valid_metric="recall@5", progress=False,
)  # fmt: skip


def run(scores: list[float], settings: TrainSettings = SETTINGS) -> tuple[Trainer, dict[int, dict]]:
    """Train BPR with scripted valid scores; returns the trainer and the weights after each epoch."""
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(N_USERS), 3)
    items = np.concatenate([rng.choice(N_ITEMS, 3, replace=False) for _ in range(N_USERS)])
    targets = (np.arange(N_USERS) + 1) % N_ITEMS
    valid = EvalTarget.build(N_USERS, N_ITEMS, users, items, np.arange(N_USERS), targets)
    seed_everything(0)
    model = build_model("bpr", InteractionData(N_USERS, N_ITEMS, users, items), {"embedding_size": 4})
    trainer = Trainer(model, users, items, N_ITEMS, valid, settings)
    script = itertools.chain(scores, itertools.repeat(0.0))  # never better once the list ends
    trainer.evaluate = lambda target: {"recall@5": next(script)}  # noqa: ARG005 - scripted valid metric
    snapshots: dict[int, dict] = {}

    def snapshot(epoch: int) -> None:
        snapshots[epoch] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    trainer.fit(on_epoch_end=snapshot)
    return trainer, snapshots


def same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    ("scores", "best_epoch"),
    [
        ([0.1, 0.3, 0.2, 0.3, 0.25, 0.1], 1),  # a tie (0.3) is not an improvement
        ([0.1, 0.2, 0.1, 0.1, 0.1, 0.4, 0.3, 0.3, 0.2, 0.1], 5),  # improvement resets the count
    ],
)
def test_stops_after_patience_plus_one_bad_evaluations(scores: list[float], best_epoch: int) -> None:
    trainer, snapshots = run(scores)
    state = trainer.state
    assert state.finished
    assert state.best_epoch == best_epoch and state.best_score == max(scores)
    assert state.epoch == best_epoch + 1 + SETTINGS.patience + 1  # exactly patience + 1 bad evaluations
    assert len(state.history) == state.epoch
    last = state.epoch - 1
    assert not same(snapshots[best_epoch], snapshots[last])  # training moved the weights on
    assert same(trainer.model.state_dict(), snapshots[best_epoch])  # best weights restored


def test_patience_zero_stops_at_the_first_bad_evaluation() -> None:
    trainer, _ = run([0.2, 0.1], replace(SETTINGS, patience=0))
    assert trainer.state.epoch == 2 and trainer.state.best_epoch == 0


def test_runs_all_epochs_while_improving() -> None:
    trainer, snapshots = run([0.01 * k for k in range(1, 8)], replace(SETTINGS, epochs=7))
    assert trainer.state.epoch == 7 and trainer.state.best_epoch == 6
    assert same(trainer.model.state_dict(), snapshots[6])


def test_mmrec_rounding_of_the_valid_metric_is_an_option() -> None:
    scores = [0.10001, 0.10004]  # equal at 4 decimals (MMRec's evaluator rounds), a gain unrounded
    assert run(scores)[0].state.best_epoch == 1
    rounded, _ = run(scores, replace(SETTINGS, valid_decimals=4))
    assert rounded.state.best_epoch == 0 and rounded.state.epoch == 1 + SETTINGS.patience + 1
