"""What the fetch stage fetches and what it reports: URL sources, jobs, the report table.

URLs come from the ``imUrl`` field of an Amazon-2014 meta file (``fetch.urls: meta``) or from
a CSV table with ``asin`` and ``fetch.url_column`` columns (CLIPER's ``baby_url.csv``:
``itemID,asin,imUrl``). Only ingested items are fetched (the k-core survivors), and only those
without a local image from ingest.

The report (``report.csv``) has one row per ingested item: ``item_id, asin, url, outcome,
reason, http_status, bytes, attempts, seconds, path``. ``outcome`` is ``ok`` (fetched now),
``cached`` (fetched by an earlier run), ``failed`` (``reason`` says why), ``no_url`` or
``local`` (ingest found an image file; not fetched). ``path`` is relative to the project root.
:func:`apply_report` gives preprocess the fetched paths and the failure reasons.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cliper.data import amazon
from cliper.data.fetch import CACHED, FAILED, OK, FetchJob, FetchOutcome
from cliper.errors import DataError

NO_URL, LOCAL = "no_url", "local"
URLS_FROM_META = "meta"
REPORT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(FetchOutcome))
FETCHED = (OK, CACHED)


def read_meta_urls(path: Path, url_column: str) -> pd.DataFrame:
    """``asin, url`` from an Amazon-2014 meta file (loose JSON lines, gzip or plain)."""
    records = amazon.read_records(path)
    frame = pd.DataFrame.from_records(records, columns=["asin", url_column])
    if frame[url_column].isna().all():
        raise DataError(
            f"{path}: no record has a '{url_column}' field; set fetch.url_column to the URL field "
            "or fetch.urls to a CSV table of asin and URL"
        )
    return _clean(frame.rename(columns={url_column: "url"}), path)


def read_url_table(path: Path, url_column: str) -> pd.DataFrame:
    """``asin, url`` from a CSV with an ``asin`` column and a ``url_column`` column."""
    if not path.is_file():
        raise DataError(f"{path}: URL table not found (fetch.urls); expected a CSV with asin,{url_column}")
    frame = amazon.read_table(path, sep=",", header=0, dtype=str, expected=f"rows of asin,{url_column}")
    absent = [c for c in ("asin", url_column) if c not in frame.columns]
    if absent:
        raise DataError(
            f"{path}: missing column(s) {absent}; expected a CSV header with 'asin' and '{url_column}' "
            f"(fetch.url_column), found {list(frame.columns)}"
        )
    return _clean(frame[["asin", url_column]].rename(columns={url_column: "url"}), path)


def _clean(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    frame = frame.assign(asin=frame["asin"].astype("string").str.strip(),
                         url=frame["url"].astype("string").str.strip())
    frame = frame[frame["asin"].notna() & (frame["asin"] != "")]
    urls = frame[frame["url"].notna() & (frame["url"] != "")].drop_duplicates("asin")
    if urls.empty:
        raise DataError(f"{path}: no item has a URL; nothing to fetch")
    return urls.reset_index(drop=True)


def read_urls(source: str, url_column: str, meta_file: Path | None, root: Path) -> pd.DataFrame:
    """The URL table chosen by ``fetch.urls`` (``meta`` = the ingest meta file)."""
    if source == URLS_FROM_META:
        if meta_file is None:
            raise DataError(
                "fetch.urls is 'meta' but ingest reads no meta file (ingest.meta_file is null for an "
                "mmrec source); set ingest.meta_file, or fetch.urls to a URL table such as "
                "../shared/data/amazon/baby/baby_url.csv"
            )
        return read_meta_urls(meta_file, url_column)
    path = Path(source)
    return read_url_table(path if path.is_absolute() else root / path, url_column)


def plan(items: pd.DataFrame, urls: pd.DataFrame, skip_patterns: Sequence[str] = ()) -> tuple[
        list[FetchJob], pd.DataFrame]:
    """Jobs for items with a usable URL and no local image; report rows for the others.

    A URL containing one of ``skip_patterns`` (a known "no image" placeholder) counts as none:
    outcome ``no_url``, reason ``placeholder_url``.
    """
    frame = items[["item_id", "asin", "image_path"]].merge(urls, on="asin", how="left", validate="one_to_one")
    url = frame["url"].fillna("").astype(str)
    placeholder = (url.str.contains("|".join(map(re.escape, skip_patterns))) if skip_patterns
                   else pd.Series(False, index=url.index))
    local = frame["image_path"].notna()
    todo = (url != "") & ~placeholder & ~local
    rows = frame.loc[todo, ["item_id", "asin", "url"]].itertuples(index=False)
    jobs = [FetchJob(int(i), str(a), str(u)) for i, a, u in rows]
    rest = frame[~todo]
    skipped = pd.DataFrame({
        "item_id": rest["item_id"].to_numpy(), "asin": rest["asin"].astype(str).to_numpy(),
        "url": url[~todo].to_numpy(),
        "outcome": np.where(local[~todo], LOCAL, NO_URL),
        "reason": np.where(placeholder[~todo] & ~local[~todo], "placeholder_url", ""),
        "path": rest["image_path"].fillna("").astype(str).to_numpy(),
    })
    return jobs, skipped


def report_table(outcomes: Sequence[FetchOutcome], skipped: pd.DataFrame, root: Path) -> pd.DataFrame:
    """One row per item (columns :data:`REPORT_COLUMNS`), sorted by item id; paths relative to root."""
    fetched = pd.DataFrame([asdict(o) for o in outcomes], columns=list(REPORT_COLUMNS))
    fetched["path"] = [_relative(p, root) for p in fetched["path"]]
    table = pd.concat([fetched, skipped.reindex(columns=list(REPORT_COLUMNS))], ignore_index=True)
    defaults = {"reason": "", "http_status": 0, "bytes": 0, "attempts": 0, "seconds": 0.0, "path": ""}
    table = table.fillna(defaults).astype({"item_id": "int64", "http_status": "int64", "bytes": "int64",
                                           "attempts": "int64", "seconds": "float64"})
    return table.sort_values("item_id").reset_index(drop=True)


def _relative(path: str, root: Path) -> str:
    if not path:
        return ""
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return Path(path).resolve().as_posix()


def summarize(report: pd.DataFrame, seconds: float, enabled: bool = True) -> dict[str, Any]:
    """DVC metrics of the stage: counts per outcome, failures by reason, bytes, seconds, rate."""
    counts = report["outcome"].value_counts()
    requested = int(counts.get(OK, 0) + counts.get(FAILED, 0))
    failed = report[report["outcome"] == FAILED]
    return {
        "enabled": enabled,
        "items": len(report),
        **{name: int(counts.get(name, 0)) for name in (OK, CACHED, FAILED, NO_URL, LOCAL)},
        "failed_by_reason": {str(k): int(v) for k, v in failed["reason"].value_counts().sort_index().items()},
        "bytes": int(report.loc[report["outcome"] == OK, "bytes"].sum()),
        "seconds": round(seconds, 3),
        "items_per_s": round(requested / seconds, 2) if seconds > 0 else 0.0,
    }


def read_report(path: Path) -> pd.DataFrame:
    """Read ``report.csv`` written by the fetch stage.

    Raises:
        DataError: missing file or columns (names the file and how to fix it).
    """
    if not path.is_file():
        raise DataError(f"{path}: not found; fetch.enabled is true, so run the fetch stage first "
                        "(cliper run fetch)")
    report = pd.read_csv(path, dtype={"asin": str, "url": str, "reason": str, "path": str},
                         keep_default_na=False)
    absent = [c for c in REPORT_COLUMNS if c not in report.columns]
    if absent:
        raise DataError(f"{path}: missing column(s) {absent}; rerun the fetch stage (cliper run fetch)")
    return report


def apply_report(items: pd.DataFrame, report: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Items with ``image_path`` filled from fetched images, and the fetch failure reason per item.

    Returns:
        (items copy, Series item_id -> ``"fetch failed: <reason> (<url>)"`` for failed items).
    """
    by_item = report.set_index("item_id")
    fetched = by_item[by_item["outcome"].isin(FETCHED)]["path"]
    out = items.copy()
    fill = out["item_id"].map(fetched).astype("string")
    out["image_path"] = out["image_path"].astype("string").fillna(fill)
    failed = by_item[by_item["outcome"] == FAILED]
    reasons = "fetch failed: " + failed["reason"].astype(str) + " (" + failed["url"].astype(str) + ")"
    return out, reasons


def note_failures(manifest: pd.DataFrame, reasons: pd.Series, ok_status: str) -> pd.DataFrame:
    """Manifest rows of items whose fetch failed get the fetch reason (instead of "no image_path")."""
    out = manifest.copy()
    hit = (out["status"] != ok_status) & out["item_id"].isin(reasons.index)
    out.loc[hit, "reason"] = out.loc[hit, "item_id"].map(reasons).to_numpy()
    return out
