"""PostgreSQL stops while the pipeline runs: a clear error naming the tracking server, intact DVC
outputs, and a rerun that completes once the database is back."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.team.conftest import TeamRun, run

pytestmark = pytest.mark.slow
STAGE_START = "Running stage 'evaluate'"
TRACKING_FAILED_EXIT = 3  # cliper.tracking.TrackingUnavailable: a retry can succeed


def _repro_stopping_postgres(project: Path, env: dict[str, str], postgres) -> tuple[int, str]:
    """``dvc repro``; PostgreSQL is stopped as soon as DVC starts the evaluate stage."""
    proc = subprocess.Popen(["dvc", "repro"], cwd=project, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if STAGE_START in line:
            postgres.stop()
    return proc.wait(timeout=600), "".join(lines)


def test_postgres_down_during_a_run_then_a_rerun_completes(team_run: TeamRun, team_stack, tmp_path) -> None:
    project = tmp_path / "project"
    shutil.copytree(team_run.project, project, symlinks=True)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["evaluate"]["cold_start_max_train"] += 1  # only evaluate is out of date
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    lock_before = (project / "dvc.lock").read_bytes()
    try:
        code, output = _repro_stopping_postgres(project, team_run.env, team_stack.postgres)
    finally:
        team_stack.postgres.start()
    assert code != 0, output
    assert f"MLflow tracking server {team_stack.mlflow_uri} failed" in output, output[-3000:]
    assert f"exited with {TRACKING_FAILED_EXIT}" in output and "Traceback" not in output, output[-3000:]
    assert (project / "dvc.lock").read_bytes() == lock_before, "a failed stage records nothing"
    status = run(["dvc", "status", "--json"], project, team_run.env)
    assert set(json.loads(status.stdout)) == {"evaluate"}, f"only evaluate is stale: {status.stdout}"
    rerun = run(["dvc", "repro"], project, team_run.env)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "up to date" in run(["dvc", "status"], project, team_run.env).stdout
    info = json.loads((project / "reports/evaluate/mlflow.json").read_text())
    assert info["run_id"] != team_run.mlflow_info["run_id"]
    rows = team_stack.postgres.query(team_stack.settings.mlflow_db,
                                     f"select status from runs where run_uuid = '{info['run_id']}'")
    assert rows == ["FINISHED"]
