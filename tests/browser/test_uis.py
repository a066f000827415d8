"""What a user looks for in each UI, checked in a real headless Chromium.

One tiny pipeline runs through the Prefect flow with promotion (``promoted_pipeline``), then
again (every stage skipped). Then:

* the validation report opens from disk, offline, styled, listing every suite;
* the MLflow UI (a real ``mlflow server`` on the project's store) shows the evaluate run's
  metrics and its history plot, and the registered model's ``champion`` alias;
* the Prefect UI (the session's real server) shows the deployment's schedule, one task run per
  stage with its state (``Skipped`` on the rerun), and the stage artifacts.

Every check saves a screenshot under ``<basetemp>/screenshots/``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from cliper.stages import STAGES
from tests.servers import ServerProcess, free_port, venv_env

PAGE_WAIT_S = 90  # a cold single-page app on the shared 2-core machine
MIN_PLOT_PX = 100  # a decoded plot, not an icon
pytestmark = pytest.mark.slow


def wait_for_text(driver, shot: Path, *texts: str, timeout_s: float = PAGE_WAIT_S) -> str:
    """Wait until the page's visible text holds every one of ``texts``; screenshot either way."""
    from selenium.webdriver.common.by import By

    deadline, body = time.monotonic() + timeout_s, ""
    while time.monotonic() < deadline:
        try:
            body = driver.find_element(By.TAG_NAME, "body").text
        except Exception:  # the page is being replaced
            body = ""
        if all(t in body for t in texts):
            break
        time.sleep(0.5)
    driver.save_screenshot(str(shot))
    missing = [t for t in texts if t not in body]
    assert not missing, f"{driver.current_url} never showed {missing} ({shot}); it shows:\n{body[:2000]}"
    return body


def click_text(driver, text: str, timeout_s: float = PAGE_WAIT_S) -> None:
    """Click the first visible element whose own text is ``text`` (a tab, a link)."""
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        # the innermost displayed element whose whole text is ``text`` (tabs nest spans in buttons)
        found = [e for e in driver.find_elements(By.XPATH, f"//*[normalize-space(.)='{text}']")
                 if e.is_displayed()]
        if found:
            found[-1].click()
            return
        time.sleep(0.5)
    raise AssertionError(f"no clickable '{text}' on {driver.current_url}")


# --------------------------------------------------------------------------- validation report


def test_validation_report_renders_offline_with_every_suite(browser, promoted_pipeline,
                                                             screenshot_dir) -> None:
    project = promoted_pipeline[0]
    summary = json.loads((project / "reports/validate/summary.json").read_text())
    browser.get((project / "reports/validate/report.html").as_uri())
    body = wait_for_text(browser, screenshot_dir / "validation_report.png", "Validation report", "PASSED",
                         *(f"Suite {suite}" for suite in summary["suites"]))
    assert f"{summary['expectations_evaluated']} expectations" in body
    badge = browser.execute_script(
        "return getComputedStyle(document.querySelector('.verdict')).backgroundColor")
    assert badge == "rgb(26, 127, 55)", "the page's own styles must apply (green verdict badge)"
    fetched = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert fetched == [], f"the report must load nothing from elsewhere, it fetched {fetched}"


# --------------------------------------------------------------------------- MLflow UI


@pytest.fixture(scope="module")
def mlflow_ui(promoted_pipeline, tmp_path_factory):
    project = promoted_pipeline[0]
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{project}/mlflow.db",
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log = tmp_path_factory.mktemp("mlflow-ui") / "server.log"
    base = f"http://127.0.0.1:{port}"
    with ServerProcess(cmd, log, base, "/health", env=venv_env(), cwd=project) as server:
        yield server


