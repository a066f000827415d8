"""One thin Prefect task per DVC stage; each reproduces its stage through DVC.

A task calls ``dvc repro --single-item <stage>`` in the project (DVC skips it when nothing
changed), streams the stage's output into the task's run logger, publishes the stage's
metrics as artifacts and ends in a ``Completed`` state (named ``Skipped`` in the UI when DVC
skipped the stage) whose result is ``{"stage", "status": "ran" | "skipped", "duration_s",
"metrics"}``. A failing stage raises :class:`tasks.dvc.StageFailed` carrying the stage's own
last error lines. Prefect result caching is off: DVC alone decides what is fresh.

Retries, retry delay and timeout on the decorators are the defaults of
:class:`cliper.config.OrchestrationConfig`; the flow applies ``params.yaml: orchestration``
with :func:`task_options`. User-facing failures (``cliper`` exit code 2, e.g. failed
validation) are not retried: rerunning the same inputs cannot fix them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.context import TaskRunContext
from prefect.states import Completed, State

from cliper.config import OrchestrationConfig, load_params
from cliper.stages import STAGES
from tasks import artifacts, dvc

_DEFAULTS = OrchestrationConfig()
SKIPPED_STATE = "Skipped"  # the state name of a stage DVC found up to date


def retry_unless_user_error(task: Task, task_run: TaskRun, state: State) -> bool:
    """Prefect retry condition: retry crashes and timeouts, not deterministic user errors."""
    exc = state.data if isinstance(state.data, BaseException) else None
    return not (isinstance(exc, dvc.StageFailed) and exc.user_error)


TASK_DEFAULTS: dict[str, Any] = {
    "retries": _DEFAULTS.retries,
    "retry_delay_seconds": _DEFAULTS.retry_delay_seconds,
    "timeout_seconds": _DEFAULTS.timeout_seconds,
    "retry_condition_fn": retry_unless_user_error,
    "cache_policy": NO_CACHE,
    "persist_result": False,
}


def task_options(project_dir: str | Path) -> dict[str, Any]:
    """``params.yaml: orchestration`` as ``Task.with_options`` keyword arguments."""
    cfg = load_params(Path(project_dir) / "params.yaml").orchestration
    return {
        "retries": cfg.retries,
        "retry_delay_seconds": cfg.retry_delay_seconds,
        "timeout_seconds": cfg.timeout_seconds,
    }


def select_stages(stages: Sequence[str] | None) -> list[str]:
    """The requested stages in DAG order (all when ``None``).

    Raises:
        ValueError: an unknown stage name (lists the valid ones).
    """
    if stages is None:
        return list(STAGES)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage {unknown[0]!r}; choose from {list(STAGES)}")
    return [s for s in STAGES if s in set(stages)]


def check_run_params(
    project_dir: str | Path, backbone: str | None, dataset: str | None = None
) -> dict[str, str]:
    """The backbone and dataset of this run, as ``params.yaml`` sets them; the flow's arguments must match.

    ``backbone`` is checked against ``train.backbone``, ``dataset`` against ``ingest.name``
    (``None`` = whatever params.yaml says).

    Raises:
        ValueError: an argument differs from ``params.yaml`` (with how to run it instead).
    """
    cfg = load_params(Path(project_dir) / "params.yaml")
    configured = {"train.backbone": cfg.train.backbone, "ingest.name": cfg.ingest.name}
    for key, wanted in (("train.backbone", backbone), ("ingest.name", dataset)):
        if wanted is not None and wanted != configured[key]:
            raise ValueError(
                f"{key.split('.')[-1]} {wanted!r} differs from params.yaml {key}={configured[key]!r}. "
                "DVC tracks params.yaml, and this flow does not edit it behind your back. Either set "
                f"{key} in params.yaml (and commit it), or run a DVC experiment: "
                f"`dvc exp run -S {key}={wanted}`."
            )
    return {"backbone": configured["train.backbone"], "dataset": configured["ingest.name"]}


def _reproduce(stage: str, project_dir: str) -> dict[str, Any]:
    """Body shared by the stage tasks: DVC repro, log, artifacts, result dict."""
    logger = get_run_logger()
    ctx = TaskRunContext.get()
    timeout = ctx.task.timeout_seconds if ctx else None
    root = Path(project_dir).resolve()
    try:
        outcome = dvc.run_stage(stage, root, log=logger.info, timeout_s=timeout)
    except dvc.StageFailed as exc:
        artifacts.publish_failure(exc, root)
        raise
    keys = artifacts.publish(outcome, root)
    logger.info("stage %s %s in %.1f s (artifacts: %s)", stage, outcome.status, outcome.duration_s, keys)
    return outcome.as_dict()


def stage_state(result: dict[str, Any]) -> State:
    """The task run's final state: ``Completed``, or ``Completed`` named ``Skipped`` when DVC skipped it.

    A state name is what the Prefect UI shows on the task run (its type stays COMPLETED, so the
    flow and its downstream stages treat a skipped stage as done).
    """
    if result.get("status") == "skipped":
        return Completed(data=result, name=SKIPPED_STATE, message=f"stage {result['stage']} was up to date")
    return Completed(data=result, message=f"stage {result['stage']} ran in {result['duration_s']:.1f} s")


@task(name="demo_data", **TASK_DEFAULTS)
def demo_data(project_dir: str) -> State:
    """Write the embedded synthetic catalog (DVC stage ``demo_data``)."""
    return stage_state(_reproduce("demo_data", project_dir))


@task(name="ingest", **TASK_DEFAULTS)
def ingest(project_dir: str) -> State:
    """Raw catalog -> interactions, items, id maps, split and stats (DVC stage ``ingest``)."""
    return stage_state(_reproduce("ingest", project_dir))


@task(name="fetch", **TASK_DEFAULTS)
def fetch(project_dir: str) -> State:
    """Item images from their URLs; off unless ``fetch.enabled``, resumable (DVC stage ``fetch``)."""
    return stage_state(_reproduce("fetch", project_dir))


@task(name="validate", **TASK_DEFAULTS)
def validate(project_dir: str) -> State:
    """Great Expectations checks; fails the run on violations (DVC stage ``validate``)."""
    return stage_state(_reproduce("validate", project_dir))


@task(name="preprocess", **TASK_DEFAULTS)
def preprocess(project_dir: str) -> State:
    """Text views and image manifest (DVC stage ``preprocess``)."""
    return stage_state(_reproduce("preprocess", project_dir))


@task(name="adapt", **TASK_DEFAULTS)
def adapt(project_dir: str) -> State:
    """Contrastive adaptation of the CLIP model (DVC stage ``adapt``)."""
    return stage_state(_reproduce("adapt", project_dir))


@task(name="extract", **TASK_DEFAULTS)
def extract(project_dir: str) -> State:
    """CLIP features of every view and image; resumes from its shards (DVC stage ``extract``)."""
    return stage_state(_reproduce("extract", project_dir))


@task(name="train", **TASK_DEFAULTS)
def train(project_dir: str) -> State:
    """Train the recommender; resumes from its checkpoint (DVC stage ``train``)."""
    return stage_state(_reproduce("train", project_dir))


@task(name="evaluate", **TASK_DEFAULTS)
def evaluate(project_dir: str) -> State:
    """Full-ranking test metrics, MLflow run and challenger registration (DVC stage ``evaluate``)."""
    return stage_state(_reproduce("evaluate", project_dir))


STAGE_TASKS: dict[str, Task[..., State]] = {
    "demo_data": demo_data,
    "ingest": ingest,
    "fetch": fetch,
    "validate": validate,
    "preprocess": preprocess,
    "adapt": adapt,
    "extract": extract,
    "train": train,
    "evaluate": evaluate,
}


@task(name="promote", **TASK_DEFAULTS)
def promote(project_dir: str) -> dict[str, Any]:
    """Gated promotion of the evaluated challenger (``cliper promote --model <name>``)."""
    logger = get_run_logger()
    root = Path(project_dir).resolve()
    model = artifacts.registered_model(root)
    lines = dvc.run_cli(["promote", "--model", model], root, log=logger.info)
    decision = dvc.last_json_block(lines) or {"model": model, "output": lines[-5:]}
    artifacts.publish_promotion(decision)
    return {"stage": "promote", "status": "ran", **decision}
