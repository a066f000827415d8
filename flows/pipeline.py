"""The ``cliper_pipeline`` Prefect flow: the DVC stages in DAG order, then optional promotion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from tasks.stages import STAGE_TASKS, check_run_params, select_stages, task_options
from tasks.stages import promote as promote_task


@flow(name="cliper-pipeline", validate_parameters=True)
def cliper_pipeline(
    project_dir: str = ".",
    backbone: str | None = None,
    dataset: str | None = None,
    promote: bool = False,
    stages: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Run the CLIPER pipeline stage by stage through DVC.

    Each stage is one task that calls ``dvc repro --single-item <stage>`` in ``project_dir``,
    so DVC skips stages whose deps, params and code are unchanged and ``dvc.lock`` stays the
    single record of what is fresh (a later ``dvc repro`` agrees with this flow). Stages run
    one after another; the first failing stage fails the flow with the stage's own error
    message and nothing downstream of it runs. After fixing the cause, rerun: the stages
    that are still up to date are reported as ``skipped``.

    Args:
        project_dir: the project root (holding ``dvc.yaml`` and ``params.yaml``).
        backbone: the recommender backbone, as a check: it must equal ``params.yaml:
            train.backbone`` (``None`` = whatever params.yaml says). A different value is
            refused before any stage runs, because DVC tracks ``params.yaml`` and the flow does
            not edit the user's file behind their back; change params.yaml (and commit it) or
            run a DVC experiment with ``dvc exp run -S train.backbone=<name>``.
        dataset: the catalog, as a check like ``backbone``: it must equal ``params.yaml:
            ingest.name`` (``None`` = whatever params.yaml says).
        promote: after ``evaluate`` completed in this run (ran or was up to date), run the
            gated promotion ``cliper promote --model <registered model>`` (challenger ->
            champion only when it beats the champion; see ``cliper/registry.py``).
        stages: run only these stages (always in DAG order, each without its upstream), e.g.
            ``["demo_data", "ingest", "validate"]``; ``None`` = all eight stages.

    Returns:
        One dict per stage run: ``stage``, ``status`` (``ran``/``skipped``), ``duration_s``,
        ``metrics``; plus the promotion result when it ran.
    """
    logger = get_run_logger()
    root = Path(project_dir).resolve()
    selected = select_stages(stages)
    run = check_run_params(root, backbone, dataset)
    options = task_options(root)
    logger.info(
        "project %s, dataset %s, backbone %s, stages %s", root, run["dataset"], run["backbone"], selected
    )
    # A stage task ends in a state it builds itself (``Skipped`` when DVC skipped the stage);
    # calling it returns that state, whose result is the stage's summary dict.
    results = [STAGE_TASKS[name].with_options(**options)(str(root)).result() for name in selected]
    if promote and "evaluate" in selected:
        results.append(promote_task.with_options(**options)(str(root)))
    skipped = [r["stage"] for r in results if r.get("status") == "skipped"]
    logger.info("done: %d stages, up to date (skipped): %s", len(selected), skipped or "none")
    return results


def main(argv: list[str] | None = None) -> None:
    """``python -m flows.pipeline [--stages ...] [--promote]``: one run now, without a deployment."""
    import argparse

    parser = argparse.ArgumentParser(description="Run the CLIPER pipeline once as a Prefect flow.")
    parser.add_argument("--project-dir", default=".")
    parser.add_argument("--backbone", default=None, help="must equal params.yaml train.backbone")
    parser.add_argument("--dataset", default=None, help="must equal params.yaml ingest.name")
    parser.add_argument("--promote", action="store_true", help="gated promotion after evaluate")
    parser.add_argument("--stages", nargs="+", default=None, help="subset of stages (DAG order kept)")
    args = parser.parse_args(argv)
    state = cliper_pipeline(
        args.project_dir, args.backbone, args.dataset, args.promote, args.stages, return_state=True
    )
    raise SystemExit(0 if state.is_completed() else 1)


if __name__ == "__main__":  # pragma: no cover - entry point
    main()
