"""Stage outcomes -> Prefect artifacts (markdown metrics tables and links).

Every stage gets one markdown artifact keyed ``cliper-<stage>`` (status, duration and a table
of the metrics files ``dvc.yaml`` declares for it); ``validate`` adds its validation report
(every suite and expectation, as markdown) and ``evaluate`` the run's summary (``cliper
summary``), its view report and a link to its MLflow run when the stage wrote
``<evaluate.out_dir>/mlflow.json``. Keys are stable, so the UI
shows each stage's history.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prefect.artifacts import create_link_artifact, create_markdown_artifact

from cliper.config import Params, flatten, load_params
from cliper.data.validation_report import REPORT_FILE as REPORT_HTML
from cliper.data.validation_report import REPORT_MARKDOWN
from cliper.errors import CliperError
from tasks.dvc import StageFailed, StageOutcome

MAX_ROWS = 80
MLFLOW_FILE = "mlflow.json"
VIEW_REPORT = "views/view_report.md"  # written by the evaluate stage (cliper.view_report)


def artifact_key(stage: str, suffix: str = "") -> str:
    """Prefect artifact key (lowercase letters, digits and dashes) for a stage."""
    key = f"cliper-{stage}" + (f"-{suffix}" if suffix else "")
    return key.replace("_", "-").lower()


def natural_key(name: str) -> list[Any]:
    """Sort key that orders numbers by value: ``recall@5 < recall@10 < recall@20 < recall@50``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _cell(value: Any) -> str:
    if isinstance(value, list | tuple):  # compact JSON, e.g. [5, 10]
        value = json.dumps(value)
    elif isinstance(value, float):
        value = f"{value:.6g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def metrics_markdown(outcome: StageOutcome) -> str:
    """Markdown summary of one stage: status line and one table per metrics file."""
    verb = "was up to date (skipped by DVC)" if outcome.status == "skipped" else "ran"
    parts = [f"# Stage `{outcome.stage}`", "", f"**{verb}** in {outcome.duration_s:.1f} s.", ""]
    if not outcome.metrics:
        parts.append("_This stage declares no metrics in dvc.yaml (or none were written)._")
    for rel, data in outcome.metrics.items():
        rows = sorted(flatten(data).items(), key=lambda kv: natural_key(kv[0]))
        parts += [f"## `{rel}`", "", "| metric | value |", "| --- | --- |"]
        parts += [f"| {_cell(k)} | {_cell(v)} |" for k, v in rows[:MAX_ROWS]]
        if len(rows) > MAX_ROWS:
            parts.append(f"| … | {len(rows) - MAX_ROWS} more in `{rel}` |")
        parts.append("")
    return "\n".join(parts)


def mlflow_link(info: dict[str, Any]) -> str | None:
    """The MLflow run URL from ``mlflow.json`` (``run_url`` / ``ui_url`` / ``url``), if any."""
    for key in ("run_url", "ui_url", "url"):
        if isinstance(info.get(key), str) and info[key]:
            return info[key]
    return None


def registered_model(root: Path) -> str:
    """Name of the model the evaluate stage registered (from ``mlflow.json``, else from params)."""
    params = load_params(root / "params.yaml")
    path = root / params.evaluate.out_dir / MLFLOW_FILE
    info = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    for key in ("registered_model", "model_name", "model"):
        if isinstance(info.get(key), str) and info[key]:
            return info[key]
    from cliper.registry import model_name  # imports mlflow: only when needed

    return model_name(params.ingest.name, params.train.backbone)


def publish(outcome: StageOutcome, root: Path) -> list[str]:
    """Create the artifacts of one stage; returns the artifact keys created."""
    keys = [artifact_key(outcome.stage)]
    create_markdown_artifact(
        metrics_markdown(outcome), key=keys[0], description=f"{outcome.stage}: {outcome.status}"
    )
    params = load_params(root / "params.yaml")
    if outcome.stage == "validate":
        keys += _publish_validation_report(root, params.validate.out_dir)
    if outcome.stage == "evaluate":
        keys += _publish_summary(params, root)
        keys += _publish_mlflow(root / params.evaluate.out_dir / MLFLOW_FILE)
        keys += _publish_view_report(root / params.evaluate.out_dir / VIEW_REPORT)
    return keys


