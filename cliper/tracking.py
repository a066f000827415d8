"""MLflow tracking: one run per trained model, its provenance, metrics, artifacts and pyfunc.

Where runs go (the tracking URI, credentials, artifact place): :mod:`cliper.tracking_store`.
Nothing happens at import: :func:`log_and_register` calls :func:`~cliper.tracking_store.configure`.

One experiment per dataset: ``<tracking.experiment_prefix>-<ingest.name>``. The evaluate stage
calls :func:`log_and_register` once at its end; it returns the run id, model name, version and a
UI link, which the stage writes to ``reports/evaluate/mlflow.json``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import requests
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from cliper import registry, serving
from cliper.config import Params, flatten
from cliper.errors import CliperError
from cliper.io import read_json, sha256_array, sha256_file
from cliper.tracking_store import ENV_URI, configure, ensure_experiment, resolve_uri, ui_links
from cliper.uri_credentials import redact

logger = logging.getLogger(__name__)

SKIP_FILES = ("mlflow.json",)  # written after the run, by the evaluate stage
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value
# Metric groups (the MLflow UI groups charts by the prefix before "/").
EPOCH_PREFIX, VALID_PREFIX, SLICE_PREFIX, TRAIN_PREFIX = "epoch/", "valid/", "slice/", "train/"
CI_PREFIX, FUSION_PREFIX = "test_ci/", "fusion/"  # evaluate's bootstrap interval; retrained fusions
SEEDS_PREFIX = "seeds/"  # the test metric over train.seed and train.repeat_seeds (cliper/seed_repeats.py)
TIMING_FILE = "timing.json"  # the train stage's wall-clock seconds (not a DVC out)
TIMING_SCALARS = ("seconds_per_epoch",)  # logged as train/<name>
VALIDATION_REPORT = "report.html"  # the validate stage's self-contained page
MODEL_ARTIFACT = "model"
# Files of models/recommender logged as plain artifacts (the pyfunc holds the embeddings).
MODEL_FILE_SUFFIXES = (".json", ".yaml", ".csv", ".png")
# What the served model imports (cliper itself must be installed where it is served). Stating
# them skips MLflow's requirement inference, which reloads the model in a subprocess (~10 s).
SERVING_PACKAGES = ("mlflow", "cloudpickle", "numpy", "pandas", "pyarrow")
MAX_REASON_CHARS = 400


class TrackingUnavailable(CliperError):
    """The tracking server (or its database / artifact store) failed: worth a retry once it is back."""

    exit_code = 3  # not 2: the same inputs succeed once the server is back, so retries make sense


def experiment_name(params: Params) -> str:
    """``<experiment_prefix>-<dataset>``, lower case like the model names (demo: ``cliper-demo``)."""
    return registry.safe_name(f"{params.tracking.experiment_prefix}-{params.ingest.name}")


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


def path_digest(path: Path) -> str:
    """sha256 of a file, or of a folder's sorted ``(path, file sha256)`` list; ``missing`` if absent."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    if path.is_dir():
        listing = [f"{p.relative_to(path).as_posix()}:{sha256_file(p)}"
                   for p in sorted(path.rglob("*")) if p.is_file()]
        return hashlib.sha256("\n".join(listing).encode()).hexdigest()
    return "missing"


def input_hashes(params: Params, root: Path) -> dict[str, str]:
    """``input.<path>`` -> sha256 of each input the evaluate stage reads, hashed as it reads them.

    Computed here rather than read from ``dvc.lock``: while the stage runs, DVC has not yet
    written this run's lock entry, so the lock still holds the previous run's hashes.
    """
    root = Path(root)
    paths = (params.train.out_dir, f"{params.ingest.out_dir}/interactions.parquet",
             f"{params.ingest.out_dir}/items.parquet", params.clip.extract.out_dir,
             f"{params.preprocess.out_dir}/missing_images.csv")
    return {f"input.{p}": path_digest(root / p) for p in paths}


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


