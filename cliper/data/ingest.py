"""Raw catalog -> cleaned interactions, k-core, 0-based ids, per-user split and the items table.

Id numbering (documented contract, ``docs/architecture.md``):

* ``source: amazon2014`` — items are numbered in sorted-ASIN order and users in sorted raw-id
  order (Python/pandas code-point string order), as MMRec's Baby maps.
* ``source: mmrec`` — the file's integer ids are kept in their order: surviving ids are ranked
  ascending, so 0-based contiguous ids (MMRec's own) stay unchanged. ``asin`` comes from the
  item map when given, else ``str(itemID)``; ``user_raw`` from the user map, else ``str(userID)``.

All work is vectorised with pandas/numpy; the k-core loops only over its iterations.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cliper.data import amazon
from cliper.data.split import TEST, TRAIN, VALID, split_frame
from cliper.errors import DataError

logger = logging.getLogger(__name__)

ITEM_COLUMNS: tuple[str, ...] = (
    "item_id",
    "asin",
    "title",
    "brand",
    "description",
    "categories",
    "price",
    "image_path",
)
TEXT_COLUMNS: tuple[str, ...] = ("title", "brand", "description", "categories")
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png")  # first match wins


@dataclass
class RawCatalog:
    """Interactions as read, before cleaning.

    Attributes:
        interactions: ``user_raw``, ``asin`` (str) and ``user_key``/``item_key`` (sort keys that
            fix the id order), optional ``rating``, ``timestamp``, ``x_label``.
        meta: item metadata (``asin`` + text columns) or None.
        image_dir: folder with ``<asin>.jpg`` files, or None.
        source: ``amazon2014`` or ``mmrec``.
    """

    interactions: pd.DataFrame
    meta: pd.DataFrame | None = None
    image_dir: Path | None = None
    source: str = "amazon2014"


@dataclass
class Ingested:
    """Everything the ingest stage writes."""

    interactions: pd.DataFrame
    items: pd.DataFrame
    user_map: pd.DataFrame
    item_map: pd.DataFrame
    stats: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- cleaning


def clean(df: pd.DataFrame) -> pd.DataFrame:
    """Drop rows with missing/empty ids and duplicate (user, item) pairs, keeping the latest.

    "Latest" is the highest ``timestamp`` when that column exists (ties: later row), otherwise
    the later row in the file.
    """
    ids_ok = df["user_raw"].notna() & df["asin"].notna()
    ids_ok &= (df["user_raw"].astype("string").str.len() > 0) & (df["asin"].astype("string").str.len() > 0)
    dropped = int((~ids_ok).sum())
    if dropped:
        logger.warning("dropped %d interactions with a missing user or item id", dropped)
    out = df[ids_ok.fillna(False).to_numpy(dtype=bool)]
    if "timestamp" in out.columns:
        out = out.sort_values("timestamp", kind="stable", na_position="first")
    before = len(out)
    out = out.drop_duplicates(["user_raw", "asin"], keep="last")
    if len(out) < before:
        logger.info("dropped %d duplicate (user, item) pairs (latest kept)", before - len(out))
    return out.sort_index()


def k_core(users: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the interactions in the iterative ``k``-core (to a fixed point).

    Repeatedly drops interactions whose user or item has fewer than ``k`` interactions among
    those kept, until nothing changes. ``k <= 1`` keeps everything.
    """
    keep = np.ones(len(users), dtype=bool)
    if k <= 1 or len(users) == 0:
        return keep
    u_codes, _ = pd.factorize(users)
    i_codes, _ = pd.factorize(items)
    iteration = 0
    while True:
        iteration += 1
        u_count = np.bincount(u_codes[keep], minlength=u_codes.max() + 1)
        i_count = np.bincount(i_codes[keep], minlength=i_codes.max() + 1)
        new_keep = keep & (u_count[u_codes] >= k) & (i_count[i_codes] >= k)
        if new_keep.sum() == keep.sum():
            logger.info(
                "%d-core reached after %d iterations: %d of %d interactions kept",
                k,
                iteration,
                int(keep.sum()),
                len(keep),
            )
            return keep
        keep = new_keep


# --------------------------------------------------------------------------- ids


