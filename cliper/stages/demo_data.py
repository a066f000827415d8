"""Stage ``demo_data``: write the embedded synthetic catalog into ``root / demo.out_dir``.

Same function as ``cliper demo-data`` (:func:`cliper.demo.catalog.write_demo_catalog`); the
folder is replaced whole, so a rerun never mixes files from two configs.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from cliper.config import Params
from cliper.demo.catalog import write_demo_catalog
from cliper.stages import StageResult


def run(params: Params, root: Path) -> StageResult:
    """Generate the demo catalog described by ``params.demo`` under ``root``."""
    cfg = params.demo
    out_dir = Path(root) / cfg.out_dir
    summary = write_demo_catalog(replace(cfg, out_dir=str(out_dir)))
    outputs = {role: str(out_dir / name) for role, name in summary["files"].items()}
    metrics = {k: v for k, v in summary.items() if k not in ("out_dir", "files")}
    # Missing and corrupt images are intended (they exercise the downstream fallbacks): no warning.
    return StageResult(stage="demo_data", outputs={"out_dir": str(out_dir), **outputs}, metrics=metrics)
