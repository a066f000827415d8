"""The fetch stage: off by default (offline demo), report + metrics, preprocess uses its images."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from cliper.config import FetchConfig, IngestConfig, Params
from cliper.data.fetch_plan import REPORT_COLUMNS, apply_report, plan, read_report
from cliper.errors import DataError
from cliper.stages import fetch as fetch_stage
from tests.image_server import ImageServer, jpeg_bytes


def _project(root: Path, server: ImageServer) -> Params:
    """Six ingested items: a local image, no URL, a good URL, a 404, an HTML page, a "no image" icon."""
    (root / "data/raw/images").mkdir(parents=True)
    (root / "data/raw/images/L.jpg").write_bytes(jpeg_bytes("L"))
    items = pd.DataFrame({"item_id": range(6), "asin": ["L", "N", "G", "M", "H", "P"],
                          "image_path": ["data/raw/images/L.jpg", None, None, None, None, None]})
    (root / "data/ingested").mkdir(parents=True)
    items.to_parquet(root / "data/ingested/items.parquet", index=False)
    pd.DataFrame({"asin": ["L", "G", "M", "H", "P"],
                  "imUrl": [server.url("img", "L.jpg"), server.url("img", "G.jpg"),
                            server.url("missing", "M.jpg"), server.url("html", "H.jpg"),
                            server.url("img", "x-site/icons/no-img-sm.gif")]}).to_csv(
        root / "urls.csv", index=False)
    fetch = FetchConfig(enabled=True, urls="urls.csv", timeout_s=2.0, retries=1, backoff_s=0.01,
                        progress=False, max_failed_share=1.0)
    return Params(ingest=IngestConfig(raw_dir="data/raw"), fetch=fetch)


def test_disabled_fetch_requests_nothing_and_writes_an_empty_report(tmp_path: Path):
    result = fetch_stage.run(Params(), tmp_path)  # no items.parquet: nothing may be read
    assert result.metrics == {"enabled": False}
    assert json.loads((tmp_path / "reports/fetch/metrics.json").read_text()) == {"enabled": False}
    report = pd.read_csv(tmp_path / "reports/fetch/report.csv")
    assert list(report.columns) == list(REPORT_COLUMNS) and report.empty
    assert (tmp_path / "data/images").is_dir()


def test_enabled_fetch_reports_every_item_and_preprocess_gets_the_images(tmp_path: Path):
    with ImageServer() as server:
        params = _project(tmp_path, server)
        result = fetch_stage.run(params, tmp_path)
        assert server.count("img", "L.jpg") == 0, "an item with a local image is not fetched"
        server_requests = sum(server.hits.values())
    m = result.metrics
    assert (m["ok"], m["failed"], m["no_url"], m["local"], m["items"]) == (1, 2, 2, 1, 6)
    assert m["failed_by_reason"] == {"html": 1, "http_404": 1}
    assert json.loads((tmp_path / "reports/fetch/metrics.json").read_text()) == m
    report = read_report(tmp_path / "reports/fetch/report.csv")
    assert report["outcome"].tolist() == ["local", "no_url", "ok", "failed", "failed", "no_url"]
    assert report.loc[5, "reason"] == "placeholder_url" and server_requests == 3  # G, M and H only
    assert report.loc[2, "path"] == "data/images/G.jpg" and (tmp_path / "data/images/G.jpg").is_file()
    assert report.loc[2, "bytes"] == (tmp_path / "data/images/G.jpg").stat().st_size
    items = pd.read_parquet(tmp_path / "data/ingested/items.parquet")
    filled, reasons = apply_report(items, report)
    paths = filled["image_path"]
    assert paths[0] == "data/raw/images/L.jpg" and pd.isna(paths[1]) and paths[2] == "data/images/G.jpg"
    assert paths[3:].isna().all() and reasons.index.tolist() == [3, 4]
    assert reasons.index.tolist() == [3, 4] and reasons[3].startswith("fetch failed: http_404")


def test_too_many_failures_fail_the_stage_after_writing_the_report(tmp_path: Path):
    with ImageServer() as server:
        params = _project(tmp_path, server)
        params = dataclasses.replace(params, fetch=dataclasses.replace(params.fetch, max_failed_share=0.5))
        with pytest.raises(DataError, match="fetch.max_failed_share"):
            fetch_stage.run(params, tmp_path)
    assert (tmp_path / "reports/fetch/report.csv").is_file()


def test_meta_urls_without_a_meta_file_name_the_params_to_set(tmp_path: Path):
    with ImageServer() as server:
        params = _project(tmp_path, server)
    params = dataclasses.replace(params, ingest=IngestConfig(source="mmrec", inter_file="x.inter"),
                                 fetch=dataclasses.replace(params.fetch, urls="meta"))
    with pytest.raises(DataError, match="ingest.meta_file"):
        fetch_stage.run(params, tmp_path)


@pytest.mark.real_data
def test_cliper_url_table_of_real_baby_is_read(shared_baby: Path):
    from cliper.data.fetch_plan import read_url_table

    urls = read_url_table(shared_baby / "baby_url.csv", "imUrl")
    assert len(urls) == 7050 - 13 and urls["asin"].is_unique  # 13 Baby items have no URL
    items = pd.DataFrame({"item_id": range(len(urls)), "asin": urls["asin"], "image_path": None})
    jobs, skipped = plan(items, urls, FetchConfig().skip_url_patterns)
    assert len(skipped) == 6 and set(skipped["reason"]) == {"placeholder_url"}  # Amazon's "no image" icon
    assert all(j.url.startswith("http://ecx.images-amazon.com/images/I/") for j in jobs)
