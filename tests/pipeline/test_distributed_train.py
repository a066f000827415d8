"""``torchrun --nproc-per-node 2`` runs the unchanged ``cliper run train`` with DDP (gloo on CPU).

On a tiny demo project (upstream stages run once): LightGCN and FREEDOM train in 2 processes,
the loss decreases, only rank 0 writes, and test Recall@20 is within :data:`RECALL_TOLERANCE`
of the 1-process run with the same seed and settings (``train.distributed.batch: global``: the
same optimiser steps, each rank computing the loss on half of every batch). A 2-process run
killed mid-training resumes from rank 0's checkpoint and ends with the uncut run's metrics.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cliper.config import load_params
from cliper.grid import read_progress
from cliper.stages import run_stage
from tests.conftest import make_project, tiny_params

pytestmark = pytest.mark.slow

# Absolute Recall@20 difference allowed between 2 processes and 1 (measured: 0 to 4 decimals; the
# rest is float summation order and MMRec's EmbLoss (norms over the batch), not additive over ranks).
RECALL_TOLERANCE = 0.01
EPOCHS = 30
SETTINGS = [f"train.epochs={EPOCHS}", "train.patience=50", "train.batch_size=256", "train.progress=false"]
BIN = Path(sys.executable).parent
# LightGCN stops early (valid metric rounded to 1 decimal stops improving): rank 0 decides, rank 1 follows.
EARLY_STOP = {"lightgcn": ["train.valid_metric_decimals=1", "train.patience=3"], "freedom": []}
RUN_TIMEOUT_S = 300  # a rank that misses the stop decision waits in a collective: fail, do not hang


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = make_project(tmp_path_factory.mktemp("ddp") / "project", tiny_params())
    params = load_params(root / "params.yaml")
    for stage in ("demo_data", "ingest", "validate", "preprocess", "adapt", "extract"):
        run_stage(stage, params, root)
    return root


def _torchrun(overrides: list[str]) -> list[str]:
    """The README's command. ``--standalone`` rendezvouses on a free port, not on the fixed 29500,
    which another process or the previous run's sockets may still hold."""
    sets = [arg for o in overrides for arg in ("-S", o)]
    launch = [str(BIN / "torchrun"), "--standalone", "--nproc-per-node", "2"]
    return [*launch, "-m", "cliper.cli", "run", "train", *sets]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _reports(root: Path) -> tuple[dict, list[dict]]:
    reports = root / "reports" / "train"
    return json.loads((reports / "metrics.json").read_text()), json.loads(
        (reports / "history.json").read_text()
    )


def _train(root: Path, nproc: int, overrides: list[str]) -> tuple[dict, list[dict]]:
    """``cliper run train`` in this process (what DVC runs), or the same command under torchrun."""
    if nproc == 1:
        dotted = dict(o.split("=", 1) for o in overrides)
        params = load_params(root / "params.yaml", {k: yaml.safe_load(v) for k, v in dotted.items()})
        run_stage("train", params, root)
    else:
        done = subprocess.run(
            _torchrun(overrides), cwd=root, env=_env(), capture_output=True, text=True, timeout=RUN_TIMEOUT_S
        )
        assert done.returncode == 0, done.stderr[-3000:]
    return _reports(root)


@pytest.fixture(scope="module")
def runs(project: Path) -> dict[str, dict[int, tuple[dict, list[dict]]]]:
    """Per backbone: the 1- and the 2-process run with the same seed and settings."""
    out = {}
    for backbone in ("lightgcn", "freedom"):
        overrides = [
            f"train.backbone={backbone}",
            *SETTINGS,
            *EARLY_STOP[backbone],
            f"train.cache_dir=.cache/ddp_{backbone}",
        ]
        out[backbone] = {n: _train(project, n, overrides) for n in (1, 2)}
    return out


@pytest.mark.parametrize("backbone", ["lightgcn", "freedom"])
def test_two_processes_train_like_one(project: Path, runs, backbone: str):
    (one, _), (two, history) = runs[backbone][1], runs[backbone][2]
    losses = [h["loss"] for h in history]
    assert losses[-1] < losses[0]
    assert two["n_epochs"] == one["n_epochs"] == (len(losses) if EARLY_STOP[backbone] else EPOCHS)
    if EARLY_STOP[backbone]:
        assert two["n_epochs"] < EPOCHS
    assert abs(two["test"]["recall@20"] - one["test"]["recall@20"]) <= RECALL_TOLERANCE
    assert two["test"]["recall@20"] > 0
    folders = [p.parent for p in (project / f".cache/ddp_{backbone}").rglob("checkpoint.pt")]
    assert len(folders) == 2  # one per world size (it is part of the checkpoint hash)


def test_a_killed_two_process_run_resumes_to_the_uncut_metrics(project: Path, runs):
    uncut, uncut_history = runs["freedom"][2]
    overrides = ["train.backbone=freedom", *SETTINGS, "train.cache_dir=.cache/ddp_cut"]
    cache, log = project / ".cache/ddp_cut", project / "ddp_cut.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            _torchrun(overrides),
            cwd=project,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    deadline = time.monotonic() + 120
    progress = None
    while time.monotonic() < deadline and proc.poll() is None:
        found = list(cache.rglob("checkpoint.pt")) if cache.exists() else []
        progress = read_progress(found[0].parent) if found else None
        if progress and progress["epoch"] >= 3:
            os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks
            break
        time.sleep(0.02)
    proc.wait()
    assert progress is not None and not progress["finished"], (
        f"the run ended before it could be killed (exit {proc.returncode}): {log.read_text()[-3000:]}")
    shutil.rmtree(project / "reports" / "train", ignore_errors=True)
    resumed, history = _train(project, 2, overrides)
    assert [h["loss"] for h in history] == pytest.approx([h["loss"] for h in uncut_history], rel=1e-6)
    assert resumed["test"] == pytest.approx(uncut["test"], abs=1e-9)
    assert resumed["best_epoch"] == uncut["best_epoch"]
