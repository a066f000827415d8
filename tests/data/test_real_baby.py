"""Real Amazon Baby data: the committed 249-row official sample, and (when present) the full
``baby.inter`` of ``../shared/data/amazon/baby`` through the ``shared_baby`` fixture."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cliper.config import IngestConfig, Params
from cliper.data.amazon import read_meta
from cliper.data.split import split_counts
from cliper.stages import ingest as ingest_stage
from cliper.stages import validate as validate_stage

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SAMPLE = FIXTURES / "baby_official_sample_users0-24.inter"
META_SAMPLE = FIXTURES / "meta-baby.sample_items0-4.jsonl"
BABY = {"users": 19445, "items": 7050, "interactions": 160792, "train": 118551, "valid": 20559, "test": 21682}
README_SEED = 20240501


def _mmrec_params(raw_dir: Path, inter_file: str, **kw) -> Params:
    return Params(ingest=IngestConfig(source="mmrec", raw_dir=str(raw_dir), inter_file=inter_file, **kw))


def _per_user_counts(df: pd.DataFrame) -> pd.DataFrame:
    return pd.crosstab(df["user_id"], df["x_label"]).reindex(columns=[0, 1, 2], fill_value=0)


def test_official_sample_keeps_labels_ratings_and_order(tmp_path: Path):
    raw = pd.read_csv(SAMPLE, sep="\t")
    ingest_stage.run(_mmrec_params(FIXTURES, SAMPLE.name, k_core=1), tmp_path)
    out = tmp_path / "data" / "ingested"
    stats = json.loads((out / "stats.json").read_text())
    assert (stats["users"], stats["interactions"]) == (25, 249)
    assert stats["items"] == raw["itemID"].nunique()
    inter = pd.read_parquet(out / "interactions.parquet")
    item_map = pd.read_csv(out / "item_map.csv", dtype={"asin": str})
    # Item ids are not contiguous in the sample: they are ranked in their integer order.
    assert item_map["asin"].astype(int).is_monotonic_increasing
    back = inter.assign(
        userID=inter["user_id"], itemID=item_map["asin"].astype(int).to_numpy()[inter["item_id"]]
    )
    merged = raw.merge(back, on=["userID", "itemID"], suffixes=("_raw", ""))
    assert len(merged) == 249
    assert (merged["x_label_raw"] == merged["x_label"]).all()
    assert (
        np.allclose(merged["rating_raw"], merged["rating"])
        and (merged["timestamp_raw"] == merged["timestamp"]).all()
    )


def test_official_labels_follow_the_split_rule_and_regeneration_matches_counts(tmp_path: Path):
    raw = pd.read_csv(SAMPLE, sep="\t").rename(columns={"userID": "user_id"})
    official = _per_user_counts(raw)
    train, valid, test = split_counts(official.sum(axis=1).to_numpy())
    assert (official[0].to_numpy() == train).all() and (official[1].to_numpy() == valid).all()
    assert (official[2].to_numpy() == test).all()
    ingest_stage.run(_mmrec_params(FIXTURES, SAMPLE.name, k_core=1, keep_existing_split=False), tmp_path)
    regenerated = _per_user_counts(pd.read_parquet(tmp_path / "data" / "ingested" / "interactions.parquet"))
    assert (regenerated.to_numpy() == official.to_numpy()).all()


def test_real_meta_sample_parses():
    meta = read_meta(META_SAMPLE).set_index("asin")
    assert meta.index.tolist() == ["097293751X", "9729375011", "B00000IZQI", "B00000J3LL", "B00002JV9S"]
    assert "&reg;" in meta.loc["097293751X", "title"] and meta.loc["097293751X", "price"] == 17.0
    assert pd.isna(meta.loc["9729375011", "brand"])
    assert json.loads(meta.loc["097293751X", "categories"]) == [["Baby"]]


@pytest.mark.real_data
@pytest.mark.parametrize("keep", [True, False])
def test_full_baby_counts_and_split(shared_baby: Path, tmp_path: Path, keep: bool):
    params = _mmrec_params(shared_baby, "baby.inter", keep_existing_split=keep, split_seed=README_SEED)
    result = ingest_stage.run(params, tmp_path)
    assert {k: result.metrics[k] for k in BABY} == BABY
    inter = pd.read_parquet(tmp_path / "data" / "ingested" / "interactions.parquet")
    raw = pd.read_csv(shared_baby / "baby.inter", sep="\t").sort_values(["userID", "itemID"])
    # ids are already 0-based and contiguous: kept; regeneration reproduces the file's labels exactly
    assert (inter["user_id"].to_numpy() == raw["userID"].to_numpy()).all()
    assert (inter["item_id"].to_numpy() == raw["itemID"].to_numpy()).all()
    assert (inter["x_label"].to_numpy() == raw["x_label"].to_numpy()).all()


@pytest.mark.real_data
def test_full_baby_id_maps_and_validation(shared_baby: Path, tmp_path: Path):
    if not (shared_baby / "i_id_mapping.csv").exists():
        pytest.skip("MMRec id maps not in the shared folder")
    params = _mmrec_params(
        shared_baby, "baby.inter", item_map="i_id_mapping.csv", user_map="u_id_mapping.csv"
    )
    ingest_stage.run(params, tmp_path)
    out = tmp_path / "data" / "ingested"
    item_map = pd.read_csv(out / "item_map.csv", dtype={"asin": str})
    assert item_map["asin"].is_monotonic_increasing and item_map["asin"].iloc[0] == "097293751X"
    assert pd.read_csv(out / "user_map.csv")["user_id"].iloc[0] == "A1HK2FQW6KXQB2"
    items = pd.read_parquet(out / "items.parquet")
    assert items["title"].isna().all() and items["image_path"].isna().all()  # no meta, no images
    result = validate_stage.run(replace(params, validate=replace(params.validate, k_core=5)), tmp_path)
    assert result.metrics["expectations_failed"] == 0 and result.metrics["users"] == BABY["users"]
    assert any("no image paths" in w for w in result.warnings)
