"""Great Expectations (1.x) suites over the ingested data: interactions, users, items, images.

Checks that GX has no expectation for (per-user train counts, per-item interaction counts,
"has some text", image decodability) are computed with pandas/PIL into columns of small derived
tables and asserted with ordinary GX expectations, so every check shows up in the Data Docs.

Suites (one GX validation definition per table, all in one ephemeral context; the Data Docs
site is built once at the end):

* ``interactions``: ids present and in ``0..U-1`` / ``0..I-1``, each id range contiguous
  (unique count = range size), no duplicate ``(user_id, item_id)``, ``x_label`` in {0, 1, 2},
  ``rating`` (when present) never null/NaN.
* ``users``: one row per user id; every user has a train row and at least ``k`` interactions.
* ``items``: ids ``0..I-1`` in order and equal to the interactions' item range, unique ASINs,
  every item has at least ``k`` interactions, and (when a metadata file was read, or the catalog
  has any text) every item has a non-empty title, brand, description or categories, and no text
  column is missing for more than ``max_missing_text_share`` of the items (so a meta file that
  matches no item, or an all-empty column, fails).
* ``images`` (only when the catalog has image paths): each image passes the image rule of
  :mod:`cliper.views.images` (the one preprocess applies: safe path, size limits from the header,
  full decode); the share of unusable images must stay at or below ``max_missing_image_share``
  (GX ``mostly``). Problems under that share become warnings.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cliper.data.ingest import TEXT_COLUMNS
from cliper.data.split import TEST, TRAIN, VALID
from cliper.views.images import STATUS_OK, STATUSES, ImageRule, build_manifest

logger = logging.getLogger(__name__)

N_EXAMPLES = 3  # example rows quoted per failing expectation
_MOSTLY_DIGITS = 6  # GX ``mostly`` rounded so that messages read 0.95, not 0.9499999999999
# How to fix a failing expectation on a derived column (appended to its message).
HINTS: dict[str, str] = {
    "has_text": "every item needs some text: check that the meta file belongs to this catalog",
    "status": "unusable images over validate.max_missing_image_share; each row names the reason",
    **{
        f"has_{c}": f"too many items without '{c}' (over validate.max_missing_text_share): check that "
        "the meta file belongs to this catalog"
        for c in TEXT_COLUMNS
    },
}
DOCS_SITE = "cliper_validate"


@dataclass
class ValidationReport:
    """Outcome of :func:`validate_tables`.

    Attributes:
        summary: JSON-able counts (DVC metrics): expectations evaluated/failed, images, sizes.
        failures: one message per failed expectation, with example rows.
        warnings: tolerated problems (a few missing or corrupt images).
    """

    summary: dict[str, Any]
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    expectations: list[dict[str, Any]] = field(default_factory=list)  # one row per expectation

    @property
    def success(self) -> bool:
        return not self.failures


# --------------------------------------------------------------------------- derived tables


def image_status(
    items: pd.DataFrame, root: Path, rule: ImageRule, folders: tuple[Path, ...] | None = None
) -> pd.DataFrame:
    """Per item: ``item_id``, ``image_path``, ``status`` (one of ``STATUSES``), ``reason``.

    The same rule as preprocess (:func:`cliper.views.images.build_manifest`): a fully decoded
    file within the size limits, read only from ``folders``.
    """
    manifest = build_manifest(items, root, rule, folders)
    return pd.DataFrame(
        {
            "item_id": manifest["item_id"].to_numpy(),
            "image_path": items["image_path"].astype("string").to_numpy(),
            "status": manifest["status"].to_numpy(),
            "reason": manifest["reason"].to_numpy(),
        }
    )


def user_table(inter: pd.DataFrame, n_users: int) -> pd.DataFrame:
    """One row per user id ``0..n_users-1``: interaction and train counts (vectorised)."""
    users = inter["user_id"].to_numpy(dtype=np.int64)
    in_range = (users >= 0) & (users < n_users)
    train = in_range & (inter["x_label"].to_numpy() == TRAIN)
    return pd.DataFrame(
        {
            "user_id": np.arange(n_users),
            "n_interactions": np.bincount(users[in_range], minlength=n_users),
            "n_train": np.bincount(users[train], minlength=n_users),
        }
    )


def item_table(items: pd.DataFrame, inter: pd.DataFrame) -> pd.DataFrame:
    """The items table plus ``n_interactions`` and ``has_text`` columns."""
    out = items[["item_id", "asin"]].copy()
    ids = inter["item_id"].to_numpy(dtype=np.int64)
    n = len(items)
    ok = (ids >= 0) & (ids < n)
    out["n_interactions"] = np.bincount(ids[ok], minlength=n)[:n] if n else []
    for c in TEXT_COLUMNS:
        present = items[c].astype("string").str.strip().fillna("").str.len() > 0 if c in items else False
        out[f"has_{c}"] = np.broadcast_to(np.asarray(present, dtype=bool), (n,))
    out["has_text"] = out[[f"has_{c}" for c in TEXT_COLUMNS]].any(axis=1).to_numpy(dtype=bool)
    return out


# --------------------------------------------------------------------------- suites


def _suites(
    inter: pd.DataFrame,
    items: pd.DataFrame,
    n_users: int,
    n_items: int,
    k: int,
    catalog_has_text: bool,
    max_bad_share: float,
    max_missing_text_share: float,
) -> dict[str, list[Any]]:
    """Expectations per table name (GX expectation objects)."""
    import great_expectations as gx

    ex = gx.expectations
    interactions = [ex.ExpectTableRowCountToBeBetween(min_value=1)]
    for col, n in (("user_id", n_users), ("item_id", n_items)):
        interactions += [
            ex.ExpectColumnValuesToNotBeNull(column=col),
            ex.ExpectColumnValuesToBeBetween(column=col, min_value=0, max_value=max(n - 1, 0)),
            ex.ExpectColumnUniqueValueCountToBeBetween(column=col, min_value=n, max_value=n),
        ]
    interactions += [
        ex.ExpectCompoundColumnsToBeUnique(column_list=["user_id", "item_id"]),
        ex.ExpectColumnValuesToBeInSet(column="x_label", value_set=[TRAIN, VALID, TEST]),
    ]
    if "rating" in inter.columns:  # NaN counts as null in GX's pandas backend
        interactions.append(ex.ExpectColumnValuesToNotBeNull(column="rating"))
    users = [
        ex.ExpectColumnValuesToBeBetween(column="n_train", min_value=1),
        ex.ExpectColumnValuesToBeBetween(column="n_interactions", min_value=k),
    ]
    item_checks = [
        ex.ExpectTableRowCountToEqual(value=n_items),
        ex.ExpectColumnValuesToBeIncreasing(column="item_id", strictly=True),
        ex.ExpectColumnMinToBeBetween(column="item_id", min_value=0, max_value=0),
        ex.ExpectColumnMaxToBeBetween(column="item_id", min_value=n_items - 1, max_value=n_items - 1),
        ex.ExpectColumnValuesToNotBeNull(column="asin"),
        ex.ExpectColumnValuesToBeUnique(column="asin"),
        ex.ExpectColumnValuesToBeBetween(column="n_interactions", min_value=k),
    ]
    if catalog_has_text:
        item_checks.append(ex.ExpectColumnValuesToBeInSet(column="has_text", value_set=[True]))
        text_mostly = round(1.0 - max_missing_text_share, _MOSTLY_DIGITS)
        item_checks += [
            ex.ExpectColumnValuesToBeInSet(column=f"has_{c}", value_set=[True], mostly=text_mostly)
            for c in TEXT_COLUMNS
        ]
    images = [
        ex.ExpectColumnValuesToBeInSet(
            column="status", value_set=[STATUS_OK], mostly=round(1.0 - max_bad_share, _MOSTLY_DIGITS)
        )
    ]
    return {"interactions": interactions, "users": users, "items": item_checks, "images": images}


def _context(docs_dir: Path) -> Any:
    """An ephemeral, in-memory GX context whose only Data Docs site writes to ``docs_dir`` (offline)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    site = {
        "class_name": "SiteBuilder",
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": f"{Path(docs_dir).resolve()}/",
        },
    }
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites={DOCS_SITE: site},
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _run_suite(ctx: Any, name: str, expectations: list[Any], frame: pd.DataFrame) -> Any:
    """Validate ``frame`` against one suite; the result is kept in the context for the Data Docs."""
    import great_expectations as gx

    batch = (
        ctx.data_sources.add_pandas(f"{name}_source")
        .add_dataframe_asset(name)
        .add_batch_definition_whole_dataframe(f"{name}_all")
    )
    suite = ctx.suites.add(gx.ExpectationSuite(name=name))
    for expectation in expectations:
        suite.add_expectation(expectation)
    vd = ctx.validation_definitions.add(
        gx.ValidationDefinition(name=f"{name}_validation", data=batch, suite=suite)
    )
    return vd.run(batch_parameters={"dataframe": frame}, result_format="SUMMARY")


