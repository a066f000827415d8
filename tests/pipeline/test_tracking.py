"""MLflow tracking against a real SQLite store: URI precedence, run contents, registration."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from cliper import registry, tracking, tracking_store
from cliper.io import sha256_file
from tests.pipeline.conftest import EPOCH_END_TIMES, SECONDS_PER_EPOCH

EVAL = {"backbone": "lightgcn", "valid": {"recall@20": 0.12}, "test": {"recall@20": 0.25, "ndcg@20": 0.125},
        "slices": {"cold": {"recall@20": 0.05}},
        "test_ci": {"level": 0.95, "recall@20": {"low": 0.2, "high": 0.3}},
        "fusions": {"concat": {"trained": False, "best_epoch": 3, "test": {"recall@20": 0.22},
                               "vs_trained": {"metric": "recall@20", "level": 0.95, "gain": -0.12,
                                              "low": -0.2, "high": -0.03, "share_positive": 0.01}}}}


def test_uri_precedence_env_then_params_then_project_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_store.resolve_uri(None, tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert tracking_store.resolve_uri("sqlite:///other.db", tmp_path) == "sqlite:///other.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking_store.resolve_uri("sqlite:///other.db", tmp_path) == "http://127.0.0.1:5999"
    assert not tracking_store.is_local("http://127.0.0.1:5999") and tracking_store.is_local("sqlite:///x.db")


def test_ui_links_point_at_the_server_or_at_a_local_mlflow_ui() -> None:
    assert tracking_store.ui_links("https://mlflow.example/", "7") == (
        "https://mlflow.example/#/experiments/7/runs/", "open https://mlflow.example/")
    assert tracking_store.ui_links("sqlite:////p/mlflow.db", "7") == (
        f"{tracking_store.UI_URL}/#/experiments/7/runs/", "mlflow ui --backend-store-uri sqlite:////p/mlflow.db")


def test_metric_names_are_mlflow_legal() -> None:
    assert registry.metric_key("recall@20") == "recall_at_20"
    assert registry.metric_key("ndcg@10 (cold)") == "ndcg_at_10 _cold_"
    assert tracking.flat_metrics({"a": {"p@5": 1, "skip": "x", "flag": True}, "b": 2.5}, "test_") == {
        "test_a.p_at_5": 1.0, "test_b": 2.5}


def test_input_hashes_are_of_the_files_as_read_now(synth_project: Path, make_params) -> None:
    params = make_params("Demo")
    before = tracking.input_hashes(params, synth_project)
    assert before["input.data/ingested/interactions.parquet"] == sha256_file(
        synth_project / "data/ingested/interactions.parquet")
    assert before["input.data/features"] == "missing"
    (synth_project / "models/recommender/config.json").write_text("{}")  # a retrained model
    after = tracking.input_hashes(params, synth_project)
    assert after["input.models/recommender"] != before["input.models/recommender"]
    assert {k for k in before if before[k] != after[k]} == {"input.models/recommender"}


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
    assert result["experiment"] == "cliper-demo" and result["model_name"] == "cliper-demo-lightgcn"
    client = MlflowClient(result["tracking_uri"])
    run = client.get_run(result["run_id"])
    assert run.info.artifact_uri.startswith((root.resolve() / "mlartifacts").as_uri())

    params = run.data.params
    assert params["train.backbone"] == "freedom" and params["ingest.name"] == "Demo"
    assert {"git_commit", "data_hash", "items_hash", "model_hash"} <= set(params)
    assert params["input.data/ingested/interactions.parquet"] == sha256_file(
        root / "data/ingested/interactions.parquet")
    assert not any(k.startswith("dvc.") for k in params), "no hashes read from a dvc.lock that may be stale"
    metrics = run.data.metrics
    assert metrics["test/recall_at_20"] == pytest.approx(0.25)
    assert metrics["test/ndcg_at_20"] == pytest.approx(0.125)
    assert metrics["slice/cold/recall_at_20"] == pytest.approx(0.05)
    assert metrics["valid/recall_at_20"] == pytest.approx(0.12)
    assert metrics["train/best_epoch"] == 2
    assert metrics["train/seconds_per_epoch"] == SECONDS_PER_EPOCH  # from timing.json, not a DVC out
    assert metrics["test_ci/recall_at_20.low"] == pytest.approx(0.2) and metrics["test_ci/level"] == 0.95
    assert metrics["fusion/concat/recall_at_20"] == pytest.approx(0.22)
    assert metrics["fusion/concat/vs_trained.low"] == pytest.approx(-0.2)
    assert sorted(metrics) == sorted({"test/recall_at_20", "test/ndcg_at_20", "slice/cold/recall_at_20",
                                      "test_ci/level", "test_ci/recall_at_20.low",
                                      "test_ci/recall_at_20.high",
                                      "fusion/concat/recall_at_20", "fusion/concat/vs_trained.gain",
                                      "fusion/concat/vs_trained.low", "fusion/concat/vs_trained.high",
                                      "valid/recall_at_20", "train/best_epoch", "train/seconds_per_epoch",
                                      "epoch/train_loss",
                                      "epoch/valid_recall_at_20"}), "each metric once"
    history = client.get_metric_history(result["run_id"], "epoch/valid_recall_at_20")
    assert sorted((m.step, round(m.value, 6)) for m in history) == [(0, 0.1), (1, 0.11), (2, 0.12)]
    losses = client.get_metric_history(result["run_id"], "epoch/train_loss")
    assert sorted(m.timestamp for m in losses) == [int(t * 1000) for t in EPOCH_END_TIMES]

    logged = {a.path for folder in ("reports/train", "reports/train/plots", "reports/evaluate", "recommender")
              for a in client.list_artifacts(result["run_id"], folder)}
    assert {"reports/train/history.json", "reports/train/plots/history.png",
            "reports/train/view_weights.csv", "reports/evaluate/metrics.json",
            "recommender/config.json", "recommender/train_meta.json"} <= logged
    assert "reports/evaluate/mlflow.json" not in logged

    version = client.get_model_version_by_alias(result["model_name"], registry.CHALLENGER)
    assert str(version.version) == result["model_version"] == "1"
    assert version.tags["data_hash"] == params["data_hash"]
    assert float(version.tags["test/recall_at_20"]) == pytest.approx(0.25)


def test_each_project_logged_in_one_process_gets_its_own_store(
    tmp_path: Path, mlflow_env: None, empty_mlflow_db: Path, make_synth, make_params
) -> None:
    """MLflow exports the URI it is given; a second project must not inherit the first one's store."""
    results = []
    for name in ("first", "second"):
        root = make_synth(tmp_path / name)
        shutil.copy(empty_mlflow_db, root / "mlflow.db")
        results.append(tracking.log_and_register(make_params("Demo"), root, EVAL))
        assert results[-1]["tracking_uri"] == f"sqlite:///{root.resolve()}/mlflow.db"
        assert MlflowClient(results[-1]["tracking_uri"]).get_run(results[-1]["run_id"])
    assert "MLFLOW_TRACKING_URI" not in os.environ


