"""MLflow tracking: one run per trained model, its provenance, metrics, artifacts and pyfunc.

Where runs go (first that is set wins): the ``MLFLOW_TRACKING_URI`` environment variable,
``tracking.uri`` in ``params.yaml``, else ``sqlite:///<project>/mlflow.db``. With a local store
(SQLite or a file path) the experiment's artifacts go to ``<project>/mlartifacts/<experiment>``,
whatever the working directory. Nothing happens at import: call :func:`configure` (done by
:func:`log_and_register`).

One experiment per dataset: ``<tracking.experiment_prefix>-<ingest.name>``. The evaluate stage
calls :func:`log_and_register` once at its end; it returns the run id, model name, version and a
UI link, which the stage writes to ``reports/evaluate/mlflow.json``.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import yaml
from mlflow.tracking import MlflowClient

from cliper import registry, serving
from cliper.config import Params, flatten
from cliper.io import read_json, sha256_array, sha256_file

logger = logging.getLogger(__name__)

ENV_URI = "MLFLOW_TRACKING_URI"
DB_FILE = "mlflow.db"
ARTIFACT_ROOT = "mlartifacts"
SKIP_FILES = ("mlflow.json",)  # written after the run, by the evaluate stage
UI_URL = "http://127.0.0.1:5000"
LOCAL_SCHEMES = ("sqlite", "file", "")
DVC_STAGES = ("train", "evaluate")
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value
MODEL_ARTIFACT = "model"
# Files of models/recommender logged as plain artifacts (the pyfunc holds the embeddings).
MODEL_FILE_SUFFIXES = (".json", ".yaml", ".csv", ".png")
# What the served model imports (cliper itself must be installed where it is served). Stating
# them skips MLflow's requirement inference, which reloads the model in a subprocess (~10 s).
SERVING_PACKAGES = ("mlflow", "cloudpickle", "numpy", "pandas", "pyarrow")


def resolve_uri(uri: str | None, root: Path) -> str:
    """Tracking URI: env ``MLFLOW_TRACKING_URI`` > ``uri`` (params) > SQLite DB in ``root``."""
    env = os.environ.get(ENV_URI)
    if env:
        return env
    if uri:
        return uri
    return f"sqlite:///{(Path(root).resolve() / DB_FILE).as_posix()}"


def configure(uri: str) -> str:
    """Point MLflow (fluent API and new clients) at ``uri``; returns it."""
    mlflow.set_tracking_uri(uri)
    logger.debug("MLflow tracking URI: %s", uri)
    return uri


def is_local(uri: str) -> bool:
    """True for stores on this machine (SQLite, file paths), whose artifacts we place in the project."""
    return uri.split(":", 1)[0].lower() in LOCAL_SCHEMES or "://" not in uri


def experiment_name(params: Params) -> str:
    """``<experiment_prefix>-<dataset>`` (dataset = ``ingest.name``)."""
    return f"{params.tracking.experiment_prefix}-{params.ingest.name}"


def ensure_experiment(name: str, root: Path, uri: str) -> str:
    """Id of experiment ``name``, created with artifacts under ``<root>/mlartifacts`` when local."""
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = (Path(root).resolve() / ARTIFACT_ROOT / name).as_uri() if is_local(uri) else None
    return client.create_experiment(name, artifact_location=location)


# --------------------------------------------------------------------------- provenance


def git_commit(root: Path) -> str:
    """``HEAD`` commit of the repo at ``root`` (``+dirty`` when tracked files changed), or ``unknown``."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def dvc_hashes(root: Path, stages: tuple[str, ...] = DVC_STAGES) -> dict[str, str]:
    """``dvc.<stage>.<dep path>`` -> md5 for the deps of ``stages`` in ``dvc.lock`` (empty without it)."""
    lock = Path(root) / "dvc.lock"
    if not lock.exists():
        return {}
    data = yaml.safe_load(lock.read_text(encoding="utf-8")) or {}
    out: dict[str, str] = {}
    for stage in stages:
        for dep in (data.get("stages", {}).get(stage) or {}).get("deps", []):
            digest = dep.get("md5") or dep.get("etag") or dep.get("checksum")
            if digest and "path" in dep:
                out[f"dvc.{stage}.{dep['path']}"] = str(digest)
    return out