def assign_ids(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Number users and items 0-based by ascending ``user_key``/``item_key``.

    Returns:
        ``(interactions with user_id/item_id, user_map [user_raw, user_id], item_map [asin, item_id])``.
    """
    out = df.copy()
    u_codes, u_keys = pd.factorize(out["user_key"], sort=True)
    i_codes, i_keys = pd.factorize(out["item_key"], sort=True)
    out["user_id"] = u_codes.astype(np.int64)
    out["item_id"] = i_codes.astype(np.int64)
    first_u = out.drop_duplicates("user_id").set_index("user_id")["user_raw"].sort_index()
    first_i = out.drop_duplicates("item_id").set_index("item_id")["asin"].sort_index()
    user_map = pd.DataFrame({"user_raw": first_u.astype(str).to_numpy(), "user_id": np.arange(len(u_keys))})
    item_map = pd.DataFrame({"asin": first_i.astype(str).to_numpy(), "item_id": np.arange(len(i_keys))})
    return out, user_map, item_map


# --------------------------------------------------------------------------- items


def find_images(image_dir: Path | None, asins: pd.Series, root: Path) -> pd.Series:
    """``image_path`` per asin: ``<image_dir>/<asin>.<ext>`` when such a file exists, else null.

    Paths are relative to ``root`` when the folder lies inside it, absolute otherwise. The folder
    is listed once; matching is a vectorised merge on the file stem.
    """
    none = pd.Series(pd.NA, index=asins.index, dtype="string")
    if image_dir is None or not image_dir.is_dir():
        return none
    names = pd.Series([e.name for e in os.scandir(image_dir) if e.is_file()], dtype="string")
    if names.empty:
        return none
    parts = names.str.rsplit(".", n=1, expand=True).reindex(columns=[0, 1])
    files = pd.DataFrame({"stem": parts[0], "ext": "." + parts[1].str.lower(), "name": names})
    files["rank"] = files["ext"].map({ext: i for i, ext in enumerate(IMAGE_EXTENSIONS)})
    files = files.dropna(subset=["rank"]).sort_values("rank").drop_duplicates("stem")
    matched = asins.astype("string").map(files.set_index("stem")["name"])
    resolved = image_dir.resolve()
    try:
        prefix = resolved.relative_to(root.resolve()).as_posix()
    except ValueError:
        prefix = resolved.as_posix()
    return (prefix + "/" + matched).astype("string")


def build_items(
    item_map: pd.DataFrame, meta: pd.DataFrame | None, image_dir: Path | None, root: Path
) -> pd.DataFrame:
    """The items table (one row per item id 0..I-1, contract of ``docs/architecture.md``)."""
    items = item_map[["item_id", "asin"]].copy()
    if meta is not None:
        items = items.merge(meta, on="asin", how="left", validate="one_to_one")
        no_meta = int(items["title"].isna().sum()) if "title" in items.columns else len(items)
        if no_meta:
            logger.warning("%d of %d items have no title in the metadata", no_meta, len(items))
    for col in ("title", "brand", "description", "categories"):
        if col not in items.columns:
            items[col] = pd.Series(pd.NA, index=items.index, dtype="string")
        items[col] = items[col].astype("string")
    items["price"] = items["price"].astype("float64") if "price" in items.columns else np.nan
    items["image_path"] = find_images(image_dir, items["asin"], root)
    items["item_id"] = items["item_id"].astype(np.int64)
    items["asin"] = items["asin"].astype("string")
    return items.sort_values("item_id").reset_index(drop=True)[list(ITEM_COLUMNS)]


# --------------------------------------------------------------------------- pipeline


def ingest_catalog(raw: RawCatalog, k: int, seed: int, keep_existing_split: bool, root: Path) -> Ingested:
    """Clean, k-core, number, split and describe a raw catalog.

    Raises:
        DataError: nothing left after cleaning or k-core, or an existing ``x_label`` outside {0,1,2}.
    """
    df = clean(raw.interactions)
    if df.empty:
        raise DataError("no interactions left after dropping rows with missing ids")
    keep = k_core(df["user_key"].to_numpy(), df["item_key"].to_numpy(), k)
    df = df[keep]
    if df.empty:
        raise DataError(f"no interactions left after the {k}-core; lower ingest.k_core or add data")
    df, user_map, item_map = assign_ids(df)
    if "x_label" in df.columns and keep_existing_split:
        labels = df["x_label"]
        if labels.isna().any() or not labels.isin([TRAIN, VALID, TEST]).all():
            raise DataError(f"x_label has values {sorted(labels.dropna().unique())[:5]}; expected 0, 1 or 2")
        df["x_label"] = labels.astype(np.int8)
        logger.info("kept the existing x_label split")
    else:
        df["x_label"] = split_frame(df, seed)
    inter = _interactions_table(df)
    items = build_items(item_map, raw.meta, raw.image_dir, root)
    stats = describe(inter, k, raw.source)
    # Whether a metadata file was read and how many items it matched (validate checks text then).
    stats["meta_records"] = None if raw.meta is None else len(raw.meta)
    stats["items_with_meta"] = 0 if raw.meta is None else int(items["asin"].isin(raw.meta["asin"]).sum())
    return Ingested(inter, items, user_map, item_map, stats)


def _interactions_table(df: pd.DataFrame) -> pd.DataFrame:
    cols = ["user_id", "item_id", "x_label"]
    out = df[cols].copy()
    if "rating" in df.columns:
        out["rating"] = df["rating"].astype("float32")
    if "timestamp" in df.columns:
        ts = df["timestamp"]
        out["timestamp"] = ts.astype("int64") if not ts.isna().any() else ts.astype("Int64")
    return out.sort_values(["user_id", "item_id"]).reset_index(drop=True)


def describe(inter: pd.DataFrame, k: int, source: str) -> dict[str, Any]:
    """Headline statistics (``stats.json``)."""
    users = int(inter["user_id"].max()) + 1 if len(inter) else 0
    items = int(inter["item_id"].max()) + 1 if len(inter) else 0
    counts = np.bincount(inter["x_label"].to_numpy(dtype=np.int64), minlength=3)
    return {
        "users": users,
        "items": items,
        "interactions": len(inter),
        "density": len(inter) / (users * items) if users and items else 0.0,
        "train": int(counts[TRAIN]),
        "valid": int(counts[VALID]),
        "test": int(counts[TEST]),
        "k_core": k,
        "source": source,
    }


# --------------------------------------------------------------------------- readers -> RawCatalog


def read_amazon2014(
    raw_dir: Path, name: str, interactions: str, meta_file: Path | None, image_dir: Path | None
) -> RawCatalog:
    """Read ``meta_<name>.json.gz`` and ``ratings_<name>.csv`` / ``reviews_<name>_5.json.gz``."""
    if interactions == "ratings":
        inter = amazon.read_ratings_csv(raw_dir / f"ratings_{name}.csv")
    else:
        inter = amazon.read_reviews(raw_dir / f"reviews_{name}_5.json.gz")
    meta = amazon.read_meta(meta_file or raw_dir / f"meta_{name}.json.gz")
    inter["user_key"] = inter["user_raw"]
    inter["item_key"] = inter["asin"]
    return RawCatalog(inter, meta, image_dir or raw_dir / "images", "amazon2014")


def read_mmrec(
    inter_file: Path,
    item_map: Path | None,
    user_map: Path | None,
    meta_file: Path | None,
    image_dir: Path | None,
) -> RawCatalog:
    """Read an MMRec ``.inter`` file (+ optional id maps, metadata and image folder)."""
    inter = amazon.read_inter(inter_file)
    out = pd.DataFrame({"user_key": inter["userID"], "item_key": inter["itemID"]})
    out["user_raw"] = _lookup(inter["userID"], user_map, "userID", inter_file)
    out["asin"] = _lookup(inter["itemID"], item_map, "itemID", inter_file)
    for col in ("rating", "timestamp", "x_label"):
        if col in inter.columns:
            out[col] = inter[col]
    meta = amazon.read_meta(meta_file) if meta_file is not None else None
    return RawCatalog(out, meta, image_dir, "mmrec")


def _lookup(ids: pd.Series, map_file: Path | None, id_column: str, inter_file: Path) -> pd.Series:
    if map_file is None:
        return ids.astype("string")
    mapping = amazon.read_id_map(map_file, id_column)
    raw = ids.map(mapping)
    if raw.isna().any():
        bad = int(ids[raw.isna()].iloc[0])
        raise DataError(
            f"{inter_file}: {id_column} {bad} is not in the id map {map_file}; expected every id mapped"
        )
    return raw.astype("string")
