"""The Prefect flow over real DVC stages, under a real local Prefect server.

Fast tests check the pieces (DVC output parsing, process streaming, stage selection, the
backbone rule). The slow ones run ``cliper_pipeline`` on the tiny demo project against the
session's temporary Prefect server and read task runs and artifacts back through the client.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from uuid import UUID

import pytest
import yaml

from cliper.stages import STAGES
from tasks import artifacts, dvc
from tasks.stages import STAGE_TASKS, check_run_params, select_stages

FIRST_STAGES = ["demo_data", "ingest", "validate"]


# --------------------------------------------------------------------------- fast


def test_one_task_per_stage_in_dag_order() -> None:
    assert tuple(STAGE_TASKS) == STAGES
    assert [t.name for t in STAGE_TASKS.values()] == list(STAGES)


def test_select_stages_keeps_dag_order_and_rejects_unknown() -> None:
    assert select_stages(None) == list(STAGES)
    assert select_stages(["validate", "demo_data"]) == ["demo_data", "validate"]
    with pytest.raises(ValueError, match="unknown stage 'trian'"):
        select_stages(["trian"])


def test_parse_status_from_dvc_output() -> None:
    assert dvc.parse_status("ingest", ["Stage 'ingest' didn't change, skipping"]) == "skipped"
    assert dvc.parse_status("ingest", ["Running stage 'ingest':", "> cliper run ingest"]) == "ran"
    assert dvc.parse_status("ingest", ["Stage 'demo_data' didn't change, skipping"]) == "ran"


def test_stage_failed_keeps_the_stage_error_and_spots_user_errors() -> None:
    tail = ["error: validation failed: 3 images too small",
            "ERROR: failed to reproduce 'validate': failed to run: cliper run validate, exited with 2"]
    exc = dvc.StageFailed("validate", 255, tail)
    assert exc.user_error and exc.stage_exit == 2
    assert "3 images too small" in str(exc)
    assert not dvc.StageFailed("train", 255, ["Killed", "... exited with -9"]).user_error


def test_stream_process_streams_lines_and_stops_on_timeout(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []
    code = "import sys; print('out 1'); print('err 1', file=sys.stderr); print('out 2')"
    rc, lines, err = dvc.stream_process([sys.executable, "-c", code], tmp_path,
                                        lambda s, line: seen.append((s, line)))
    assert rc == 0 and err == ["err 1"]
    assert ("stdout", "out 1") in seen and ("stderr", "err 1") in seen and len(lines) == 3
    with pytest.raises(dvc.StageTimeout):
        dvc.stream_process([sys.executable, "-c", "import time; time.sleep(30)"], tmp_path,
                           lambda s, line: None, timeout_s=0.5)


def test_last_json_block_reads_the_printed_decision() -> None:
    lines = ["[12:00] INFO promoting", "{", '  "decision": "promoted",', '  "gain": 0.1', "}", "done"]
    assert dvc.last_json_block(lines) == {"decision": "promoted", "gain": 0.1}
    assert dvc.last_json_block(["no json here"]) is None


def test_backbone_and_dataset_must_match_params(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump({"train": {"backbone": "freedom"}, "ingest": {"name": "Demo"}})
    )
    expected = {"backbone": "freedom", "dataset": "Demo"}
    assert check_run_params(tmp_path, None) == expected
    assert check_run_params(tmp_path, "freedom", "Demo") == expected
    with pytest.raises(ValueError, match="dvc exp run -S train.backbone=lightgcn"):
        check_run_params(tmp_path, "lightgcn")
    with pytest.raises(ValueError, match="ingest.name='Demo'"):
        check_run_params(tmp_path, None, "Baby")


def test_metrics_markdown_flattens_nested_metrics() -> None:
    outcome = dvc.StageOutcome("evaluate", "ran", 1.5, {"reports/evaluate/metrics.json":
                                                        {"test": {"recall@20": 0.1234567, "ks": [5, 10]}}})
    text = artifacts.metrics_markdown(outcome)
    assert "| test.recall@20 | 0.123457 |" in text and "| test.ks | [5, 10] |" in text
    assert artifacts.artifact_key("demo_data", "x") == "cliper-demo-data-x"


# --------------------------------------------------------------------------- slow


def _run(project: Path, **kwargs):
    from flows.pipeline import cliper_pipeline

    return cliper_pipeline(project_dir=str(project), return_state=True, **kwargs)


def _task_runs(flow_run_id: UUID) -> dict[str, list]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                     sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=200)
    out: dict[str, list] = {}
    for run in runs:
        out.setdefault(run.name.rsplit("-", 1)[0], []).append(run)  # "<task name>-<suffix>"
    return out


def _artifact_keys(flow_run_id: UUID) -> dict[str, object]:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, FlowRunFilter, FlowRunFilterId, TaskRunFilter
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                      artifact_filter=ArtifactFilter(), task_run_filter=TaskRunFilter(),
                                      sort=ArtifactSort.CREATED_DESC, limit=200, offset=0)
    out: dict[str, object] = {}
    for artifact in found:  # newest first: keep the latest version of each key
        out.setdefault(artifact.key, artifact)
    return out


@pytest.mark.slow
def test_flow_runs_stages_publishes_artifacts_then_skips(prefect_server: str, tiny_project: Path) -> None:
    state = _run(tiny_project, stages=FIRST_STAGES)
    assert state.is_completed(), state.message
    results = state.result()
    assert [r["stage"] for r in results] == FIRST_STAGES
    assert all(r["status"] == "ran" for r in results), results
    assert "data/ingested/stats.json" in results[1]["metrics"]
    assert "reports/validate/summary.json" in results[2]["metrics"]

    flow_run_id = state.state_details.flow_run_id
    runs = _task_runs(flow_run_id)
    assert sorted(runs) == sorted(FIRST_STAGES)
    assert all(r.state.is_completed() for group in runs.values() for r in group)
    found = _artifact_keys(flow_run_id)
    for stage in FIRST_STAGES:
        key = artifacts.artifact_key(stage)
        assert key in found and found[key].type == "markdown"
    assert "| metric | value |" in found["cliper-ingest"].data
    report = found["cliper-validate-report"]  # the report itself, not a file:// link the UI cannot open
    assert report.type == "markdown" and "file://" not in report.data
    summary = yaml.safe_load((tiny_project / "reports/validate/summary.json").read_text())
    assert "Validation report: PASSED" in report.data
    for suite, counts in summary["suites"].items():
        assert f"| {suite} | {counts['evaluated']} | 0 |" in report.data
    assert all(r.state.name == "Completed" for group in runs.values() for r in group)

    again = _run(tiny_project, stages=FIRST_STAGES)
    assert again.is_completed(), again.message
    assert [r["status"] for r in again.result()] == ["skipped"] * len(FIRST_STAGES)
    found = _artifact_keys(again.state_details.flow_run_id)
    assert "up to date (skipped by DVC)" in found["cliper-ingest"].data
    skipped = _task_runs(again.state_details.flow_run_id)
    assert {name: [r.state.name for r in group] for name, group in skipped.items()} == {
        stage: ["Skipped"] for stage in FIRST_STAGES}  # what the UI shows on each task run
    assert all(r.state.is_completed() for group in skipped.values() for r in group)


@pytest.mark.slow
def test_failing_validation_stops_the_flow_and_a_fixed_rerun_skips(
    prefect_server: str, tiny_project: Path
) -> None:
    params_path = tiny_project / "params.yaml"
    good = yaml.safe_load(params_path.read_text())
    image_size = good["demo"]["image_size"]
    bad = {**good, "validate": {**good["validate"], "min_image_size": image_size * 2}}
    params_path.write_text(yaml.safe_dump(bad, sort_keys=False))

    state = _run(tiny_project, stages=[*FIRST_STAGES, "preprocess"])
    assert state.is_failed()
    runs = _task_runs(state.state_details.flow_run_id)
    assert sorted(runs) == sorted(FIRST_STAGES), "nothing may run after the failed validate"
    (validate_run,) = runs["validate"]
    assert validate_run.state.is_failed()
    assert validate_run.run_count == 1, "a validation failure is deterministic: no retry"
    message = str(state.result(raise_on_failure=False))
    assert "stage 'validate' failed" in message and "validation" in message.lower()
    found = _artifact_keys(state.state_details.flow_run_id)
    assert "FAILED" in found["cliper-validate"].data
    assert "Validation report: FAILED" in found["cliper-validate-report"].data

    params_path.write_text(yaml.safe_dump(good, sort_keys=False))
    fixed = _run(tiny_project, stages=FIRST_STAGES)
    assert fixed.is_completed(), fixed.message
    assert [r["status"] for r in fixed.result()] == ["skipped", "skipped", "ran"]


@pytest.mark.slow
def test_flow_refuses_a_backbone_that_differs_from_params(prefect_server: str, tiny_project: Path) -> None:
    state = _run(tiny_project, stages=["demo_data"], backbone="not-the-configured-one")
    assert state.is_failed()
    assert "differs from params.yaml" in str(state.result(raise_on_failure=False))
    assert _task_runs(state.state_details.flow_run_id) == {}


FLAKY_STAGE = """\
import os, pathlib, signal
marker = pathlib.Path("attempts.txt")
marker.write_text(marker.read_text() + "x" if marker.exists() else "x")
if len(marker.read_text()) == 1:
    print("working... then killed", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
pathlib.Path("out.txt").write_text("done")
"""


@pytest.mark.slow
def test_a_stage_killed_midway_is_retried(prefect_server: str, tmp_path: Path) -> None:
    import subprocess

    from prefect import flow

    (tmp_path / "flaky.py").write_text(FLAKY_STAGE)
    (tmp_path / "params.yaml").write_text("{}\n")
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  demo_data:\n    cmd: python flaky.py\n    deps: [flaky.py]\n    outs: [out.txt]\n")
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=tmp_path, check=True)
    retried = STAGE_TASKS["demo_data"].with_options(retries=1, retry_delay_seconds=0)

    @flow
    def one_stage(project_dir: str) -> dict:
        return retried(project_dir).result()  # a stage task returns its own final state

    state = one_stage(str(tmp_path), return_state=True)
    assert state.is_completed(), state.message
    assert state.result()["status"] == "ran"
    (run,) = _task_runs(state.state_details.flow_run_id)["demo_data"]
    assert run.run_count == 2 and (tmp_path / "attempts.txt").read_text() == "xx"


@pytest.mark.slow
def test_whole_pipeline_with_promotion(promoted_pipeline) -> None:
    tiny_project, state, again = promoted_pipeline
    assert state.is_completed(), state.message
    results = state.result()
    assert [r["stage"] for r in results] == [*STAGES, "promote"]
    assert results[-1]["decision"] in {"first_champion", "promoted"}
    found = _artifact_keys(state.state_details.flow_run_id)
    assert {artifacts.artifact_key(s) for s in STAGES} <= set(found)
    assert "cliper-promote" in found
    if (tiny_project / "reports/evaluate/mlflow.json").is_file():
        assert "/runs/" in found["cliper-evaluate-mlflow"].data
    metrics = json.loads((tiny_project / "reports/evaluate/metrics.json").read_text())
    assert f"test recall@20 {metrics['test']['recall@20']:.4f}" in found["cliper-evaluate-summary"].data
    assert again.is_completed(), again.message
    assert [r["status"] for r in again.result()] == ["skipped"] * len(STAGES)
