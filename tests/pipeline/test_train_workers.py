"""``train.workers: 2`` trains the grid points, compared fusions and seeds in 2 processes, as 1 would.

On a tiny demo project (upstream stages run once): a 2-point FREEDOM grid plus two compared
fusions and one repeated seed, trained by ``cliper run train`` in this process (``workers: 1``)
and with 2 worker processes, both at 1 torch thread. The points, the fusion, the chosen model and every report
must be the same, and the checkpoint folders the same names; the log shows the worker runs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from cliper.config import load_params
from cliper.errors import CliperError
from cliper.stages import run_stage, train_workers
from cliper.stages.train import grid_context
from tests.conftest import make_project, tiny_params

pytestmark = pytest.mark.slow

TRAIN = {"epochs": 6, "patience": 100, "progress": False, "compare_fusions": ["mean", "concat"],
         "repeat_seeds": [5],
         "backbones": {"freedom": {"mm_image_weight": [0.1, 0.5], "text_graph": "views"}}}
REPORTS = ("reports/train/metrics.json", "reports/train/history.json", "models/fusions/comparison.json",
           "reports/train/seeds.json")


@pytest.fixture(scope="module")
def project(tmp_path_factory, one_torch_thread) -> Path:
    root = make_project(tmp_path_factory.mktemp("workers") / "project", tiny_params({"train": TRAIN}))
    params = load_params(root / "params.yaml")
    for stage in ("demo_data", "ingest", "validate", "preprocess", "adapt", "extract"):
        run_stage(stage, params, root)
    return root


def _train(root: Path, workers: int) -> dict:
    overrides = {"train.workers": workers, "train.cache_dir": f".cache/w{workers}"}
    params = load_params(root / "params.yaml", overrides)
    run_stage("train", params, root)
    out = {name: json.loads((root / name).read_text()) for name in REPORTS}
    out["model"] = torch.load(root / "models/recommender/model.pt", map_location="cpu", weights_only=False)
    out["folders"] = sorted(p.parent.name for p in (root / f".cache/w{workers}").rglob("checkpoint.pt"))
    return out


def test_two_worker_processes_train_what_one_process_trains(project: Path, caplog):
    one = _train(project, 1)
    caplog.set_level(logging.INFO, logger="cliper.stages.train_workers")
    two = _train(project, 2)
    worker_runs = [r.getMessage() for r in caplog.records if "worker process" in r.getMessage()]
    assert len(worker_runs) == 5, worker_runs  # 2 grid points + 2 compared fusions + 1 seed, in the pool
    assert len(one["folders"]) == 5 and one["folders"] == two["folders"]
    for name in REPORTS:
        assert two[name] == one[name], name
    a, b = one["model"], two["model"]  # the saved state dicts
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_workers_under_torchrun_is_a_clear_error(project: Path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    params = load_params(project / "params.yaml", {"train.workers": 2})
    ctx = grid_context(params, project)
    with pytest.raises(CliperError, match="train.workers: 1"), train_workers.pool(params, project, ctx, 2):
        pass