def publish_failure(error: StageFailed, root: Path) -> list[str]:
    """Artifacts of a failed stage: its error lines, and the validation report for ``validate``."""
    keys = [artifact_key(error.stage)]
    tail = "\n".join(error.tail) or "(no output on stderr)"
    create_markdown_artifact(
        f"# Stage `{error.stage}` FAILED\n\nexit code {error.stage_exit}; last lines:\n\n```\n{tail}\n```\n",
        key=keys[0], description=f"{error.stage}: failed",
    )
    if error.stage == "validate":
        keys += _publish_validation_report(root, load_params(root / "params.yaml").validate.out_dir)
    return keys


def _publish_markdown_file(path: Path, key: str, footer: str, description: str) -> list[str]:
    """A markdown report a stage wrote, as the artifact ``key`` (nothing when it is absent)."""
    if not path.is_file():
        return []
    create_markdown_artifact(f"{path.read_text(encoding='utf-8')}\n_{footer}_\n", key=key,
                             description=description)
    return [key]


def _publish_validation_report(root: Path, out_dir: str) -> list[str]:
    """The validation report (every suite and expectation) as a markdown artifact.

    A link cannot work here: the Prefect UI is served over http and browsers refuse ``file://``
    links from it, and the GX Data Docs need their CDN assets. The markdown shows in the UI as it
    is; the same report as one self-contained HTML page is logged to the MLflow run.
    """
    folder = root / out_dir
    return _publish_markdown_file(
        folder / REPORT_MARKDOWN, artifact_key("validate", "report"),
        f"The same report as one HTML page (works offline): `{(folder / REPORT_HTML).resolve()}`; it is "
        "also an artifact of the evaluate stage's MLflow run (`reports/validate/report.html`).",
        "Validation results of the ingested data: every suite and expectation")


def _publish_summary(params: Params, root: Path) -> list[str]:
    """``cliper summary`` of the evaluated run: the test figure, the views, the files to open."""
    from cliper.run_summary import read_summary, summary_lines

    key = artifact_key("evaluate", "summary")
    try:
        text = "\n".join(summary_lines(read_summary(params, root)))
    except CliperError as exc:  # the stage ran; say why its outputs could not be summarised
        text = f"no summary: {exc}"
    create_markdown_artifact(f"# Run summary\n\n```\n{text}\n```\n", key=key,
                             description="The evaluated run on one screen (`cliper summary`)")
    return [key]


def _publish_view_report(path: Path) -> list[str]:
    """The evaluate stage's view report (attention weights per view, view ablation) as markdown."""
    return _publish_markdown_file(
        path, artifact_key("evaluate", "views"),
        "Plot of the weight distributions: `plots/view_weights_hist.png` in the MLflow run's "
        "`reports/evaluate` artifacts.",
        "How much each text view counts, and what each view adds (ablation)")


def _publish_mlflow(path: Path) -> list[str]:
    if not path.is_file():
        return []
    info = json.loads(path.read_text(encoding="utf-8"))
    key = artifact_key("evaluate", "mlflow")
    url = mlflow_link(info)
    if url:
        ui = info.get("ui_command") or "mlflow ui"
        create_link_artifact(url, link_text=f"MLflow run {info.get('run_id', '')}".strip(), key=key,
                             description=f"The evaluation run in MLflow (start `{ui}` to open it)")
    else:
        rows = "\n".join(f"| {_cell(k)} | {_cell(v)} |" for k, v in flatten(info).items())
        create_markdown_artifact(f"# MLflow run\n\n| field | value |\n| --- | --- |\n{rows}\n", key=key)
    return [key]


def publish_promotion(decision: dict[str, Any]) -> str:
    """Markdown artifact ``cliper-promote`` with the promotion decision and its evidence."""
    key = artifact_key("promote")
    rows = "\n".join(f"| {_cell(k)} | {_cell(v)} |" for k, v in flatten(decision).items())
    title = decision.get("decision", "see the task logs")
    create_markdown_artifact(f"# Promotion: {title}\n\n| field | value |\n| --- | --- |\n{rows}\n",
                             key=key, description=f"promote: {title}")
    return key
