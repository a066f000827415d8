"""The deployment run on the PostgreSQL-backed Prefect server: completed, one task run per stage."""

from __future__ import annotations

import pytest

from tasks.stages import STAGE_TASKS
from tests.team.conftest import TeamRun, api

pytestmark = pytest.mark.slow


def test_deployment_run_completes_with_its_task_runs_on_postgres(team_run: TeamRun, team_stack) -> None:
    base = team_stack.prefect_api
    flow_run = api(f"{base}/flow_runs/{team_run.flow_run_id}")
    assert flow_run["state_type"] == "COMPLETED"
    deployment = api(f"{base}/deployments/{flow_run['deployment_id']}")
    assert deployment["name"] == "cliper-pipeline"
    task_runs = api(f"{base}/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run["id"]]}}})
    states = {run["name"].rsplit("-", 1)[0]: run["state_type"] for run in task_runs}
    assert set(STAGE_TASKS) <= set(states), sorted(states)
    assert {states[name] for name in STAGE_TASKS} == {"COMPLETED"}, states
    rows = team_stack.postgres.query(team_stack.settings.prefect_db,
                                     f"select count(*) from task_run where flow_run_id = '{flow_run['id']}'")
    assert int(rows[0]) == len(task_runs), "the task runs are stored in PostgreSQL"
