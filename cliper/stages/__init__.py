"""Pipeline stages: one module per stage, each exposing ``run(params, root) -> StageResult``.

DVC calls them through ``cliper run <stage>``; Prefect tasks call ``dvc repro --single-item
<stage>``, which runs the same command. The order below is the DAG order of ``dvc.yaml``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cliper.config import Params

STAGES: tuple[str, ...] = (
    "demo_data",
    "ingest",
    "fetch",
    "validate",
    "preprocess",
    "adapt",
    "extract",
    "train",
    "evaluate",
)


@dataclass(frozen=True)
class StageResult:
    """What a stage produced: output paths and headline metrics (plain JSON-able values)."""

    stage: str
    outputs: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def run_stage(name: str, params: Params, root: str | Path = ".") -> StageResult:
    """Run stage ``name`` of the pipeline in project ``root``.

    Stages after ``validate`` refuse to run when its report failed (``require_validated``).

    Raises:
        ValueError: unknown stage name (lists the valid ones).
        ValidationFailed: a later stage on data whose validation failed.
    """
    if name not in STAGES:
        raise ValueError(f"unknown stage '{name}'; choose one of {list(STAGES)}")
    if STAGES.index(name) > STAGES.index("validate"):
        from cliper.stages.validate import require_validated

        require_validated(params, Path(root), name)
    module = importlib.import_module(f"cliper.stages.{name}")
    return module.run(params, Path(root))
