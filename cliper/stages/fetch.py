"""Stage ``fetch``: item images from their URLs -> ``fetch.image_dir`` + a report (after ingest).

Reads ``<ingest.out_dir>/items.parquet`` and the URL source (``fetch.urls``), fetches the
images of items without a local image (:mod:`cliper.data.fetch`), writes
``<fetch.out_dir>/report.csv`` (one row per item: URL, outcome, reason, bytes, ...) and
``<fetch.out_dir>/metrics.json`` (DVC metrics, also a Prefect artifact). Preprocess then uses
the fetched files; failed items get the placeholder and are listed in ``missing_images.csv``.

With ``fetch.enabled: false`` (the demo) nothing is read or requested: the stage writes an
empty report and ``{"enabled": false}`` metrics, so the demo stays offline. ``image_dir`` is a
DVC output with ``persist: true``: DVC keeps it between runs and a rerun skips finished images.

Raises :class:`cliper.errors.DataError` after writing the report when more than
``fetch.max_failed_share`` of the requested images failed (e.g. no network).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd

from cliper import io
from cliper.config import IngestConfig, Params
from cliper.data.fetch import FAILED, OK, fetch_images
from cliper.data.fetch_plan import REPORT_COLUMNS, plan, read_urls, report_table, summarize
from cliper.errors import DataError
from cliper.stages import StageResult

log = logging.getLogger(__name__)

REPORT_FILE = "report.csv"
METRICS_FILE = "metrics.json"
ITEMS_FILE = "items.parquet"


def ingest_meta_file(cfg: IngestConfig, root: Path) -> Path | None:
    """The meta file ingest read (``ingest.meta_file``, else ``meta_<name>.json.gz`` for amazon2014)."""
    raw_dir = Path(cfg.raw_dir) if Path(cfg.raw_dir).is_absolute() else root / cfg.raw_dir
    if cfg.meta_file is not None:
        return Path(cfg.meta_file) if Path(cfg.meta_file).is_absolute() else raw_dir / cfg.meta_file
    return raw_dir / f"meta_{cfg.name}.json.gz" if cfg.source == "amazon2014" else None


def _write(out: Path, report: pd.DataFrame, metrics: dict) -> dict[str, str]:
    report_path = out / REPORT_FILE
    with io.atomic_path(report_path) as tmp:
        report.to_csv(tmp, index=False)
    return {"report": str(report_path), "metrics": str(io.write_json(out / METRICS_FILE, metrics))}


def run(params: Params, root: Path) -> StageResult:
    """Fetch the images of the ingested items (or record that fetching is off)."""
    cfg = params.fetch
    image_dir, out = root / cfg.image_dir, root / cfg.out_dir
    image_dir.mkdir(parents=True, exist_ok=True)
    if not cfg.enabled:
        metrics = {"enabled": False}
        outputs = _write(out, pd.DataFrame(columns=list(REPORT_COLUMNS)), metrics)
        return StageResult("fetch", outputs, metrics, [])
    items_path = root / params.ingest.out_dir / ITEMS_FILE
    if not items_path.is_file():
        raise DataError(f"{items_path}: not found; run the ingest stage first (cliper run ingest)")
    items = pd.read_parquet(items_path, columns=["item_id", "asin", "image_path"])
    urls = read_urls(cfg.urls, cfg.url_column, ingest_meta_file(params.ingest, root), root)
    jobs, skipped = plan(items, urls, cfg.skip_url_patterns)
    log.info("fetch: %d of %d items to fetch into %s (concurrency %d)", len(jobs), len(items), image_dir,
             cfg.concurrency)
    start = time.monotonic()
    outcomes = fetch_images(jobs, cfg, image_dir)
    report = report_table(outcomes, skipped, root)
    metrics = summarize(report, time.monotonic() - start)
    outputs = _write(out, report, metrics)
    log.info("fetch: %s", metrics)
    requested = metrics[OK] + metrics[FAILED]
    warnings = [f"{metrics[FAILED]} images failed to fetch ({metrics['failed_by_reason']}); they get the "
                f"placeholder downstream; see {outputs['report']}"] if metrics[FAILED] else []
    if requested and metrics[FAILED] / requested > cfg.max_failed_share:
        raise DataError(
            f"fetch: {metrics[FAILED]} of {requested} requested images failed "
            f"({metrics['failed_by_reason']}), more than fetch.max_failed_share={cfg.max_failed_share}; "
            f"see {outputs['report']}. Check the "
            "network/URLs, then rerun (finished images are kept), or raise fetch.max_failed_share"
        )
    return StageResult("fetch", outputs, metrics, warnings)
