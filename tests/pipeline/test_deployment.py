"""The ``cliper-pipeline`` deployment: registered with its cron schedule, as the server sees it.

Three ways in: ``flows.serve.build_deployment(...).apply()`` (what ``serve`` registers),
``python -m flows.serve`` itself in a subprocess that the test stops, and ``prefect.yaml``
(whose cron must match ``params.yaml``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cliper.config import load_params
from flows.serve import DEPLOYMENT_NAME, deployment_kwargs

REPO_ROOT = Path(__file__).resolve().parents[2]
FULL_NAME = f"cliper-pipeline/{DEPLOYMENT_NAME}"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder with the repository's params.yaml (all the deployment reads)."""
    (tmp_path / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    return tmp_path


def _read_deployment():
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_deployment_by_name(FULL_NAME)


def _crons(deployment) -> list[str]:
    return [s.schedule.cron for s in deployment.schedules if getattr(s.schedule, "cron", None)]


def test_deployment_settings_come_from_params(project: Path) -> None:
    kwargs = deployment_kwargs(project)
    assert kwargs["name"] == "cliper-pipeline"
    assert kwargs["cron"] == load_params(project / "params.yaml").orchestration.cron
    assert kwargs["parameters"] == {"project_dir": str(project.resolve())}


def test_prefect_yaml_matches_params_and_flow() -> None:
    spec = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    (dep,) = spec["deployments"]
    assert dep["name"] == DEPLOYMENT_NAME
    cron = load_params(REPO_ROOT / "params.yaml").orchestration.cron
    assert [s["cron"] for s in dep["schedules"]] == [cron]
    path, func = dep["entrypoint"].split(":")
    assert (REPO_ROOT / path).is_file() and f"def {func}(" in (REPO_ROOT / path).read_text()


@pytest.mark.slow
def test_applied_deployment_is_registered_with_its_schedule(prefect_server: str, project: Path) -> None:
    from flows.serve import build_deployment

    build_deployment(project).apply()
    dep = _read_deployment()
    assert dep.name == DEPLOYMENT_NAME
    assert _crons(dep) == [load_params(project / "params.yaml").orchestration.cron]
    assert dep.parameters["project_dir"] == str(project.resolve())
    assert dep.entrypoint.endswith("flows/pipeline.py:cliper_pipeline")
    assert dep.global_concurrency_limit is not None and dep.global_concurrency_limit.limit == 1
    assert set(dep.parameter_openapi_schema["properties"]) == {
        "project_dir", "backbone", "dataset", "promote", "stages"
    }


@pytest.mark.slow
def test_serve_registers_the_deployment_with_the_params_cron(prefect_server: str, project: Path) -> None:
    params_path = project / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["orchestration"]["cron"] = "17 4 * * 1"
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    proc = subprocess.Popen([sys.executable, "-m", "flows.serve", "--project-dir", str(project)],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline, crons = time.monotonic() + 90, []
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                crons = _crons(_read_deployment())
            except Exception:  # not registered yet
                crons = []
            if crons == ["17 4 * * 1"]:
                break
            time.sleep(1)
        assert proc.poll() is None, proc.stdout.read().decode(errors="replace")[-2000:]
        assert crons == ["17 4 * * 1"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_prefect_yaml_deploys_with_its_schedule(prefect_server: str, tmp_path: Path) -> None:
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    spec = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    pool = spec["deployments"][0]["work_pool"]["name"]
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"), overwrite=True)
    for name in ("prefect.yaml", "params.yaml"):  # deploy from a copy: `prefect deploy` may write files
        shutil.copy2(REPO_ROOT / name, tmp_path / name)
    shutil.copytree(REPO_ROOT / "flows", tmp_path / "flows", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "PWD": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    assert "successfully created" in out, out[-3000:]
    # Prefect 3.8.8's CLI sends `limit: null` filters; FastAPI >= 0.151 answers them with 422
    # (so `prefect deploy`, `prefect deployment ls` fail). requirements.lock pins 0.150.0.
    assert done.returncode == 0, out[-3000:]
    listed = subprocess.run([sys.executable, "-m", "prefect", "deployment", "ls"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and "cliper-pipeline" in listed.stdout, listed.stdout + listed.stderr
    dep = _read_deployment()
    assert _crons(dep) == [load_params(REPO_ROOT / "params.yaml").orchestration.cron]
    assert dep.work_pool_name == pool
    (step,) = dep.pull_steps
    assert step["prefect.deployments.steps.set_working_directory"] == {"directory": str(tmp_path)}