def content_hashes(params: Params, root: Path) -> dict[str, str]:
    """Hashes that identify what the model was trained and evaluated on.

    ``data_hash``: interactions incl. the split (``user_id``, ``item_id``, ``x_label``);
    ``items_hash``: the item id -> ASIN order; ``features_hash``: ``content_hash`` of the
    features' ``meta.json`` (when present); ``model_hash``: sha256 of ``embeddings.npz``.
    """
    ingest = Path(root) / params.ingest.out_dir
    inter = pd.read_parquet(ingest / "interactions.parquet", columns=["user_id", "item_id", "x_label"])
    asins = pd.read_parquet(ingest / "items.parquet", columns=["item_id", "asin"]).sort_values("item_id")
    out = {
        "data_hash": sha256_array(*(inter[c].to_numpy(np.int64) for c in ("user_id", "item_id", "x_label"))),
        "items_hash": sha256_array(asins["asin"].astype(str).to_numpy(dtype=str)),
        "model_hash": sha256_file(Path(root) / params.train.out_dir / "embeddings.npz"),
    }
    meta = Path(root) / params.clip.extract.out_dir / "meta.json"
    if meta.exists():
        out["features_hash"] = str(read_json(meta).get("content_hash", "unknown"))
    return out


# --------------------------------------------------------------------------- metrics


def flat_metrics(data: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested dict -> ``{mlflow-legal dotted name: value}`` (others skipped)."""
    out: dict[str, float] = {}
    items = data.items() if isinstance(data, dict) else []
    for key, value in items:
        name = f"{prefix}{registry.metric_key(str(key))}"
        if isinstance(value, dict):
            out.update(flat_metrics(value, name + "."))
        elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            if np.isfinite(value):
                out[name] = float(value)
    return out


def headline(eval_metrics: dict[str, Any]) -> dict[str, Any]:
    """The test metrics of the evaluate stage: its ``test``/``overall`` block, else the top level."""
    for key in ("test", "overall"):
        if isinstance(eval_metrics.get(key), dict):
            return eval_metrics[key]
    return eval_metrics


def log_history(history: list[dict[str, Any]]) -> int:
    """Per-epoch metrics with ``step=epoch``: ``loss`` -> ``train_loss``, others -> ``valid_<name>``."""
    for i, row in enumerate(history):
        step = int(row.get("epoch", i))
        values = flat_metrics({k: v for k, v in row.items() if k != "epoch"})
        named = {(k if k.startswith(("train", "valid")) else
                  f"train_{k}" if "loss" in k else f"valid_{k}"): v for k, v in values.items()}
        if named:
            mlflow.log_metrics(named, step=step)
    return len(history)


# --------------------------------------------------------------------------- entry point


def _backbone(params: Params, model_dir: Path) -> str:
    """Backbone name as the train stage saved it (``train_meta.json``, ``config.json``), else params."""
    for fname, key in (("train_meta.json", "backbone"), ("config.json", "name")):
        path = model_dir / fname
        value = read_json(path).get(key) if path.exists() else None
        if isinstance(value, str):
            return value
    return params.train.backbone


def _log_params(params: Params, extra: dict[str, Any]) -> None:
    values = {**flatten(params), **extra}
    mlflow.log_params({k: str(v)[:MAX_PARAM_CHARS] for k, v in values.items()})


def _log_folder(folder: Path, dest: str, suffixes: tuple[str, ...] | None = None) -> None:
    """Log the files under ``folder`` (recursively, keeping sub-folders) below ``dest``."""
    for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
        if path.is_file() and path.name not in SKIP_FILES and (suffixes is None or path.suffix in suffixes):
            rel = path.parent.relative_to(folder).as_posix()
            mlflow.log_artifact(str(path), dest if rel == "." else f"{dest}/{rel}")


def _log_artifacts(params: Params, root: Path, model_dir: Path) -> None:
    """Train and evaluate reports (metrics, history, plots, view weights) and the model's small files."""
    _log_folder(root / params.train.reports_dir, "reports/train")
    _log_folder(root / params.evaluate.out_dir, "reports/evaluate")
    _log_folder(model_dir, "recommender", MODEL_FILE_SUFFIXES)


def _pip_requirements() -> list[str]:
    return [f"{pkg}=={importlib.metadata.version(pkg)}" for pkg in SERVING_PACKAGES]


def _log_model(params: Params, root: Path, name: str) -> Any:
    cfg = params.tracking
    model_config = {"default_k": cfg.serve_k, "max_k": cfg.max_k, "unknown_user": cfg.unknown_user}
    with tempfile.TemporaryDirectory(prefix="cliper-serving-") as tmp:
        artifacts = serving.write_serving_artifacts(root / params.train.out_dir, root / params.ingest.out_dir,
                                                    Path(tmp))
        users = list(np.load(artifacts[serving.CATALOG])["users"][:2])
        return mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT, python_model=serving.TopKRecommender(), artifacts=artifacts,
            signature=serving.signature(model_config),
            input_example=serving.input_example(users, cfg.serve_k),
            model_config=model_config, registered_model_name=name, pip_requirements=_pip_requirements(),
        )


