"""A run with credentials in the environment leaves none of them where the pipeline records things.

The deployment run had the S3 keys and an MLflow password (in the tracking URI's user info) in
its environment, and the servers a PostgreSQL password. None of them may appear in the project's
committed files (params.yaml, dvc.yaml, dvc.lock, .dvc/config), the reports (metrics,
mlflow.json), the served deployment's log (flow, task and stage output), both servers' logs,
the Prefect logs and artifacts of the run, the MLflow run's params and tags, the model version's
tags, or any object in the bucket.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from mlflow.tracking import MlflowClient

from tests.team.conftest import PAGE, TeamRun, api

pytestmark = pytest.mark.slow


def _leaks(text: str, known: dict[str, str]) -> list[str]:
    return [name for name, value in known.items() if value and value in text]


def _prefect_records(base: str, flow_run_id: str) -> str:
    logs, offset = [], 0
    while True:
        page = api(f"{base}/logs/filter", {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": PAGE,
                                          "offset": offset})
        logs += page
        offset += PAGE
        if len(page) < PAGE:
            break
    artifacts = api(f"{base}/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}})
    flow_run = api(f"{base}/flow_runs/{flow_run_id}")
    assert logs and artifacts, "the run wrote logs and artifacts"
    return json.dumps([logs, artifacts, flow_run["parameters"]])


def _mlflow_records(uri: str, info: dict) -> str:
    client = MlflowClient(uri)
    run = client.get_run(info["run_id"])
    version = client.get_model_version(info["model_name"], info["model_version"])
    assert run.data.params, "the run logged its params"
    return json.dumps([run.data.params, run.data.tags, version.tags, version.source])


def test_no_credential_is_recorded_anywhere(team_run: TeamRun, team_stack) -> None:
    known = team_run.secrets
    assert known["mlflow_password"] in team_run.env["MLFLOW_TRACKING_URI"], "the run did carry a credential"
    tracked = subprocess.run(["git", "ls-files"], cwd=team_run.project, capture_output=True, text=True,
                             check=True).stdout.split()
    assert {"params.yaml", "dvc.yaml", "dvc.lock", ".dvc/config"} <= set(tracked)
    root = team_run.project
    reports = [str(p.relative_to(root)) for p in (root / "reports").rglob("*") if p.is_file()]
    assert "reports/evaluate/mlflow.json" in reports
    places = {f"file {name}": (root / name).read_text(errors="replace") for name in tracked + reports
              if name.startswith(("params", "dvc", ".dvc/", "reports/"))}
    places["deployment log"] = team_run.serve_log.read_text(errors="replace")
    places["mlflow server log"] = team_stack.mlflow.log_text()  # after the PostgreSQL outage, if it ran
    places["prefect server log"] = team_stack.prefect.log_text()
    places["prefect records"] = _prefect_records(team_stack.prefect_api, team_run.flow_run_id)
    places["mlflow params and tags"] = _mlflow_records(team_stack.mlflow_uri, team_run.mlflow_info)
    bucket = team_stack.settings.bucket
    s3 = team_stack.s3.client()
    for key in team_stack.s3.list_keys(bucket):
        places[f"s3 {key}"] = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("latin-1")
    assert "evaluate" in places["deployment log"] and len(places) > 20
    found = {place: leaks for place, text in places.items() if (leaks := _leaks(text, known))}
    assert not found, f"credentials recorded: {found}"