def log_history(history: list[dict[str, Any]], end_times: dict[int, float] | None = None) -> int:
    """Per-epoch series under ``epoch/``: ``loss`` -> ``epoch/train_loss``, the rest ``epoch/valid_<name>``.

    One point per epoch at ``step=epoch``, stamped with the epoch's wall-clock end (from
    the train stage's ``timing.json``) so MLflow's time axes show the training as it ran; one batch call.
    """
    from mlflow.entities import Metric

    end_times = end_times or {}
    now_ms = int(time.time() * 1000)
    batch: list[Metric] = []
    for i, row in enumerate(history):
        step = int(row.get("epoch", i))
        stamp = int(end_times[step] * 1000) if step in end_times else now_ms
        values = flat_metrics({k: v for k, v in row.items() if k not in ("epoch", "seconds", "end_time")})
        for key, value in values.items():
            name = key if key.startswith(("train", "valid")) else f"train_{key}" if "loss" in key else (
                f"valid_{key}")
            batch.append(Metric(f"{EPOCH_PREFIX}{name}", value, stamp, step))
    if batch:
        MlflowClient().log_batch(mlflow.active_run().info.run_id, metrics=batch)
    return len(history)


def read_timing(reports: Path) -> dict[str, Any]:
    """The train stage's ``timing.json`` when it belongs to ``history.json`` there, else ``{}``.

    DVC does not track the timings, so after a ``dvc checkout`` of another model the file may
    describe another training; its ``history_sha256`` tells.
    """
    path, history = reports / TIMING_FILE, reports / "history.json"
    if not (path.is_file() and history.is_file()):
        return {}
    timing = read_json(path)
    if timing.get("history_sha256") != sha256_file(history):
        logger.info("%s belongs to another training than %s: wall-clock times not logged", path, history)
        return {}
    return timing


