"""MLflow tracking against a real SQLite store: URI precedence, run contents, registration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from cliper import registry, tracking

EVAL = {"backbone": "lightgcn", "valid": {"recall@20": 0.12}, "test": {"recall@20": 0.25, "ndcg@20": 0.125},
        "slices": {"cold": {"recall@20": 0.05}}}


def test_uri_precedence_env_then_params_then_project_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.resolve_uri(None, tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert tracking.resolve_uri("sqlite:///other.db", tmp_path) == "sqlite:///other.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking.resolve_uri("sqlite:///other.db", tmp_path) == "http://127.0.0.1:5999"
    assert not tracking.is_local("http://127.0.0.1:5999") and tracking.is_local("sqlite:///x.db")


def test_metric_names_are_mlflow_legal() -> None:
    assert registry.metric_key("recall@20") == "recall_at_20"
    assert registry.metric_key("ndcg@10 (cold)") == "ndcg_at_10 _cold_"
    assert tracking.flat_metrics({"a": {"p@5": 1, "skip": "x", "flag": True}, "b": 2.5}, "test_") == {
        "test_a.p_at_5": 1.0, "test_b": 2.5}


def test_dvc_hashes_read_from_lock(tmp_path: Path) -> None:
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  train:\n    cmd: cliper run train\n    deps:\n"
        "    - path: data/ingested/interactions.parquet\n      hash: md5\n      md5: abc123\n"
        "    - path: data/features\n      hash: md5\n      md5: def456.dir\n"
    )
    assert tracking.dvc_hashes(tmp_path) == {
        "dvc.train.data/ingested/interactions.parquet": "abc123", "dvc.train.data/features": "def456.dir"}
    assert tracking.dvc_hashes(tmp_path / "nowhere") == {}


def test_log_and_register_writes_run_metrics_artifacts_and_challenger(
    synth_project: Path, make_params
) -> None:
    root = synth_project
    (root / "reports/evaluate").mkdir(parents=True)
    (root / "reports/evaluate/metrics.json").write_text(json.dumps(EVAL))
    (root / "reports/evaluate/mlflow.json").write_text("{}")  # a previous run's link: not logged
    result = tracking.log_and_register(make_params("Demo"), root, EVAL)

    assert result["tracking_uri"] == f"sqlite:///{root.resolve()}/mlflow.db"
    assert (root / "mlflow.db").exists()
    assert result["experiment"] == "cliper-Demo" and result["model_name"] == "cliper-demo-lightgcn"
    client = MlflowClient(result["tracking_uri"])
    run = client.get_run(result["run_id"])
    assert run.info.artifact_uri.startswith((root.resolve() / "mlartifacts").as_uri())

    params = run.data.params
    assert params["train.backbone"] == "freedom" and params["ingest.name"] == "Demo"
    assert {"git_commit", "data_hash", "items_hash", "model_hash"} <= set(params)
    metrics = run.data.metrics
    assert metrics["test_recall_at_20"] == pytest.approx(0.25)
    assert metrics["test_ndcg_at_20"] == pytest.approx(0.125)
    assert "test_slices.cold.recall_at_20" not in metrics
    assert metrics["eval.slices.cold.recall_at_20"] == pytest.approx(0.05)
    assert metrics["eval.valid.recall_at_20"] == pytest.approx(0.12)
    assert metrics["final.valid.recall_at_20"] == pytest.approx(0.12)
    history = client.get_metric_history(result["run_id"], "valid_recall_at_20")
    assert sorted((m.step, round(m.value, 6)) for m in history) == [(0, 0.1), (1, 0.11), (2, 0.12)]
    assert len(client.get_metric_history(result["run_id"], "train_loss")) == 3

    logged = {a.path for folder in ("reports/train", "reports/train/plots", "reports/evaluate", "recommender")
              for a in client.list_artifacts(result["run_id"], folder)}
    assert {"reports/train/history.json", "reports/train/plots/history.png",
            "reports/train/view_weights.csv", "reports/evaluate/metrics.json",
            "recommender/config.json", "recommender/train_meta.json"} <= logged
    assert "reports/evaluate/mlflow.json" not in logged

    version = client.get_model_version_by_alias(result["model_name"], registry.CHALLENGER)
    assert str(version.version) == result["model_version"] == "1"
    assert version.tags["data_hash"] == params["data_hash"]
    assert float(version.tags["test_recall_at_20"]) == pytest.approx(0.25)


def test_second_run_gets_new_version_and_moves_challenger(synth_project: Path, make_params) -> None:
    params = make_params("Demo")
    first = tracking.log_and_register(params, synth_project, {"recall@20": 0.1})
    second = tracking.log_and_register(params, synth_project, {"recall@20": 0.2})
    assert (first["experiment_id"], first["model_version"], second["model_version"]) == (
        second["experiment_id"], "1", "2")
    client = MlflowClient(second["tracking_uri"])
    assert str(client.get_model_version_by_alias(second["model_name"], "challenger").version) == "2"
