"""Stage ``validate``: Great Expectations suites over ``data/ingested/``.

Writes ``<out_dir>/summary.json`` (DVC metrics) and the Data Docs HTML under
``<out_dir>/data_docs/`` (built in a temporary folder, then moved into place), also when the
data fails, so the failure can be inspected; then raises :class:`ValidationFailed` naming each
failing expectation with example rows.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from cliper import io
from cliper.config import Params
from cliper.data.validate import validate_tables
from cliper.errors import DataError, ValidationFailed
from cliper.stages import StageResult

logger = logging.getLogger(__name__)

DOCS_DIR = "data_docs"
SUMMARY_FILE = "summary.json"


def _read_parquet(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: not found; run the ingest stage first (cliper run ingest)")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path}: cannot read parquet ({exc})") from exc


def run(params: Params, root: Path) -> StageResult:
    """Run the validate stage in project ``root``.

    Raises:
        ValidationFailed: any expectation failed (the message lists each one).
    """
    cfg = params.validate
    in_dir = root / params.ingest.out_dir
    inter = _read_parquet(in_dir / "interactions.parquet")
    items = _read_parquet(in_dir / "items.parquet")
    user_map = in_dir / "user_map.csv"
    n_users = len(pd.read_csv(user_map)) if user_map.is_file() else None
    out_dir = root / cfg.out_dir
    with io.atomic_dir(out_dir / DOCS_DIR) as docs:
        report = validate_tables(
            inter,
            items,
            root,
            docs,
            k=cfg.k_core,
            min_image_size=cfg.min_image_size,
            max_bad_share=cfg.max_missing_image_share,
            n_users=n_users,
        )
    summary_path = io.write_json(out_dir / SUMMARY_FILE, report.summary)
    if not report.success:
        raise ValidationFailed(
            f"validation of {in_dir} failed ({len(report.failures)} expectation(s); Data Docs: "
            f"{out_dir / DOCS_DIR / 'index.html'}):\n  " + "\n  ".join(report.failures)
        )
    return StageResult(
        stage="validate",
        outputs={"summary": str(summary_path), "data_docs": str(out_dir / DOCS_DIR)},
        metrics={k: v for k, v in report.summary.items() if not isinstance(v, dict)},
        warnings=report.warnings,
    )