def test_timings_of_another_training_are_not_logged(synth_project: Path) -> None:
    """timing.json is not a DVC out: after a checkout of another model it must not be read."""
    reports = synth_project / "reports/train"
    assert tracking.read_timing(reports)["seconds_per_epoch"] == SECONDS_PER_EPOCH
    (reports / "history.json").write_text('[{"epoch": 0, "loss": 0.5}]')  # another training's history
    assert tracking.read_timing(reports) == {}
    (reports / "timing.json").unlink()
    assert tracking.read_timing(reports) == {}


def test_second_run_gets_new_version_and_moves_challenger(synth_project: Path, make_params) -> None:
    params = make_params("Demo")
    first = tracking.log_and_register(params, synth_project, {"recall@20": 0.1})
    second = tracking.log_and_register(params, synth_project, {"recall@20": 0.2})
    assert (first["experiment_id"], first["model_version"], second["model_version"]) == (
        second["experiment_id"], "1", "2")
    client = MlflowClient(second["tracking_uri"])
    assert str(client.get_model_version_by_alias(second["model_name"], "challenger").version) == "2"


def test_summary_links_the_logged_run_and_its_registered_version(synth_project: Path, make_params) -> None:
    """``cliper summary`` reads ``mlflow.json`` as the evaluate stage writes it after a real store."""
    from cliper.io import write_json
    from cliper.run_summary import read_summary, summary_lines

    root, params = synth_project, make_params("Demo")
    (root / "reports/evaluate").mkdir(parents=True)
    evaluated = {**EVAL, "best_epoch": 2}
    (root / "reports/evaluate/metrics.json").write_text(json.dumps(evaluated))
    result = tracking.log_and_register(params, root, evaluated)
    write_json(root / "reports/evaluate/mlflow.json", result)
    lines = summary_lines(read_summary(params, root))
    assert lines[0] == ("lightgcn: test recall@20 0.2500 (95% interval 0.2000 to 0.3000, "
                        "bootstrap over test users)")
    run_line = next(line for line in lines if line.strip().startswith("MLflow run"))
    assert result["run_url"] in run_line and result["ui_command"] in run_line
    assert any(result["model_uri"] in line for line in lines if line.strip().startswith("registered"))
