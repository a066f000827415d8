"""Hyper-parameter grids: expansion, per-point checkpoint folders, and selection on **valid**.

List values in ``params.yaml: train.backbones.<name>`` form a grid (cartesian product). A point
holds model config keys (``cliper/models/configs/<name>.yaml``) and, optionally, the trainer
keys :data:`TRAINER_GRID_KEYS` (learning rate, batch size, Adam weight decay), which override
the ``train`` section for that point only, as CLIPER's FREEDOM config tunes them per backbone.
MMRec picks the point with the best *test* score; :func:`grid_search` picks it by valid.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cliper.errors import CliperError
from cliper.evaluate import EvalTarget
from cliper.train import (
    CHECKPOINT_FILE,
    TRAINER_VERSION,
    Trainer,
    TrainSettings,
    config_hash,
    seed_everything,
)

logger = logging.getLogger(__name__)

# Grid keys that set the trainer, not the model; each with its type.
TRAINER_GRID_KEYS: dict[str, type] = {"learning_rate": float, "batch_size": int, "weight_decay": float}


def split_point(point: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model config overrides, trainer setting overrides) of one grid point."""
    model = {k: v for k, v in point.items() if k not in TRAINER_GRID_KEYS}
    trainer = {k: v for k, v in point.items() if k in TRAINER_GRID_KEYS}
    return model, trainer


def point_settings(settings: TrainSettings, point: dict[str, Any]) -> TrainSettings:
    """``settings`` with the point's trainer keys applied (ints accepted for float keys)."""
    return replace(settings, **{k: TRAINER_GRID_KEYS[k](v) for k, v in split_point(point)[1].items()})


def expand_grid(overrides: dict[str, Any]) -> list[dict[str, Any]]:
    """List-valued entries are a grid: the cartesian product of them (keys in sorted order)."""
    keys = sorted(k for k, v in overrides.items() if isinstance(v, list))
    fixed = {k: v for k, v in overrides.items() if k not in keys}
    for key in keys:
        if not overrides[key]:
            raise CliperError(f"grid entry '{key}' is an empty list; give at least one value")
    combos = itertools.product(*(overrides[k] for k in keys))
    return [{**fixed, **dict(zip(keys, combo, strict=True))} for combo in combos]


def checkpoint_dir(
    cache_dir: str | Path, cache_key: Any, point: dict[str, Any], settings: TrainSettings
) -> Path:
    """``<cache_dir>/<hash of cache_key + point + settings>``.

    Progress display and checkpoint spacing change no result, so they are left out (a run resumes
    whatever they are set to; folders keep the names they had before ``checkpoint_every_s`` existed).
    """
    fixed = {**settings.__dict__, "progress": None, "trainer_version": TRAINER_VERSION}
    del fixed["checkpoint_every_s"]
    return Path(cache_dir) / config_hash(cache_key, point, fixed)


def read_progress(directory: str | Path) -> dict[str, Any] | None:
    """Epochs run, best epoch and best valid metrics of a checkpoint folder (None when absent)."""
    path = Path(directory) / CHECKPOINT_FILE
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)["state"]
    keys = ("epoch", "best_epoch", "best_score", "finished", "bad_evals", "best_valid")
    return {k: state[k] for k in keys}


def _point_hook(
    on_epoch_end: Callable[[int, Trainer], None] | None, index: int, trainer: Trainer
) -> Callable[[int], None] | None:
    """``Trainer.fit``'s per-epoch callback for grid point ``index`` (None when there is no hook)."""
    if on_epoch_end is None:
        return None
    return lambda _epoch: on_epoch_end(index, trainer)


@dataclass
class GridResult:
    """Outcome of :func:`grid_search`: the chosen point, its model and every point's record."""

    best_index: int
    model: torch.nn.Module
    trainer: Trainer
    points: list[dict[str, Any]]


def grid_search(
    points: list[dict[str, Any]],
    build: Callable[[dict[str, Any]], torch.nn.Module],
    train_users: np.ndarray,
    train_items: np.ndarray,
    n_items: int,
    valid: EvalTarget,
    test: EvalTarget,
    settings: TrainSettings,
    cache_dir: str | Path | None = None,
    cache_key: Any = None,
    on_epoch_end: Callable[[int, Trainer], None] | None = None,
) -> GridResult:
    """Train every point, keep the one with the best **valid** score (ties: the first).

    Args:
        points: one dict per grid point: model config overrides plus optional trainer keys
            (:data:`TRAINER_GRID_KEYS`, applied to ``settings`` for that point).
        build: ``model overrides -> fresh model`` (called right after seeding).
        cache_dir: parent of the per-point checkpoint folders ``<cache_dir>/<hash>/``;
            the hash covers ``cache_key`` (data, features, names), the point and ``settings``.
        on_epoch_end: called with the point's index and its trainer after each epoch (e.g. to
            score another set as training goes); it chooses nothing.

    Returns:
        A :class:`GridResult`; each record holds the point, best epoch, epochs run, valid metrics at
        the best epoch and test metrics at the best epoch (reported, never used to choose).
    """
    records: list[dict[str, Any]] = []
    best: tuple[float, int, torch.nn.Module, Trainer] | None = None
    for index, point in enumerate(points):
        run_settings = point_settings(settings, point)
        seed_everything(run_settings.seed)
        model = build(split_point(point)[0])
        ckpt = checkpoint_dir(cache_dir, cache_key, point, run_settings) if cache_dir is not None else None
        trainer = Trainer(model, train_users, train_items, n_items, valid, run_settings, ckpt)
        state = trainer.fit(on_epoch_end=_point_hook(on_epoch_end, index, trainer))
        test_metrics = trainer.evaluate(test)
        records.append(
            {
                "point": point,
                "best_epoch": state.best_epoch,
                "n_epochs": state.epoch,
                "valid": state.best_valid,
                "test": test_metrics,
                "seconds_per_epoch": float(np.mean([h["seconds"] for h in state.history]))
                if state.history
                else 0.0,
            }
        )
        logger.info(
            "grid point %d/%d %s: valid %s=%.4f (epoch %d)",
            index + 1,
            len(points),
            point,
            settings.valid_metric,
            state.best_score,
            state.best_epoch,
        )
        if best is None or state.best_score > best[0]:
            best = (state.best_score, index, model, trainer)
    assert best is not None, "grid_search needs at least one point"
    return GridResult(best_index=best[1], model=best[2], trainer=best[3], points=records)