def run_metrics(train_metrics: dict[str, Any], eval_metrics: dict[str, Any]) -> dict[str, float]:
    """Every final metric once, grouped by prefix for the MLflow UI.

    ``test/*`` and ``valid/*`` come from the evaluate stage (its ``test`` block is what promotion
    compares), ``slice/<name>/*`` from its slices, ``test_ci/*`` the bootstrap interval over
    test users, ``fusion/<name>/*`` the fusions retrained for comparison (``vs_trained.*``: the
    paired gain over the trained model), ``seeds/*`` the test metric's mean, sd and per-seed values
    over the repeated train seeds, ``train/*`` the train stage's scalars (best epoch, epochs run,
    seconds per epoch); its own copies of valid/test metrics are left out (evaluate recomputes them).
    """
    out = flat_metrics(headline(eval_metrics), registry.TEST_PREFIX)
    if isinstance(eval_metrics.get("valid"), dict):
        out.update(flat_metrics(eval_metrics["valid"], VALID_PREFIX))
    for name, block in (eval_metrics.get("slices") or {}).items():
        out.update(flat_metrics(block, f"{SLICE_PREFIX}{name}/"))
    if isinstance(eval_metrics.get("test_ci"), dict):  # bootstrap interval over test users
        out.update(flat_metrics(eval_metrics["test_ci"], CI_PREFIX))
    for name, block in (eval_metrics.get("fusions") or {}).items():  # retrained fusions, test metrics
        out.update(flat_metrics(block.get("test", {}), f"{FUSION_PREFIX}{name}/"))
        gain = block.get("vs_trained") or {}  # paired gain over the trained model and its interval
        out.update(flat_metrics({k: gain[k] for k in ("gain", "low", "high") if k in gain},
                                f"{FUSION_PREFIX}{name}/vs_trained."))
    seeds = train_metrics.get("over_seeds")
    if isinstance(seeds, dict):  # seeds/recall_at_20.mean, .sd, .test.<seed>
        out.update(flat_metrics({seeds.get("metric", "test"): seeds}, SEEDS_PREFIX))
    scalars = {k: v for k, v in train_metrics.items() if not isinstance(v, dict)}
    out.update(flat_metrics(scalars, TRAIN_PREFIX))
    return out


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
    report = root / params.validate.out_dir / VALIDATION_REPORT
    if report.is_file():  # MLflow's artifact view renders it (the GX Data Docs need CDN assets)
        mlflow.log_artifact(str(report), "reports/validate")
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

    Logs params (flattened ``Params`` + git commit, the sha256 of every input as read now,
    content hashes), the per-epoch series (:func:`log_history`), every final metric once
    (:func:`run_metrics`: ``test/*`` is what promotion compares), the reports, plots, view
    weights and the validation report, and the top-K pyfunc (:mod:`cliper.serving`).

    Args:
        params: the pipeline params.
        root: project root (all paths are relative to it).
        eval_metrics: the evaluate stage's ``metrics.json`` content (``{"test": {"recall@20": ...},
            "valid": {...}, "slices": {...}}``; a flat ``{"recall@20": ...}`` is read as test).

    Returns:
        ``run_id``, ``experiment``, ``experiment_id``, ``model_name``, ``model_version``,
        ``model_uri``, ``tracking_uri``, ``run_url``, ``ui_command``.
    """
    uri = configure(resolve_uri(params.tracking.uri, root))
    try:
        return _log_and_register(params, Path(root), eval_metrics, uri)
    except (MlflowException, requests.RequestException) as exc:
        reason = redact(" ".join(str(exc).split()))[:MAX_REASON_CHARS]
        raise TrackingUnavailable(
            f"MLflow tracking server {redact(uri)} failed while logging the run: {reason}; check that "
            f"the server, its database and its artifact store are up (the URI comes from {ENV_URI} or "
            "params.yaml: tracking.uri), then rerun the stage (dvc repro)") from exc


def _log_and_register(params: Params, root: Path, eval_metrics: dict[str, Any], uri: str) -> dict[str, Any]:
    model_dir = root / params.train.out_dir
    experiment = experiment_name(params)
    experiment_id = ensure_experiment(experiment, root, uri)
    name = registry.model_name(params.ingest.name, _backbone(params, model_dir))
    hashes = content_hashes(params, root)
    commit = git_commit(root)
    reports = root / params.train.reports_dir
    train_metrics = read_json(reports / "metrics.json") if (reports / "metrics.json").exists() else {}
    timing = read_timing(reports)
    times = timing.get("epochs", [])
    train_metrics = {**train_metrics, **{k: timing[k] for k in TIMING_SCALARS if k in timing}}
    with mlflow.start_run(experiment_id=experiment_id) as run:
        _log_params(params, {"git_commit": commit, **input_hashes(params, root), **hashes})
        mlflow.set_tags({"dataset": params.ingest.name, "model_name": name, **hashes})
        if (reports / "history.json").exists():
            log_history(read_json(reports / "history.json"), {int(t["epoch"]): t["end_time"] for t in times})
        metrics = run_metrics(train_metrics, eval_metrics)
        mlflow.log_metrics(metrics)
        test = {k: v for k, v in metrics.items() if k.startswith(registry.TEST_PREFIX)}
        _log_artifacts(params, root, model_dir)
        info = _log_model(params, root, name)
    version = str(info.registered_model_version)
    client = MlflowClient(uri)
    tags = {"dataset": params.ingest.name, "run_id": run.info.run_id, "git_commit": commit, **hashes, **test}
    registry.register_challenger(client, name, version, tags)
    runs_url, ui_command = ui_links(uri, experiment_id)
    result = {
        "run_id": run.info.run_id, "experiment": experiment, "experiment_id": experiment_id,
        "model_name": name, "model_version": version, "model_uri": f"models:/{name}/{version}",
        "tracking_uri": uri, "run_url": runs_url + run.info.run_id, "ui_command": ui_command,
    }
    logger.info("MLflow run %s; registered %s v%s as challenger", run.info.run_id, name, version)
    return result
