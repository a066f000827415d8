"""The team setup end to end: one real stack per session and one pipeline run through it.

``team_stack`` starts PostgreSQL (``initdb`` in a temp folder), S3 (moto), ``mlflow server`` (PG
backend, artifacts proxied to S3) and ``prefect server start`` on PG, all on free 127.0.0.1
ports (:mod:`teamstack.stack`), and stops them at the end. ``team_run`` is the tiny project
run once the way a team runs it: the ``cliper-pipeline`` deployment served against that Prefect
server (``python -m flows.serve``) and triggered with ``prefect deployment run``, its evaluate
stage logging to the MLflow server; credentials travel only in the environment (an MLflow
password in the tracking URI's user info, the S3 keys), so the secrets test can look for them.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tasks.dvc import stop_process_group
from teamstack.servers import venv_env
from teamstack.stack import TeamStack
from tests.conftest import REPO_ROOT, make_project, tiny_params

FLOW_RUN_TIMEOUT_S = 900  # the whole tiny pipeline on 2 shared cores, with server round trips
DEPLOYMENT = "cliper-pipeline/cliper-pipeline"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
MLFLOW_USER = "cliper-ci"
HTTP_TIMEOUT_S = 30
PAGE = 200  # Prefect's largest page of logs
# An unreachable tracking server fails the stage within seconds instead of MLflow's ~4 minutes.
FAST_FAIL = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}


def api(url: str, body: dict | None = None) -> object:
    """JSON from a GET (``body`` None) or POST to a server API."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
        return json.loads(response.read())


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout_s: float = 600
        ) -> subprocess.CompletedProcess:
    """``cmd`` with output captured (text)."""
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s)


@dataclass(frozen=True)
class TeamRun:
    """The project after its deployment run, and where to look at that run."""

    project: Path
    flow_run_id: str
    serve_log: Path
    env: dict[str, str]
    secrets: dict[str, str]

    @property
    def mlflow_info(self) -> dict:
        return json.loads((self.project / "reports/evaluate/mlflow.json").read_text())


@pytest.fixture(scope="session")
def team_stack(tmp_path_factory: pytest.TempPathFactory):
    """The whole team stack for the session (stopped, data deleted, at the end)."""
    with TeamStack(tmp_path_factory.mktemp("team-stack")) as stack:
        yield stack


@pytest.fixture(scope="session")
def team_env(team_stack: TeamStack) -> dict[str, str]:
    """A user's environment against the stack; the MLflow password rides in the URI's user info."""
    env = venv_env(**team_stack.client_env(), **FAST_FAIL, **GIT_ENV)
    password = secrets.token_urlsafe(16)
    env["MLFLOW_TRACKING_URI"] = team_stack.mlflow_uri.replace("://", f"://{MLFLOW_USER}:{password}@")
    env["TEAM_TEST_MLFLOW_PASSWORD"] = password  # read back by the secrets test only
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        env.pop(key, None)
    return env


def git_commit_all(project: Path, env: dict[str, str], message: str) -> None:
    for cmd in (["git", "add", "-A"], ["git", "commit", "-q", "-m", message]):
        subprocess.run(cmd, cwd=project, env=env, check=True, capture_output=True)


def _wait_deployment(api_url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + FLOW_RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"flows.serve exited:\n{log.read_text(errors='replace')[-3000:]}"
        try:
            api(f"{api_url}/deployments/name/{DEPLOYMENT}")
            return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"deployment not registered:\n{log.read_text(errors='replace')[-3000:]}")


def _wait_flow_run(api_url: str, flow_run_id: str, log: Path) -> dict:
    deadline = time.monotonic() + FLOW_RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        flow_run = api(f"{api_url}/flow_runs/{flow_run_id}")
        if flow_run["state_type"] in TERMINAL:
            return flow_run
        time.sleep(2)
    raise AssertionError(f"flow run {flow_run_id} not finished:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="session")
def team_run(team_stack: TeamStack, team_env: dict[str, str], tmp_path_factory) -> TeamRun:
    """The tiny project (git + DVC, remote on the stack's S3) run once through the deployment."""
    project = make_project(tmp_path_factory.mktemp("team") / "project", tiny_params())
    subprocess.run(["dvc", "remote", "add", "-d", "team", team_stack.dvc_remote], cwd=project, env=team_env,
                   check=True, capture_output=True)
    git_commit_all(project, team_env, "tiny project")
    log = project.parent / "serve.log"
    with open(log, "wb") as fh:
        serve = subprocess.Popen([sys.executable, "-m", "flows.serve", "--project-dir", str(project)],
                                 cwd=REPO_ROOT, env=team_env, stdout=fh, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    try:
        _wait_deployment(team_stack.prefect_api, serve, log)
        started = run([sys.executable, "-m", "prefect", "deployment", "run", DEPLOYMENT], REPO_ROOT, team_env)
        assert started.returncode == 0, started.stdout + started.stderr
        flow_run_id = re.search(r"UUID:\s*([0-9a-f-]{36})", started.stdout).group(1)
        flow_run = _wait_flow_run(team_stack.prefect_api, flow_run_id, log)
    finally:
        stop_process_group(serve)
    assert flow_run["state_type"] == "COMPLETED", log.read_text(errors="replace")[-4000:]
    git_commit_all(project, team_env, "pipeline outputs")
    known = {"aws_secret": team_env["AWS_SECRET_ACCESS_KEY"], "aws_key": team_env["AWS_ACCESS_KEY_ID"],
             "mlflow_password": team_env["TEAM_TEST_MLFLOW_PASSWORD"],
             "postgres_password": team_stack.postgres.password}
    return TeamRun(project, flow_run_id, log, team_env, known)
