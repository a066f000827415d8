"""Grids with trainer keys (learning rate, batch size, weight decay per backbone) and their checks."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from cliper.config import Params, from_dict
from cliper.errors import CliperError
from cliper.evaluate import Splits
from cliper.grid import expand_grid, grid_search, point_settings, split_point
from cliper.models import InteractionData, build_model
from cliper.train import Trainer, TrainSettings

N_USERS, N_ITEMS, PER_USER = 20, 16, 6
SETTINGS = TrainSettings(
    epochs=2, patience=5, batch_size=16, learning_rate=0.01, seed=0, device="cpu",
    topk=(5,), valid_metric="recall@5", progress=False,
)  # fmt: skip


def interactions() -> pd.DataFrame:
    """Per user ``PER_USER`` distinct items: all but the last two train, then one valid, one test."""
    rng = np.random.default_rng(1)
    items = np.argsort(rng.random((N_USERS, N_ITEMS)), axis=1)[:, :PER_USER]
    labels = np.tile(np.r_[np.zeros(PER_USER - 2), 1, 2].astype(np.int8), N_USERS)
    users = np.repeat(np.arange(N_USERS), PER_USER)
    return pd.DataFrame({"user_id": users, "item_id": items.ravel(), "x_label": labels})


def test_trainer_keys_are_split_from_model_keys() -> None:
    point = {"reg_weight": 0.1, "learning_rate": 0.5, "batch_size": 7, "weight_decay": 1}
    assert split_point(point) == (
        {"reg_weight": 0.1},
        {"learning_rate": 0.5, "batch_size": 7, "weight_decay": 1},
    )
    settings = point_settings(SETTINGS, point)
    assert (settings.learning_rate, settings.batch_size, settings.weight_decay) == (0.5, 7, 1.0)
    assert isinstance(settings.weight_decay, float) and settings.epochs == SETTINGS.epochs
    assert point_settings(SETTINGS, {"reg_weight": 0.1}) == SETTINGS


def test_grid_search_trains_each_point_with_its_own_trainer_settings() -> None:
    s = Splits.from_frame(interactions())
    data = InteractionData(s.n_users, s.n_items, s.users["train"], s.items["train"])
    built: list[dict] = []

    def build(model_point: dict):  # noqa: ANN202 - a Recommender
        built.append(model_point)
        return build_model("bpr", data, model_point)

    points = expand_grid({"learning_rate": [0.0001, 0.05], "batch_size": 8, "reg_weight": 0.01})
    res = grid_search(
        points,
        build,
        s.users["train"],
        s.items["train"],
        s.n_items,
        s.target("valid"),
        s.target("test"),
        SETTINGS,
    )
    assert built == [{"reg_weight": 0.01}, {"reg_weight": 0.01}]  # trainer keys never reach the model
    assert [p["point"]["learning_rate"] for p in res.points] == [0.0001, 0.05]
    chosen = res.points[res.best_index]["point"]
    assert (
        res.trainer.settings.learning_rate == chosen["learning_rate"] and res.trainer.settings.batch_size == 8
    )
    assert res.trainer.optimizer.param_groups[0]["lr"] == chosen["learning_rate"]


def test_the_epoch_hook_sees_every_point_and_epoch_and_changes_no_result() -> None:
    """``on_epoch_end`` gets each point's index and trainer once per epoch; the search is as without it."""
    s = Splits.from_frame(interactions())
    data = InteractionData(s.n_users, s.n_items, s.users["train"], s.items["train"])
    points = expand_grid({"reg_weight": [0.01, 0.1]})
    settings = replace(SETTINGS, epochs=3)
    args = (lambda p: build_model("bpr", data, p), s.users["train"], s.items["train"], s.n_items,
            s.target("valid"), s.target("test"), settings)
    seen: list[tuple[int, int, float]] = []

    def hook(index: int, trainer: Trainer) -> None:
        seen.append((index, trainer.state.epoch, trainer.state.history[-1]["valid_recall@5"]))

    hooked, plain = grid_search(points, *args, on_epoch_end=hook), grid_search(points, *args)
    assert [(i, e) for i, e, _ in seen] == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3)]
    assert [max(v for i, _, v in seen if i == k) for k in (0, 1)] == [
        p["valid"]["recall@5"] for p in hooked.points
    ]  # the hook's trainer is the point's own
    timeless = [[{k: v for k, v in p.items() if k != "seconds_per_epoch"} for p in r.points]
                for r in (hooked, plain)]
    assert timeless[0] == timeless[1] and hooked.best_index == plain.best_index


def test_weight_decay_reaches_adam_and_shrinks_weights() -> None:
    s = Splits.from_frame(interactions())
    data = InteractionData(s.n_users, s.n_items, s.users["train"], s.items["train"])
    norms = {}
    for wd in (0.0, 0.5):
        torch.manual_seed(0)
        model = build_model("bpr", data, {"reg_weight": 0.0})
        settings = replace(SETTINGS, weight_decay=wd, epochs=3)
        trainer = Trainer(model, s.users["train"], s.items["train"], s.n_items, s.target("valid"), settings)
        assert trainer.optimizer.param_groups[0]["weight_decay"] == wd
        trainer.fit()
        norms[wd] = float(torch.linalg.norm(model.user_embedding.weight.detach()))
    assert norms[0.5] < norms[0.0]


def _stage_root(tmp_path) -> object:
    root = tmp_path / "proj"
    (root / "data/ingested").mkdir(parents=True)
    interactions().to_parquet(root / "data/ingested/interactions.parquet")
    return root


def _params(backbones: dict) -> Params:
    train = {
        "backbone": "bpr",
        "epochs": 2,
        "patience": 2,
        "device": "cpu",
        "progress": False,
        "backbones": backbones,
    }
    evaluate = {"topk": [5], "valid_metric": "recall@5"}
    return from_dict(Params, {"train": train, "evaluate": evaluate, "tracking": {"enabled": False}})


def test_train_stage_accepts_trainer_grid_keys(tmp_path) -> None:
    from cliper.io import read_json
    from cliper.stages.train import run

    root = _stage_root(tmp_path)
    run(_params({"bpr": {"learning_rate": [0.01, 0.001], "batch_size": 32, "weight_decay": 0.0}}), root)
    meta = read_json(root / "models/recommender/train_meta.json")
    assert [p["point"]["learning_rate"] for p in meta["grid"]] == [0.01, 0.001]
    assert meta["point"]["batch_size"] == 32
    assert "learning_rate" not in meta["model_config"] and "reg_weight" in meta["model_config"]


@pytest.mark.parametrize(
    ("point", "match"),
    [
        ({"learning_rate": "fast"}, "learning_rate: expected float"),
        ({"batch_size": 0}, "batch_size: must be > 0"),
        ({"weight_decay": -1.0}, "weight_decay: must be >= 0"),
        ({"batch_size": 2.5}, "batch_size: expected int"),
    ],
)
def test_bad_trainer_grid_values_fail_before_training(tmp_path, point: dict, match: str) -> None:
    from cliper.stages.train import run

    with pytest.raises(CliperError, match=match):
        run(_params({"bpr": point}), _stage_root(tmp_path))
