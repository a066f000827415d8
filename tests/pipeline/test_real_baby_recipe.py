"""The real-Amazon-Baby recipe: its params validate, and its offline part runs on real metadata.

``params/real_baby.yaml`` merged over ``params.yaml`` must load with the strict loader; then
ingest -> fetch -> preprocess run on the real 5-item Baby metadata sample (its real
``http://ecx.images-amazon.com/...`` URLs, served offline by a local HTTP proxy on 127.0.0.1)
with a small synthetic 5-core review file over those five items.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import pytest
import yaml

from cliper.clip.load import model_context, register_model_configs
from cliper.config import ConfigError
from cliper.recipes import merge_recipe
from cliper.stages import fetch as fetch_stage
from cliper.stages import ingest as ingest_stage
from cliper.stages import preprocess as preprocess_stage
from tests.image_server import ImageServer

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "params" / "real_baby.yaml"
META_SAMPLE = REPO / "tests" / "fixtures" / "meta-baby.sample_items0-4.jsonl"
N_USERS = 6


def test_recipe_merges_over_params_and_validates():
    _, params = merge_recipe(RECIPE, REPO / "params.yaml")
    ingest = params.ingest
    assert (ingest.name, ingest.interactions, ingest.source) == ("Baby", "reviews", "amazon2014")
    assert params.fetch.enabled and params.fetch.urls == "meta"
    assert params.clip.model == "LongCLIP-L-14" and params.clip.allow_download
    assert params.clip.pretrained == "hf-hub:BeichenZhang/LongCLIP-L/longclip-L.pt"
    register_model_configs()
    assert model_context(params.clip.model) == 248
    freedom = params.train.backbones["freedom"]
    assert (freedom["knn_k"], freedom["mm_image_weight"], params.train.device) == (5, 0.3, "cuda")
    defaults = yaml.safe_load((REPO / "cliper/models/configs/freedom.yaml").read_text())
    assert set(freedom) <= set(defaults), "every FREEDOM key of the recipe is a real model key"
    assert params.preprocess == merge_recipe(REPO / "params.yaml", REPO / "params.yaml")[1].preprocess


def test_a_broken_recipe_is_refused_naming_the_recipe_and_key(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("fetch:\n  concurrency: fast\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*fetch.concurrency"):
        merge_recipe(bad, REPO / "params.yaml")


def _raw_baby(raw: Path) -> list[dict]:
    """meta_Baby.json.gz = the real 5-item sample; reviews_Baby_5.json.gz = every user reviews all 5."""
    raw.mkdir(parents=True)
    meta = [json.loads(line) for line in META_SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    with gzip.open(raw / "meta_Baby.json.gz", "wt", encoding="utf-8") as fh:
        fh.write(META_SAMPLE.read_text(encoding="utf-8"))
    with gzip.open(raw / "reviews_Baby_5.json.gz", "wt", encoding="utf-8") as fh:
        for u in range(N_USERS):
            for j, item in enumerate(meta):
                fh.write(json.dumps({"reviewerID": f"AU{u:04d}", "asin": item["asin"], "overall": 5.0,
                                     "unixReviewTime": 1_300_000_000 + 86_400 * (u * 5 + j)}) + "\n")
    return meta


def test_ingest_fetch_preprocess_on_the_real_meta_sample(tmp_path: Path, monkeypatch):
    meta = _raw_baby(tmp_path / "data/raw/baby")
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    _, params = merge_recipe(RECIPE, tmp_path / "params.yaml")
    params = dataclasses.replace(params, fetch=dataclasses.replace(
        params.fetch, timeout_s=5.0, retries=1, backoff_s=0.01, progress=False, max_failed_share=0.5))
    failing = urlsplit(meta[3]["imUrl"]).path  # one image host answers 404
    with ImageServer(missing=frozenset({failing})) as proxy:
        for var in ("HTTP_PROXY", "http_proxy"):
            monkeypatch.setenv(var, proxy.base)  # httpx sends the real URLs to the local proxy
        for var in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(var, raising=False)
        ingest_stage.run(params, tmp_path)
        fetched = fetch_stage.run(params, tmp_path)
        requested = set(proxy.hits)
    assert requested == {urlsplit(m["imUrl"]).path for m in meta}, "the meta's own URLs were requested"
    assert (fetched.metrics["ok"], fetched.metrics["failed"], fetched.metrics["failed_by_reason"]) == (
        4, 1, {"http_404": 1})

    preprocess_stage.run(params, tmp_path)
    out = tmp_path / params.preprocess.out_dir
    images = pd.read_parquet(out / "images.parquet")
    items = pd.read_parquet(tmp_path / "data/ingested/items.parquet")
    assert items["asin"].tolist() == sorted(m["asin"] for m in meta)  # MMRec order: sorted ASINs
    bad_item = int(items.index[items["asin"] == meta[3]["asin"]][0])
    assert images.loc[images["item_id"] != bad_item, "status"].eq("ok").all()
    assert images.loc[images["item_id"] != bad_item, "path"].str.match(r"data/images/\w+\.jpg").all()
    missing = pd.read_csv(out / "missing_images.csv", dtype={"asin": str})
    assert missing["item_id"].tolist() == [bad_item] and missing["asin"].tolist() == [meta[3]["asin"]]
    assert missing["reason"][0].startswith("fetch failed: http_404 (http://ecx.images-amazon.com/")
    views = pd.read_parquet(out / "views.parquet")
    title = views[(views["item_id"] == 0) & (views["view"] == "title")]["text"].item()
    assert title == "The product title is Baby Tracker® - Daily Childcare Journal, Schedule Log."
    brand = views[(views["item_id"] == 1) & (views["view"] == "brand")]["text"].item()
    assert brand == "The product brand is Missing."  # brand: null in the real record
    long = views["n_tokens"] > 248
    assert long.any() and ((views["n_chunks"] > 1) == long).all(), "chunked at Long-CLIP's 248 tokens"


def test_cliper_recipe_writes_the_merged_params_file(tmp_path: Path):
    from typer.testing import CliRunner

    from cliper.cli import app
    from cliper.config import load_params

    out = tmp_path / "params.yaml"
    result = CliRunner().invoke(app, ["recipe", str(RECIPE), "--params", str(REPO / "params.yaml"),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert load_params(out) == merge_recipe(RECIPE, REPO / "params.yaml")[1]
    assert out.read_text().startswith("# Generated by `cliper recipe")
