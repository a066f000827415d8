"""MLflow on the team server (PostgreSQL backend, S3 artifacts): logging, promotion, serving."""

from __future__ import annotations

import json
import subprocess

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from cliper import registry
from teamstack.servers import VENV_BIN, ServerProcess, free_port
from tests.team.conftest import TeamRun, api

pytestmark = pytest.mark.slow
CONCURRENT_PROMOTES = 3
SERVE_K = 4
GAIN = 0.05  # the second version's test metric above the first's


@pytest.fixture(scope="module")
def client(team_stack) -> MlflowClient:
    return MlflowClient(team_stack.mlflow_uri)


def _promote(team_run: TeamRun, model: str) -> subprocess.Popen:
    return subprocess.Popen([str(VENV_BIN / "cliper"), "promote", "--model", model], cwd=team_run.project,
                            env=team_run.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _decision(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out + err
    return json.loads(out)


def test_pipeline_run_is_logged_on_the_server_with_artifacts_in_s3(team_run: TeamRun, team_stack,
                                                                   client: MlflowClient) -> None:
    info = team_run.mlflow_info
    assert info["tracking_uri"] == team_stack.mlflow_uri
    assert info["run_url"].startswith(team_stack.mlflow_uri + "/#/experiments/")
    got = client.get_run(info["run_id"])
    assert got.info.status == "FINISHED" and "test/recall_at_20" in got.data.metrics
    version = client.get_model_version_by_alias(info["model_name"], registry.CHALLENGER)
    assert version.version == info["model_version"] and version.run_id == info["run_id"]
    rows = team_stack.postgres.query(team_stack.settings.mlflow_db,
                                     f"select status from runs where run_uuid = '{info['run_id']}'")
    assert rows == ["FINISHED"], "the run is stored in PostgreSQL"
    prefix = f"{team_stack.settings.mlflow_prefix}/{info['experiment_id']}/{info['run_id']}/artifacts/"
    keys = team_stack.s3.list_keys(team_stack.settings.bucket, prefix)
    names = {key[len(prefix):] for key in keys}
    assert {"reports/evaluate/metrics.json", "recommender/config.json"} <= names, sorted(names)
    assert any(name.endswith("MLmodel") for name in names) or any(
        k.endswith("MLmodel") for k in team_stack.s3.list_keys(team_stack.settings.bucket)), sorted(names)
    assert not (team_run.project / "mlflow.db").exists() and not (team_run.project / "mlartifacts").exists()


def _second_version(client: MlflowClient, name: str, first, tmp_path) -> str:
    """A better challenger: a new run on the server holding the same model, a higher test metric."""
    run_1 = client.get_run(first.run_id)
    metric = run_1.data.metrics["test/recall_at_20"] + GAIN
    new = client.create_run(run_1.info.experiment_id)
    # Resolved through this client, never the process-wide default: MLflow resolves a `models:/`
    # source with a default client, which an earlier test in the same process may have pointed at
    # a local SQLite store.
    model_id = getattr(first, "model_id", None) or first.source.removeprefix("models:/")
    location = client.get_logged_model(model_id).artifact_location
    model = mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(tmp_path),
                                                tracking_uri=client.tracking_uri)
    client.log_artifacts(new.info.run_id, model, "model")
    client.log_metric(new.info.run_id, "test/recall_at_20", metric)
    client.set_terminated(new.info.run_id)
    source = f"runs:/{new.info.run_id}/model"
    version = client.create_model_version(name, source, run_id=new.info.run_id).version
    tags = {tag: first.tags[tag] for tag in registry.MATCH_TAGS}
    registry.register_challenger(client, name, str(version), {**tags, "run_id": new.info.run_id})
    return str(version)


def test_promote_moves_the_alias_and_concurrent_promotes_leave_one_champion(
        team_run: TeamRun, client: MlflowClient, tmp_path) -> None:
    name = team_run.mlflow_info["model_name"]
    first = _decision(_promote(team_run, name))
    assert first["decision"] in ("first_champion", "kept_champion"), first
    champion = client.get_model_version_by_alias(name, registry.CHAMPION)
    v2 = _second_version(client, name, champion, tmp_path)
    procs = [_promote(team_run, name) for _ in range(CONCURRENT_PROMOTES)]
    decisions = [_decision(proc) for proc in procs]
    assert "promoted" in {d["decision"] for d in decisions}, decisions
    versions = [client.get_model_version(name, v.version)
                for v in client.search_model_versions(f"name='{name}'")]
    holders = [v.version for v in versions if registry.CHAMPION in v.aliases]
    assert holders == [v2], f"exactly one version holds '{registry.CHAMPION}': {holders}"
    claims = [v.version for v in versions
              if "promotion.champion_since" in v.tags and "promotion.replaced_by" not in v.tags]
    assert claims == [v2], f"the promotion tags name one current champion: {claims}"


def test_champion_is_served_from_the_server(team_run: TeamRun, team_stack, tmp_path) -> None:
    name = team_run.mlflow_info["model_name"]
    port = free_port()
    cmd = [str(VENV_BIN / "mlflow"), "models", "serve", "-m", f"models:/{name}@{registry.CHAMPION}",
           "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    _decision(_promote(team_run, name))  # a champion exists even when this test runs alone
    user = str(pd.read_csv(team_run.project / "data/ingested/user_map.csv")["user_id"].iloc[0])
    env = {**team_run.env, "MLFLOW_TRACKING_URI": team_stack.mlflow_uri}
    with ServerProcess(cmd, tmp_path / "serve.log", f"http://127.0.0.1:{port}", "/ping", env=env) as server:
        body = {"dataframe_records": [{"user_id": user, "k": SERVE_K}]}
        (row,) = api(f"{server.base_url}/invocations", body)["predictions"]
    assert row["source"] == "model" and row["error"] == "" and len(row["asins"]) == SERVE_K, row
