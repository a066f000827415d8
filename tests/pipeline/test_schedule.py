"""The schedule fires: the server's scheduler creates a run of the served deployment, which completes.

``python -m flows.serve`` (the project's own serve entry point) serves the deployment on a
5-second interval schedule against the session's real Prefect server, for a tiny project with
only the ``demo_data`` stage. The server must create a Scheduled run on its own (no manual
``deployment run``), the served runner must take it to Completed, and the server log must hold
no traceback (SQLAlchemy 2.1 broke Prefect 3.8's scheduler with ``Can't evaluate bulk DML``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, make_project, tiny_params
from tests.servers import venv_env

INTERVAL_S = 5
RUN_DEADLINE_S = 180  # scheduler loop 5 s + a demo_data run on the shared 2-core machine
DELETE_ATTEMPTS, DELETE_WAIT_S = 5, 2.0  # clean-up: the deployment's DELETE, retried on 503


def _flow_runs(api: str, deployment_id: str, state_type: str) -> list[dict]:
    body = json.dumps({"deployments": {"id": {"any_": [deployment_id]}},
                       "flow_runs": {"state": {"type": {"any_": [state_type]}}}, "limit": 5}).encode()
    request = urllib.request.Request(f"{api}/flow_runs/filter", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _delete_deployment(api: str, deployment_id: str) -> None:
    """DELETE the deployment, retried: Prefect answers 503 while its database is busy (serve exiting)."""
    request = urllib.request.Request(f"{api}/deployments/{deployment_id}", method="DELETE")
    for attempt in range(DELETE_ATTEMPTS):
        try:
            urllib.request.urlopen(request, timeout=30).close()
            return
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or attempt + 1 == DELETE_ATTEMPTS:
                raise
            time.sleep(DELETE_WAIT_S)


def _deployment_id(api: str) -> str | None:
    try:
        with urllib.request.urlopen(f"{api}/deployments/name/cliper-pipeline/cliper-pipeline",
                                    timeout=30) as response:
            return json.loads(response.read())["id"]
    except OSError:
        return None


@pytest.mark.slow
def test_the_served_schedule_creates_a_run_that_completes(prefect_server_process, tmp_path: Path) -> None:
    api = f"{prefect_server_process.base_url}/api"
    project = make_project(tmp_path / "project",
                           tiny_params({"orchestration": {"interval_seconds": INTERVAL_S}}))
    log = tmp_path / "serve.log"
    with open(log, "wb") as fh:
        serve = subprocess.Popen(
            [sys.executable, "-m", "flows.serve", "--project-dir", str(project), "--stages", "demo_data"],
            cwd=REPO_ROOT, env=venv_env(PREFECT_API_URL=api), stdout=fh, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    scheduled: list[dict] = []
    deployment_id = None
    try:
        deadline = time.monotonic() + RUN_DEADLINE_S
        completed = None
        while time.monotonic() < deadline and serve.poll() is None:
            deployment_id = deployment_id or _deployment_id(api)
            if deployment_id:
                scheduled = scheduled or _flow_runs(api, deployment_id, "SCHEDULED")
                completed = next(iter(_flow_runs(api, deployment_id, "COMPLETED")), None)
                if completed:
                    break
            time.sleep(1)
        serve_log = log.read_text(errors="replace")
        assert serve.poll() is None, f"serve exited:\n{serve_log[-3000:]}"
        assert deployment_id, f"deployment never registered:\n{serve_log[-3000:]}"
        assert scheduled, f"the server created no Scheduled run in {RUN_DEADLINE_S} s\n" + (
            "\n".join(prefect_server_process.tracebacks()[:2]) or serve_log[-3000:])
        assert completed, f"no scheduled run completed in {RUN_DEADLINE_S} s\n" + (
            "\n".join(prefect_server_process.tracebacks()[:2]) or serve_log[-3000:])
        assert completed["auto_scheduled"], "the run must come from the schedule, not a manual trigger"
        assert completed["parameters"]["stages"] == ["demo_data"]
        assert (project / "data/raw/demo").is_dir(), "the scheduled run ran the demo_data stage"
        assert prefect_server_process.tracebacks() == []
    finally:
        serve.send_signal(2)  # SIGINT: serve pauses its schedule and exits
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
        if deployment_id:  # with its pending scheduled runs, which no later test may pick up
            _delete_deployment(api, deployment_id)
