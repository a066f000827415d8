"""The DVC remote on S3: push, an outage during push, and a fresh clone that pulls instead of rerunning."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.team.conftest import TeamRun, run

pytestmark = pytest.mark.slow
UP_TO_DATE = "Data and pipelines are up to date."


def _out_files(root: Path) -> dict[str, str]:
    """sha256 of every file below every output that dvc.lock records (relative path -> digest)."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    digests: dict[str, str] = {}
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            path = root / out["path"]
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for file in files:
                if file.exists():
                    digests[str(file.relative_to(root))] = hashlib.sha256(file.read_bytes()).hexdigest()
    return digests


def test_push_with_s3_down_fails_clearly_then_a_retry_succeeds(team_run: TeamRun, team_stack) -> None:
    team_stack.s3.stop()
    try:
        failed = run(["dvc", "push"], team_run.project, team_run.env)
    finally:
        team_stack.s3.start()
    message = failed.stdout + failed.stderr
    assert failed.returncode != 0, message
    assert "failed to push" in message or "Could not connect" in message, message
    assert team_stack.s3.endpoint in message, "the error names the storage that could not be reached"
    assert "Traceback" not in message
    retried = run(["dvc", "push"], team_run.project, team_run.env)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert team_stack.s3.list_keys(team_stack.settings.bucket, team_stack.settings.dvc_prefix + "/")
    status = run(["dvc", "status", "--cloud"], team_run.project, team_run.env)
    assert status.returncode == 0 and "in sync" in status.stdout, status.stdout + status.stderr


def test_fresh_clone_pulls_byte_identical_outputs(team_run: TeamRun, tmp_path: Path) -> None:
    pushed = run(["dvc", "push"], team_run.project, team_run.env)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(team_run.project), str(clone)], check=True, env=team_run.env)
    assert not (clone / "data").exists() or not any((clone / "data").rglob("*.parquet")), "nothing pulled yet"
    pulled = run(["dvc", "pull"], clone, team_run.env)
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    status = run(["dvc", "status"], clone, team_run.env)
    assert status.returncode == 0 and UP_TO_DATE in status.stdout, status.stdout + status.stderr
    original, copy = _out_files(team_run.project), _out_files(clone)
    assert len(original) > 10 and any(p.endswith("embeddings.npz") for p in original)
    assert copy == original
