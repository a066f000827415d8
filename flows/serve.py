"""Serve ``cliper_pipeline`` as the scheduled deployment ``cliper-pipeline``.

The schedule is ``params.yaml: orchestration.cron`` (or ``orchestration.interval_seconds``).
Run from the project root, with a Prefect server reachable at ``PREFECT_API_URL``::

    python -m flows.serve                 # blocks; Ctrl-C pauses the schedule and stops
    python -m flows.serve --project-dir /path/to/project
    python -m flows.serve --stages demo_data ingest validate   # scheduled runs of part of the DAG

``prefect.yaml`` describes the same deployment for ``prefect deploy`` + a process worker.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prefect.deployments.runner import RunnerDeployment

from cliper.config import load_params
from flows.pipeline import cliper_pipeline
from tasks.stages import select_stages

DEPLOYMENT_NAME = "cliper-pipeline"
TAGS = ["cliper"]


def deployment_kwargs(project_dir: str | Path = ".", stages: list[str] | None = None) -> dict:
    """Name, schedule and default parameters of the deployment.

    The schedule is ``orchestration.interval_seconds`` when set, else ``orchestration.cron``.
    ``stages`` (default: all) becomes the deployment's default ``stages`` parameter.
    """
    root = Path(project_dir).resolve()
    cfg = load_params(root / "params.yaml").orchestration
    parameters: dict = {"project_dir": str(root)}
    if stages:
        parameters["stages"] = select_stages(stages)
    schedule = {"interval": cfg.interval_seconds} if cfg.interval_seconds else {"cron": cfg.cron}
    return {
        "name": DEPLOYMENT_NAME,
        **schedule,
        "parameters": parameters,
        "tags": TAGS,
        "description": "CLIPER: every DVC stage through `dvc repro --single-item` (see flows/pipeline.py)",
    }


def build_deployment(project_dir: str | Path = ".", stages: list[str] | None = None) -> RunnerDeployment:
    """The deployment object, without serving it (``.apply()`` registers it with the server).

    One run at a time (concurrency limit 1): DVC locks the repository, so a scheduled run that
    overlapped a manual one would fail on the lock.
    """
    return cliper_pipeline.to_deployment(**deployment_kwargs(project_dir, stages), concurrency_limit=1)


def main(argv: list[str] | None = None) -> None:
    """Register the deployment and serve scheduled and manual runs (one at a time) until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project-dir", default=".", help="project root (dvc.yaml, params.yaml)")
    parser.add_argument("--stages", nargs="+", default=None,
                        help="default stages of the scheduled runs (DAG order kept; default: all)")
    args = parser.parse_args(argv)
    cliper_pipeline.serve(**deployment_kwargs(args.project_dir, args.stages), global_limit=1)


if __name__ == "__main__":  # pragma: no cover - entry point
    main()
