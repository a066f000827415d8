"""Shared fixtures: the repository root, a tiny params set and a temporary project copy.

``tiny_project`` copies what a pipeline run needs (package, dvc.yaml, params.yaml) into a
temporary folder, makes it a git + DVC repository and writes small params, so tests can run
real ``dvc repro`` without touching the checkout's own outputs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_BABY = REPO_ROOT.parent / "shared" / "data" / "amazon" / "baby"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# Small enough that the whole pipeline runs in well under a minute on 2 CPU cores.
TINY_OVERRIDES: dict[str, dict] = {
    "demo": {"n_items": 120, "n_users": 200, "image_size": 48},
    "validate": {"min_image_size": 32},
    "clip": {"adapt": {"epochs": 1, "batch_size": 32}, "extract": {"batch_size": 32, "num_workers": 0}},
    # one process, a checkpoint after every epoch: the kill-and-resume tests watch them appear
    "train": {"epochs": 3, "patience": 2, "batch_size": 512, "workers": 1, "checkpoint_every_s": 0},
}

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


def deep_update(base: dict, new: dict) -> dict:
    """Recursively merge ``new`` into a copy of ``base``."""
    out = dict(base)
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = value
    return out


def tiny_params(extra: dict | None = None) -> dict:
    """The repository's params.yaml with the tiny overrides (and ``extra``) applied."""
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["train"]["backbones"] = {}  # one grid point (the demo's default grid is 4); grid tests set theirs
    params["train"]["compare_fusions"] = []  # the demo retrains the mean fusion; test_view_report tests them
    params["train"]["repeat_seeds"] = []  # the demo retrains 2 more seeds; test_seed_repeats tests them
    return deep_update(deep_update(params, TINY_OVERRIDES), extra or {})


def make_project(dest: Path, params: dict) -> Path:
    """Copy the pipeline into ``dest`` as a fresh git + DVC repo with ``params``."""
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("cliper", "tasks", "flows"):
        if (REPO_ROOT / name).exists():
            shutil.copytree(REPO_ROOT / name, dest / name, ignore=ignore)
    for name in ("dvc.yaml", ".gitignore", "prefect.yaml"):
        if (REPO_ROOT / name).exists():
            shutil.copy2(REPO_ROOT / name, dest / name)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True, env=env)
    subprocess.run(["dvc", "init", "-q"], cwd=dest, check=True, env=env)
    subprocess.run(["dvc", "config", "core.analytics", "false"], cwd=dest, check=True, env=env)
    return dest


def write_item_catalog(root: Path, n_items: int, seed: int = 0) -> None:
    """``data/ingested/items.parquet`` + random JPEGs for ``n_items`` toy items (extraction tests).

    Brands repeat (deduplicated prompts), item 2 has a description longer than the text context
    (several chunks).
    """
    import json

    import numpy as np
    import pandas as pd
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "img").mkdir()
    rows = []
    for i in range(n_items):
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(root / "img" / f"{i}.jpg")
        rows.append(
            {
                "item_id": i,
                "asin": f"B{i}",
                "title": f"Toy number {i}",
                "brand": "Acme" if i % 3 else None,
                "description": "soft " * (150 if i == 2 else 3),
                "price": 1.0,
                "categories": json.dumps([["Baby", "Toys"]]),
                "image_path": f"img/{i}.jpg",
            }
        )
    (root / "data" / "ingested").mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(root / "data" / "ingested" / "items.parquet")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def tiny_project(tmp_path: Path) -> Path:
    """A fresh temporary project (git + DVC) with the tiny params; nothing run yet."""
    return make_project(tmp_path / "project", tiny_params())


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module: the test machine's 2 cores are shared, oversubscription is slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shared_baby() -> Path:
    """The real Amazon Baby folder beside the checkout; skips cleanly when absent."""
    if not (SHARED_BABY / "baby.inter").exists():
        pytest.skip(f"real Baby data not found at {SHARED_BABY}")
    return SHARED_BABY


@pytest.fixture(scope="session")
def prefect_server_process(tmp_path_factory: pytest.TempPathFactory):
    """A real ``prefect server start`` (API, UI, scheduler) for the whole session, then stopped.

    The scheduler polls every few seconds (instead of 60) so a deployment's runs appear quickly;
    the test's client and the flows it runs talk to this server through ``PREFECT_API_URL``.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tests.servers import prefect_server

    home = tmp_path_factory.mktemp("prefect-home")
    with prefect_server(home, PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5") as server:
        api = f"{server.base_url}/api"
        before = os.environ.get("PREFECT_API_URL")
        os.environ["PREFECT_API_URL"] = api  # subprocesses (serve, dvc stages) inherit it
        try:
            with temporary_settings(updates={PREFECT_API_URL: api}):
                yield server
        finally:
            if before is None:
                os.environ.pop("PREFECT_API_URL", None)
            else:
                os.environ["PREFECT_API_URL"] = before


@pytest.fixture(scope="session")
def prefect_server(prefect_server_process) -> str:
    """The session's real Prefect server; yields its API URL."""
    return f"{prefect_server_process.base_url}/api"


@pytest.fixture(scope="session")
def promoted_pipeline(prefect_server: str, tmp_path_factory: pytest.TempPathFactory):
    """The whole tiny pipeline run once through the Prefect flow with promotion, then once more.

    The second run finds every stage up to date (all ``Skipped``). Yields ``(project, first
    flow-run state, second flow-run state)``; the project holds the MLflow store
    (``mlflow.db``) with the evaluate stage's run and the promoted champion.
    """
    from flows.pipeline import cliper_pipeline

    project = make_project(tmp_path_factory.mktemp("promoted") / "project", tiny_params())
    first = cliper_pipeline(project_dir=str(project), promote=True, return_state=True)
    again = cliper_pipeline(project_dir=str(project), return_state=True)
    return project, first, again
