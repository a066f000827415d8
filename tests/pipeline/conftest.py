"""Fixtures for the MLflow tests: a tiny synthetic project laid out as the train stage leaves it.

``synthetic_project(root, seed)`` writes ``data/ingested/`` (interactions with a split, items,
user map), ``models/recommender/`` (random embeddings, config, train meta) and
``reports/train/`` (metrics, history, a PNG plot), following docs/architecture.md. Nothing here
depends on the real trainer, so the tracking/registry/serving tests run on their own.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cliper.config import Params, TrackingConfig
from cliper.io import sha256_file

N_USERS, N_ITEMS, DIM, PER_USER = 30, 40, 8, 6
EPOCH_END_TIMES = (1_700_000_000.5, 1_700_000_002.25, 1_700_000_004.0)  # timing.json (unix s)
SECONDS_PER_EPOCH = 1.75


def write_synthetic_project(root: Path, seed: int = 0, split_seed: int = 0) -> Path:
    """Write the train stage's outputs and the ingested tables for a tiny random model."""
    rng = np.random.default_rng(seed)
    split_rng = np.random.default_rng(1000 + split_seed)
    ingest = root / "data/ingested"
    model = root / "models/recommender"
    reports = root / "reports/train"
    for folder in (ingest, model, reports):
        folder.mkdir(parents=True, exist_ok=True)
    users = np.repeat(np.arange(N_USERS), PER_USER)
    items = np.concatenate([split_rng.choice(N_ITEMS, PER_USER, replace=False) for _ in range(N_USERS)])
    labels = np.tile(np.array([0, 0, 0, 0, 1, 2], dtype=np.int8), N_USERS)
    pd.DataFrame({"user_id": users.astype(np.int64), "item_id": items.astype(np.int64),
                  "x_label": labels}).to_parquet(ingest / "interactions.parquet", index=False)
    pd.DataFrame({"item_id": np.arange(N_ITEMS, dtype=np.int64),
                  "asin": [f"B{i:09d}" for i in range(N_ITEMS)],
                  "title": [f"item {i}" for i in range(N_ITEMS)]}).to_parquet(
        ingest / "items.parquet", index=False)
    pd.DataFrame({"user_id": [f"A{u:05d}XYZ" for u in range(N_USERS)],
                  "user_index": np.arange(N_USERS)}).to_csv(ingest / "user_map.csv", index=False)
    np.savez(model / "embeddings.npz", user=rng.normal(size=(N_USERS, DIM)).astype(np.float32),
             item=rng.normal(size=(N_ITEMS, DIM)).astype(np.float32))
    (model / "config.json").write_text(json.dumps({"name": "lightgcn", "config": {"n_layers": 2}}))
    meta = {"backbone": "lightgcn", "best_epoch": 2, "seed": seed}
    (model / "train_meta.json").write_text(json.dumps(meta))
    history = [{"epoch": e, "loss": 1.0 / (e + 1), "valid_recall@20": 0.1 + 0.01 * e} for e in range(3)]
    (reports / "history.json").write_text(json.dumps(history))
    times = [{"epoch": e, "seconds": SECONDS_PER_EPOCH, "end_time": t} for e, t in enumerate(EPOCH_END_TIMES)]
    timing = {"seconds_per_epoch": SECONDS_PER_EPOCH, "epochs": times,
              "history_sha256": sha256_file(reports / "history.json")}
    (reports / "timing.json").write_text(json.dumps(timing))
    (reports / "metrics.json").write_text(json.dumps({"best_epoch": 2, "valid": {"recall@20": 0.12}}))
    (reports / "view_weights.csv").write_text("item_id,view,weight\n0,title,1.0\n")
    (reports / "plots").mkdir(exist_ok=True)
    Image.new("RGB", (8, 8), (200, 30, 30)).save(reports / "plots" / "history.png")
    return root


def mlflow_params(name: str = "Demo", **tracking: object) -> Params:
    """Default params with dataset ``name`` and tracking overrides (URI left to the project)."""
    from dataclasses import replace

    base = Params()
    return replace(base, ingest=replace(base.ingest, name=name), tracking=TrackingConfig(**tracking))


@pytest.fixture
def mlflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No tracking URI from the environment, no telemetry."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ENABLE_TELEMETRY", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised, empty MLflow SQLite store, made once (its schema migration takes seconds)."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def synth_project(tmp_path: Path, mlflow_env: None, empty_mlflow_db: Path) -> Path:
    """A synthetic project root in ``tmp_path`` with an empty ``mlflow.db`` (see module docstring)."""
    root = write_synthetic_project(tmp_path / "proj")
    shutil.copy(empty_mlflow_db, root / "mlflow.db")
    return root


@pytest.fixture(scope="session")
def make_synth():
    """The :func:`write_synthetic_project` function, for tests that need several projects."""
    return write_synthetic_project


@pytest.fixture(scope="session")
def make_params():
    """The :func:`mlflow_params` function."""
    return mlflow_params
