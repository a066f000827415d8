"""GX suites on a tiny ingested catalog: passes when clean, names the expectation when not."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cliper import io
from cliper.errors import ValidationFailed
from cliper.stages import ingest as ingest_stage
from cliper.stages import validate as validate_stage


@pytest.fixture
def ingested(tiny_root: Path, make_params) -> Path:
    ingest_stage.run(make_params(), tiny_root)
    return tiny_root


def _rewrite(root: Path, name: str, change) -> None:
    path = root / "data" / "ingested" / name
    io.write_parquet(path, change(pd.read_parquet(path)))


def test_ingest_tiny_catalog_outputs(ingested: Path, tiny_shape):
    N_USERS, N_ITEMS = tiny_shape["users"], tiny_shape["items"]  # noqa: N806
    out = ingested / "data" / "ingested"
    stats = json.loads((out / "stats.json").read_text())
    assert stats["users"] == N_USERS and stats["items"] == N_ITEMS  # sparse user and item dropped
    assert stats["interactions"] == N_USERS * tiny_shape["per_user"] and stats["source"] == "amazon2014"
    assert stats["train"] + stats["valid"] + stats["test"] == stats["interactions"]
    inter = pd.read_parquet(out / "interactions.parquet")
    assert {c: str(t) for c, t in inter.dtypes.items()} == {
        "user_id": "int64",
        "item_id": "int64",
        "x_label": "int8",
        "rating": "float32",
        "timestamp": "int64",
    }
    items = pd.read_parquet(out / "items.parquet")
    assert items["item_id"].tolist() == list(range(N_ITEMS))
    assert items["image_path"].tolist()[0] == "raw/images/B000.jpg"
    assert items["title"].iloc[1] == "Item 1 &amp; friends" and pd.isna(items["brand"].iloc[0])
    assert json.loads(items["categories"].iloc[2]) == [["Baby", "Toys"], ["Gift 2"]]
    assert pd.read_csv(out / "item_map.csv")["asin"].tolist() == [f"B{i:03d}" for i in range(N_ITEMS)]
    assert pd.read_csv(out / "user_map.csv").columns.tolist() == ["user_id", "user_index"]


def test_validate_passes_and_writes_reports(ingested: Path, make_params, tiny_shape):
    result = validate_stage.run(make_params(), ingested)
    summary = json.loads((ingested / "reports" / "validate" / "summary.json").read_text())
    assert summary["success"] is True and summary["expectations_failed"] == 0
    assert summary["expectations_evaluated"] >= 15 and set(summary["suites"]) == {
        "interactions",
        "users",
        "items",
        "images",
    }
    assert summary["images_ok"] == tiny_shape["items"] and result.warnings == []
    assert (ingested / "reports" / "validate" / "data_docs" / "index.html").is_file()


def test_validate_names_duplicate_pairs_and_missing_train(ingested: Path, make_params):
    def damage(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[df["user_id"] == 3, "x_label"] = 2  # user 3 loses every train row
        return pd.concat([df, df.iloc[[0]]], ignore_index=True)  # duplicated (user, item)

    _rewrite(ingested, "interactions.parquet", damage)
    with pytest.raises(ValidationFailed) as err:
        validate_stage.run(make_params(), ingested)
    msg = str(err.value)
    assert "expect_compound_columns_to_be_unique" in msg and "'user_id': 0" in msg
    assert "n_train" in msg and "'user_id': 3" in msg
    summary = json.loads((ingested / "reports" / "validate" / "summary.json").read_text())
    assert summary["success"] is False and summary["expectations_failed"] == 2


def test_validate_items_mismatch_bad_label_and_missing_text(ingested: Path, make_params):
    _rewrite(
        ingested,
        "items.parquet",
        lambda df: df.assign(
            title=df["title"].where(df["item_id"] != 2),
            brand=None,
            description=None,
            categories=df["categories"].where(df["item_id"] != 2),
        ).iloc[:-1],
    )
    _rewrite(
        ingested, "interactions.parquet", lambda df: df.assign(x_label=df["x_label"].mask(df.index == 5, 7))
    )
    with pytest.raises(ValidationFailed) as err:
        validate_stage.run(make_params(), ingested)
    msg = str(err.value)
    assert "expect_table_row_count_to_equal" in msg  # items table shorter than the item id range
    assert "has_text" in msg and "'item_id': 2" in msg
    assert "x_label" in msg and "'x_label': 7" in msg


def test_validate_k_core_violation(ingested: Path, make_params):
    with pytest.raises(ValidationFailed, match="n_interactions"):
        validate_stage.run(make_params(k_core=7), ingested)