def describe_failure(suite: str, result: Any, frame: pd.DataFrame) -> str:
    """One line naming a failed expectation and quoting example rows or the observed value."""
    cfg = result.expectation_config
    kwargs = {k: v for k, v in cfg.kwargs.items() if k not in ("batch_id", "result_format")}
    res = result.result or {}
    if res.get("partial_unexpected_index_list"):
        index = list(res["partial_unexpected_index_list"])[:N_EXAMPLES]
        rows = frame.loc[[i for i in index if i in frame.index]].to_dict("records")
        detail = f"{res.get('unexpected_count')} unexpected rows, e.g. {rows}"
    elif res.get("partial_unexpected_list"):
        detail = (
            f"{res.get('unexpected_count')} unexpected, e.g. {res['partial_unexpected_list'][:N_EXAMPLES]}"
        )
    else:
        detail = f"observed {res.get('observed_value')!r}"
    if result.exception_info and result.exception_info.get("raised_exception"):
        detail = f"error: {result.exception_info.get('exception_message')}"
    hint = HINTS.get(str(kwargs.get("column")))
    return f"{suite}: {cfg.type}({kwargs}) failed: {detail}" + (f" ({hint})" if hint else "")


def expectation_row(suite: str, result: Any) -> dict[str, Any]:
    """One expectation's outcome as plain JSON: suite, type, arguments, success, what was observed."""
    cfg = result.expectation_config
    res = result.result or {}
    observed = res.get("observed_value")
    if observed is None and "unexpected_count" in res:
        observed = f"{res['unexpected_count']} unexpected of {res.get('element_count')}"
    return {
        "suite": suite,
        "expectation": cfg.type,
        "kwargs": {k: v for k, v in cfg.kwargs.items() if k not in ("batch_id", "result_format")},
        "success": bool(result.success),
        "observed": observed,
    }


