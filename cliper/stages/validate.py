"""Stage ``validate``: Great Expectations suites over ``data/ingested/``.

Writes ``<out_dir>/summary.json`` (DVC metrics), ``<out_dir>/report.html`` (one self-contained
page, readable offline: :mod:`cliper.data.validation_report`) and the GX Data Docs HTML under
``<out_dir>/data_docs/`` (built in a temporary folder, then moved into place; not a DVC output,
as GX stamps the build time into every page), also when the data fails, so the failure can be
inspected; then raises :class:`ValidationFailed` naming each failing expectation with example rows.

``summary.json`` records the sha256 of the validated inputs; :func:`require_validated` (called
by :func:`cliper.stages.run_stage` before every later stage) refuses to run on data whose
validation failed or whose report is for other data.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pandas as pd

from cliper import io
from cliper.config import Params
from cliper.data.validate import validate_tables
from cliper.data.validation_report import REPORT_FILE, REPORT_MARKDOWN, render_markdown, render_report
from cliper.errors import DataError, ValidationFailed
from cliper.stages import StageResult
from cliper.views.images import ImageRule, allowed_folders

logger = logging.getLogger(__name__)

DOCS_DIR = "data_docs"
SUMMARY_FILE = "summary.json"
INPUT_FILES: tuple[str, ...] = ("interactions.parquet", "items.parquet")  # what the report vouches for


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
            max_bad_share=cfg.max_missing_image_share,
            image_rule=ImageRule.from_config(cfg),
            image_folders=allowed_folders(params, root),
            max_missing_text_share=cfg.max_missing_text_share,
            text_expected=_meta_was_read(in_dir / "stats.json"),
            n_users=n_users,
        )
    report.summary["inputs_sha256"] = inputs_digest(in_dir)
    parts = (report.summary, report.expectations, report.failures, str(in_dir))
    report_path = io.write_text(out_dir / REPORT_FILE, render_report(*parts))  # offline: no CDN assets
    io.write_text(out_dir / REPORT_MARKDOWN, render_markdown(*parts))  # the Prefect artifact's text
    summary_path = io.write_json(out_dir / SUMMARY_FILE, report.summary)
    if not report.success:
        raise ValidationFailed(
            f"validation of {in_dir} failed ({len(report.failures)} expectation(s); report: "
            f"{report_path}):\n  " + "\n  ".join(report.failures)
        )
    return StageResult(
        stage="validate",
        outputs={"summary": str(summary_path), "report": str(report_path),
                 "data_docs": str(out_dir / DOCS_DIR)},
        metrics={k: v for k, v in report.summary.items() if not isinstance(v, dict)},
        warnings=report.warnings,
    )


def inputs_digest(in_dir: Path) -> str:
    """sha256 over the bytes of the ingested files the validation vouches for."""
    return hashlib.sha256("".join(io.sha256_file(in_dir / n) for n in INPUT_FILES).encode()).hexdigest()


def _meta_was_read(stats_path: Path) -> bool | None:
    """From ingest's ``stats.json``: whether a metadata file was read (None: not recorded)."""
    stats = io.read_json(stats_path) if stats_path.is_file() else {}
    return None if "meta_records" not in stats else stats["meta_records"] is not None


def require_validated(params: Params, root: Path, stage: str) -> None:
    """Refuse to run ``stage`` when the validate report failed or is for other data.

    No report at all (validate never ran here) is allowed: library and test use.

    Raises:
        ValidationFailed: names the report and what to do.
    """
    summary_path = root / params.validate.out_dir / SUMMARY_FILE
    if not summary_path.is_file():
        return
    summary = io.read_json(summary_path)
    in_dir = root / params.ingest.out_dir
    if not summary.get("success", False):
        raise ValidationFailed(
            f"stage '{stage}' refused: {summary_path} says the validation of {in_dir} failed "
            f"({summary.get('expectations_failed')} expectation(s); report: "
            f"{summary_path.parent / REPORT_FILE}); fix the data and rerun `cliper run validate`"
        )
    recorded = summary.get("inputs_sha256")
    if recorded and all((in_dir / n).is_file() for n in INPUT_FILES) and recorded != inputs_digest(in_dir):
        raise ValidationFailed(
            f"stage '{stage}' refused: {summary_path} validated other data than the current {in_dir} "
            "(ingest ran since); rerun `cliper run validate` first"
        )