def log_and_register(params: Params, root: Path, eval_metrics: dict[str, Any]) -> dict[str, Any]:
    """Log the trained model's run to MLflow, register it and make it the ``challenger``.

    Logs params (flattened ``Params`` + git commit, ``dvc.lock`` hashes, content hashes),
    per-epoch loss/valid metrics from ``<train.reports_dir>/history.json`` (``step=epoch``), the
    final train-stage metrics (``metrics.json`` as ``final.*``), the evaluate stage's metrics
    (all as ``eval.*``; its ``test`` block also as ``test_*``, what promotion compares), the
    reports, plots and view weights, and the top-K pyfunc (:mod:`cliper.serving`).

    Args:
        params: the pipeline params.
        root: project root (all paths are relative to it).
        eval_metrics: the evaluate stage's ``metrics.json`` content (``{"test": {"recall@20": ...},
            "valid": {...}, "slices": {...}}``; a flat ``{"recall@20": ...}`` is read as test).

    Returns:
        ``run_id``, ``experiment``, ``experiment_id``, ``model_name``, ``model_version``,
        ``model_uri``, ``tracking_uri``, ``run_url``, ``ui_command``.
    """
    root = Path(root)
    uri = configure(resolve_uri(params.tracking.uri, root))
    model_dir = root / params.train.out_dir
    experiment = experiment_name(params)
    experiment_id = ensure_experiment(experiment, root, uri)
    name = registry.model_name(params.ingest.name, _backbone(params, model_dir))
    hashes = content_hashes(params, root)
    commit = git_commit(root)
    history_file = root / params.train.reports_dir / "history.json"
    train_metrics_file = root / params.train.reports_dir / "metrics.json"
    with mlflow.start_run(experiment_id=experiment_id) as run:
        _log_params(params, {"git_commit": commit, **dvc_hashes(root), **hashes})
        mlflow.set_tags({"dataset": params.ingest.name, "model_name": name, **hashes})
        if history_file.exists():
            log_history(read_json(history_file))
        if train_metrics_file.exists():
            mlflow.log_metrics(flat_metrics(read_json(train_metrics_file), "final."))
        test = flat_metrics(headline(eval_metrics), registry.TEST_PREFIX)
        mlflow.log_metrics({**flat_metrics(eval_metrics, "eval."), **test})
        _log_artifacts(params, root, model_dir)
        info = _log_model(params, root, name)
    version = str(info.registered_model_version)
    client = MlflowClient(uri)
    tags = {"dataset": params.ingest.name, "run_id": run.info.run_id, "git_commit": commit, **hashes, **test}
    registry.register_challenger(client, name, version, tags)
    result = {
        "run_id": run.info.run_id, "experiment": experiment, "experiment_id": experiment_id,
        "model_name": name, "model_version": version, "model_uri": f"models:/{name}/{version}",
        "tracking_uri": uri, "run_url": f"{UI_URL}/#/experiments/{experiment_id}/runs/{run.info.run_id}",
        "ui_command": f"mlflow ui --backend-store-uri {uri}",
    }
    logger.info("MLflow run %s; registered %s v%s as challenger", run.info.run_id, name, version)
    return result