# --------------------------------------------------------------------------- entry point


def validate_tables(
    inter: pd.DataFrame,
    items: pd.DataFrame,
    root: Path,
    docs_dir: Path,
    *,
    k: int,
    max_bad_share: float,
    image_rule: ImageRule | None = None,
    image_folders: tuple[Path, ...] | None = None,
    max_missing_text_share: float = 0.0,
    text_expected: bool | None = None,
    n_users: int | None = None,
) -> ValidationReport:
    """Run every suite; build the Data Docs under ``docs_dir``; return the report.

    Args:
        inter: ``interactions.parquet`` contents.
        items: ``items.parquet`` contents.
        root: project root (image paths are relative to it).
        docs_dir: where the Data Docs HTML goes (created).
        k: the k-core the data must satisfy.
        max_bad_share: tolerated share of items whose image is unusable.
        image_rule: the size limits (shared with preprocess; default: permissive).
        image_folders: where images may be read from (None = anywhere).
        max_missing_text_share: tolerated share of items missing each text column.
        text_expected: whether ingest read a metadata file (None = unknown: checks text only when
            some item has text).
        n_users: number of users from ``user_map.csv`` (default: max user id + 1).
    """
    n_users = int(n_users if n_users is not None else (inter["user_id"].max() + 1 if len(inter) else 0))
    n_items = int(inter["item_id"].max() + 1) if len(inter) else 0
    items_t = item_table(items, inter)
    check_text = bool(items_t["has_text"].any()) if text_expected is None else text_expected
    frames = {"interactions": inter, "users": user_table(inter, n_users), "items": items_t}
    images = image_status(items, root, image_rule or ImageRule(), image_folders)
    has_images = bool(images["image_path"].notna().any())
    if has_images:
        frames["images"] = images
    suites = _suites(inter, items, n_users, n_items, k, check_text, max_bad_share, max_missing_text_share)
    ctx = _context(docs_dir)
    failures, per_suite, rows = [], {}, []
    for name, frame in frames.items():
        result = _run_suite(ctx, name, suites[name], frame)
        failed = [r for r in result.results if not r.success]
        per_suite[name] = {"evaluated": len(result.results), "failed": len(failed)}
        failures += [describe_failure(name, r, frame) for r in failed]
        rows += [expectation_row(name, r) for r in result.results]
    ctx.build_data_docs(site_names=[DOCS_SITE])  # once: rendering dominates the run time
    counts = images["status"].value_counts()
    bad = int(len(images) - counts.get(STATUS_OK, 0))
    summary = {
        "success": not failures,
        "expectations_evaluated": sum(s["evaluated"] for s in per_suite.values()),
        "expectations_failed": sum(s["failed"] for s in per_suite.values()),
        "suites": per_suite,
        "users": n_users,
        "items": n_items,
        "interactions": len(inter),
        "images_checked": has_images,
        **{f"images_{s}": int(counts.get(s, 0)) for s in STATUSES},
        "image_bad_share": bad / len(images) if len(images) else 0.0,
    }
    warnings = (
        _image_warnings(images, has_images) if not any(f.startswith("images:") for f in failures) else []
    )
    return ValidationReport(summary, failures, warnings, rows)


def _image_warnings(images: pd.DataFrame, has_images: bool) -> list[str]:
    if not has_images:
        return ["the catalog has no image paths; image checks skipped"]
    bad = images[images["status"] != STATUS_OK]
    if bad.empty:
        return []
    by_status = bad.groupby("status")["item_id"].apply(lambda s: s.head(N_EXAMPLES).tolist()).to_dict()
    return [
        f"{len(bad)} of {len(images)} items have an unusable image (within the tolerated share): "
        + "; ".join(
            f"{s}: {int((bad['status'] == s).sum())} (e.g. item_id {ids})" for s, ids in by_status.items()
        )
    ]