def test_mlflow_run_page_shows_metrics_and_history_plot(browser, promoted_pipeline, mlflow_ui,
                                                        screenshot_dir) -> None:
    info = json.loads((promoted_pipeline[0] / "reports/evaluate/mlflow.json").read_text())
    run_page = f"{mlflow_ui.base_url}/#/experiments/{info['experiment_id']}/runs/{info['run_id']}"
    browser.get(run_page)
    wait_for_text(browser, screenshot_dir / "mlflow_run.png", "test/recall_at_20", "valid/recall_at_20",
                  "train/best_epoch")
    browser.get(f"{run_page}/artifacts/reports/train/plots/history.png")
    wait_for_text(browser, screenshot_dir / "mlflow_history_plot.png", "reports/train/plots/history.png")
    from selenium.webdriver.common.by import By

    def shown() -> list[int]:  # the artifact viewer draws the fetched PNG from a blob: URL
        return [img.get_property("naturalWidth") for img in browser.find_elements(By.TAG_NAME, "img")
                if (img.get_attribute("src") or "").startswith("blob:") and img.is_displayed()]

    deadline = time.monotonic() + PAGE_WAIT_S
    while time.monotonic() < deadline and not any(w > MIN_PLOT_PX for w in shown()):
        time.sleep(0.5)
    browser.save_screenshot(str(screenshot_dir / "mlflow_history_plot.png"))
    assert any(w > MIN_PLOT_PX for w in shown()), f"history plot not displayed (image widths {shown()})"


def test_mlflow_model_page_shows_the_champion_alias(browser, promoted_pipeline, mlflow_ui,
                                                    screenshot_dir) -> None:
    info = json.loads((promoted_pipeline[0] / "reports/evaluate/mlflow.json").read_text())
    browser.get(f"{mlflow_ui.base_url}/#/models/{info['model_name']}")
    wait_for_text(browser, screenshot_dir / "mlflow_model.png", info["model_name"], "champion")


# --------------------------------------------------------------------------- Prefect UI


def test_prefect_deployment_page_shows_the_schedule(browser, prefect_server_process, promoted_pipeline,
                                                     screenshot_dir) -> None:
    from flows.serve import build_deployment

    deployment_id = build_deployment(promoted_pipeline[0]).apply()
    browser.get(f"{prefect_server_process.base_url}/deployments/deployment/{deployment_id}")
    wait_for_text(browser, screenshot_dir / "prefect_deployment.png", "cliper-pipeline", "At 03:00 AM")


@pytest.mark.parametrize(("which", "state_name"), [(1, "Completed"), (2, "Skipped")])
def test_prefect_flow_run_lists_a_task_run_per_stage(browser, prefect_server_process, promoted_pipeline,
                                                     screenshot_dir, which: int, state_name: str) -> None:
    state = promoted_pipeline[which]
    browser.get(f"{prefect_server_process.base_url}/runs/flow-run/{state.state_details.flow_run_id}")
    wait_for_text(browser, screenshot_dir / f"prefect_flow_run_{which}.png", "Task Runs")
    click_text(browser, "Task Runs")
    body = wait_for_text(browser, screenshot_dir / f"prefect_task_runs_{which}.png",
                         *(f"{stage}-" for stage in STAGES), state_name)
    assert body.count(state_name) >= len(STAGES), f"every stage's task run must show {state_name}"


def test_prefect_artifacts_page_shows_the_stage_tables(browser, prefect_server_process, promoted_pipeline,
                                                       screenshot_dir) -> None:
    base = prefect_server_process.base_url
    browser.get(f"{base}/artifacts")
    wait_for_text(browser, screenshot_dir / "prefect_artifacts.png", "cliper-ingest",
                  "cliper-validate-report", "cliper-evaluate")
    run_id = promoted_pipeline[1].state_details.flow_run_id
    for key, texts in (("cliper-validate-report", ("Validation report: PASSED", "Suites", "Expectations")),
                       ("cliper-evaluate", ("Stage evaluate", "test.recall@20")),
                       ("cliper-evaluate-views", ("View report",)),
                       ("cliper-evaluate-summary", ("Run summary", "test recall@20"))):
        browser.get(f"{base}/artifacts/artifact/{_artifact_id(run_id, key)}")
        wait_for_text(browser, screenshot_dir / f"prefect_artifact_{key}.png", *texts)


def _artifact_id(flow_run_id, key: str) -> str:
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterId,
    )

    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])), limit=1)
    return str(artifact.id)
