"""Stage ``preprocess``: items.parquet -> text views per item + image manifest.

Writes ``<preprocess.out_dir>/``: ``views.parquet`` (item_id, view, text, n_tokens, n_chunks;
tokens counted with the ``clip.model`` tokenizer incl. SOT/EOT), ``images.parquet`` (item_id,
path, status ok/missing/corrupt/too_small/too_large/unsafe_path, reason, width, height, mode) and
``missing_images.csv`` (item_id, asin, reason: items that get the mid-grey placeholder). Images
are judged by the same rule as the validate stage (``validate.min_image_size``,
``validate.max_image_pixels``, paths inside the configured folders).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import open_clip
import pandas as pd

from cliper.clip.load import register_model_configs
from cliper.config import Params
from cliper.data.fetch_plan import apply_report, note_failures, read_report
from cliper.errors import CliperError, DataError
from cliper.io import atomic_dir
from cliper.stages import StageResult
from cliper.stages.fetch import REPORT_FILE as FETCH_REPORT
from cliper.views.images import STATUS_OK, ImageRule, allowed_folders, build_manifest, missing_list
from cliper.views.prompts import BpeTokenizer, build_views, count_tokens, view_prefix

log = logging.getLogger(__name__)

ITEMS_FILE = "items.parquet"


def read_items(path: Path) -> pd.DataFrame:
    """Read ``items.parquet`` and check item ids are 0..I-1 in order.

    Raises:
        DataError: file missing or ids out of order.
    """
    if not path.is_file():
        raise DataError(f"{path}: not found; run the ingest stage first (cliper run ingest)")
    items = pd.read_parquet(path)
    if "item_id" not in items.columns:
        raise DataError(f"{path}: column 'item_id' is missing")
    ids = items["item_id"].to_numpy()
    if not np.array_equal(ids, np.arange(len(items))):
        raise DataError(f"{path}: item_id must be 0..{len(items) - 1} in row order")
    return items


def token_counts(views: pd.DataFrame, params: Params) -> pd.DataFrame:
    """Add n_tokens and n_chunks (counted once per unique prompt) to ``views``."""
    register_model_configs()
    try:
        tokenizer = open_clip.get_tokenizer(params.clip.model)
    except RuntimeError as exc:
        raise CliperError(f"clip.model '{params.clip.model}': no tokenizer ({exc})") from exc
    tok = BpeTokenizer.from_open_clip(tokenizer, int(tokenizer.context_length))
    unique = views.drop_duplicates("text")
    prefixes = [view_prefix(v, params.preprocess) for v in unique["view"]]
    n_tokens, n_chunks = count_tokens(unique["text"].tolist(), prefixes, tok)
    lookup = pd.DataFrame({"text": unique["text"].to_numpy(), "n_tokens": n_tokens, "n_chunks": n_chunks})
    out = views.merge(lookup, on="text", how="left", validate="many_to_one")
    return out.astype({"n_tokens": "int64", "n_chunks": "int64"})


def with_fetched_images(items: pd.DataFrame, params: Params, root: Path) -> tuple[pd.DataFrame, pd.Series]:
    """Items whose missing ``image_path`` is filled from the fetch stage's report (when ``fetch.enabled``).

    Returns the items and, per item whose fetch failed, the reason (for ``missing_images.csv``).
    """
    if not params.fetch.enabled:
        return items, pd.Series(dtype="string")
    return apply_report(items, read_report(root / params.fetch.out_dir / FETCH_REPORT))


def run(params: Params, root: Path) -> StageResult:
    """Build views.parquet, images.parquet and missing_images.csv."""
    cfg = params.preprocess
    items = read_items(root / params.ingest.out_dir / ITEMS_FILE)
    views = token_counts(build_views(items, cfg), params)
    items, fetch_failures = with_fetched_images(items, params, root)
    rule, folders = ImageRule.from_config(params.validate), allowed_folders(params, root)
    manifest = build_manifest(items, root, rule, folders)
    manifest = note_failures(manifest, fetch_failures, STATUS_OK)
    missing = missing_list(items, manifest)
    out = root / cfg.out_dir
    with atomic_dir(out) as tmp:
        views.to_parquet(tmp / "views.parquet", index=False)
        manifest.to_parquet(tmp / "images.parquet", index=False)
        missing.to_csv(tmp / "missing_images.csv", index=False)
    long = views[views["n_chunks"] > 1]
    metrics = {
        "n_items": len(items),
        "n_views": len(cfg.views),
        "missing_images": int((manifest["status"] != STATUS_OK).sum()),
        "long_prompts": len(long),
        "max_chunks": int(views["n_chunks"].max()) if len(views) else 0,
        "mean_tokens": views.groupby("view")["n_tokens"].mean().round(2).to_dict(),
    }
    warnings = (
        [f"{len(missing)} items have no usable image (placeholder used); see {out / 'missing_images.csv'}"]
        if len(missing)
        else []
    )
    log.info("preprocess: %s", metrics)
    return StageResult(
        "preprocess",
        {name: str(out / name) for name in ("views.parquet", "images.parquet", "missing_images.csv")},
        metrics,
        warnings,
    )


def read_outputs(params: Params, root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(views ordered view-major for ``preprocess.views``, image manifest) for adapt/extract.

    Raises:
        DataError: outputs missing or inconsistent (names the file).
    """
    from cliper.clip.extract import order_views

    folder = root / params.preprocess.out_dir
    for name in ("views.parquet", "images.parquet"):
        if not (folder / name).is_file():
            raise DataError(
                f"{folder / name}: not found; run the preprocess stage first (cliper run preprocess)"
            )
    manifest = pd.read_parquet(folder / "images.parquet")
    if not np.array_equal(manifest["item_id"].to_numpy(), np.arange(len(manifest))):
        raise DataError(f"{folder / 'images.parquet'}: item_id must be 0..{len(manifest) - 1} in row order")
    ordered = order_views(
        pd.read_parquet(folder / "views.parquet"), list(params.preprocess.views), len(manifest)
    )
    return ordered, manifest
