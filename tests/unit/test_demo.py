"""The embedded demo catalog: determinism, Amazon-2014 formats, images, 5-core and real signal."""

from __future__ import annotations

import ast
import csv
import gzip
import hashlib
import html
import json
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cliper.config import ConfigError, DemoConfig, Params
from cliper.demo.catalog import write_demo_catalog
from cliper.demo.vocab import MATERIALS, SHAPES
from cliper.stages import StageResult, run_stage

SMALL = DemoConfig(name="Tiny", seed=7, n_items=80, n_users=120, image_size=32)


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "raw"
    write_demo_catalog(replace(SMALL, out_dir=str(out)))
    return out


@pytest.fixture(scope="module")
def truth(catalog: Path) -> dict:
    return json.loads((catalog / "truth.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def meta(catalog: Path) -> list[dict]:
    with gzip.open(catalog / "meta_Tiny.json.gz", "rt", encoding="utf-8") as fh:
        return [ast.literal_eval(line) for line in fh]


@pytest.fixture(scope="module")
def reviews(catalog: Path) -> list[dict]:
    with gzip.open(catalog / "reviews_Tiny_5.json.gz", "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def test_same_seed_gives_byte_identical_files(tmp_path: Path, catalog: Path) -> None:
    write_demo_catalog(replace(SMALL, out_dir=str(tmp_path / "again")))
    assert _hashes(tmp_path / "again") == _hashes(catalog)
    write_demo_catalog(replace(SMALL, out_dir=str(tmp_path / "other"), seed=8))
    assert _hashes(tmp_path / "other")["meta_Tiny.json.gz"] != _hashes(catalog)["meta_Tiny.json.gz"]


def test_meta_is_the_2014_loose_format(catalog: Path, meta: list[dict], truth: dict) -> None:
    with gzip.open(catalog / "meta_Tiny.json.gz", "rt", encoding="utf-8") as fh:
        first = fh.readline()
    with pytest.raises(json.JSONDecodeError):
        json.loads(first)  # single-quoted Python literal, like the real dump
    assert len(meta) == truth["counts"]["n_items"] == 80
    assert sorted(m["asin"] for m in meta) == sorted(truth["items"])
    for m in meta:
        assert len(m["asin"]) == 10 and m["asin"].isalnum()
        paths = m["categories"]
        assert isinstance(paths, list) and all(isinstance(p, list) for p in paths)
        assert all(isinstance(c, str) for p in paths for c in p)
        assert paths[0][-1] == truth["items"][m["asin"]]["category"]
        assert m.get("price") is None or isinstance(m["price"], float)


def test_reviews_and_ratings_hold_the_same_pairs(catalog: Path, reviews: list[dict], truth: dict) -> None:
    lines = (catalog / "ratings_Tiny.csv").read_text(encoding="utf-8").splitlines()
    rows = list(csv.reader(lines))
    assert all(len(r) == 4 for r in rows)
    assert rows[0][0] != "user" and not rows[0][0].startswith("reviewer")  # no header
    assert [(r[0], r[1], float(r[2]), int(r[3])) for r in rows] == [
        (v["reviewerID"], v["asin"], v["overall"], v["unixReviewTime"]) for v in reviews
    ]
    for v in reviews:
        assert {"reviewerID", "asin", "overall", "unixReviewTime", "summary", "reviewText"} <= set(v)
        assert v["overall"] in (1.0, 2.0, 3.0, 4.0, 5.0) and v["unixReviewTime"] % 86400 == 0
    pairs = [(v["reviewerID"], v["asin"]) for v in reviews]
    assert len(pairs) == len(set(pairs)) == truth["counts"]["n_interactions"]


def test_images_decode_except_the_designated_ones(catalog: Path, truth: dict) -> None:
    missing, broken = set(truth["missing_images"]), set(truth["corrupt_images"])
    assert 1 <= len(missing) and 1 <= len(broken) <= 2 and not missing & broken
    for asin, item in truth["items"].items():
        path = catalog / "images" / f"{asin}.jpg"
        assert item["image"] == ("missing" if asin in missing else "corrupt" if asin in broken else "ok")
        if asin in missing:
            assert not path.exists()
        elif asin in broken:
            with pytest.raises(OSError):
                with Image.open(path) as im:
                    im.convert("RGB")
        else:
            with Image.open(path) as im:
                assert im.format == "JPEG" and im.size == (32, 32)
                im.convert("RGB")


def test_image_shows_the_item_colour(catalog: Path, truth: dict) -> None:
    from cliper.demo.vocab import COLOURS

    hits = 0
    ok = [a for a, it in truth["items"].items() if it["image"] == "ok" and it["pattern"] == "plain"]
    for asin in ok:
        pixels = np.asarray(Image.open(catalog / "images" / f"{asin}.jpg").convert("RGB"), dtype=float)
        centre = pixels[12:20, 12:20].reshape(-1, 3).mean(axis=0)
        nearest = min(COLOURS, key=lambda c: np.linalg.norm(np.array(COLOURS[c][0]) - centre))
        hits += nearest == truth["items"][asin]["colour"]
    assert hits >= 0.8 * len(ok)


def test_image_badge_identifies_the_brand(catalog: Path, truth: dict) -> None:
    """The logo badge (top-right corner) is the same for one brand and differs between brands."""
    corner: dict[str, list[np.ndarray]] = defaultdict(list)
    for asin, item in truth["items"].items():
        if item["image"] == "ok":
            pixels = np.asarray(Image.open(catalog / "images" / f"{asin}.jpg").convert("RGB"), dtype=float)
            corner[item["brand"]].append(pixels[2:9, 23:30].reshape(-1))  # inside the badge at 32 px
    means = {brand: np.mean(rows, axis=0) for brand, rows in corner.items()}
    within = np.mean([np.abs(r - means[b]).mean() for b, rows in corner.items() for r in rows])
    between = np.mean([np.abs(means[a] - means[b]).mean() for a in means for b in means if a < b])
    assert len(means) >= 5 and between > 3 * within, (within, between)


def test_every_user_and_item_survives_a_5_core(reviews: list[dict], truth: dict) -> None:
    users = Counter(v["reviewerID"] for v in reviews)
    items = Counter(v["asin"] for v in reviews)
    assert set(users) == set(truth["users"]) and set(items) == set(truth["items"])
    assert min(users.values()) >= 5 and min(items.values()) >= 5
    assert truth["counts"]["min_users_per_item"] >= 5


def test_text_has_the_real_catalog_quirks(meta: list[dict], truth: dict) -> None:
    text = " ".join(str(m.get(k) or "") for m in meta for k in ("title", "description", "brand"))
    assert "&amp;" in text and "&reg;" in text
    assert any(ord(ch) > 127 for ch in text)
    brands = [m.get("brand", "ABSENT") for m in meta]
    assert any(b in ("ABSENT", None, "") for b in brands) and truth["counts"]["missing_brand"] > 0
    assert any("description" not in m for m in meta)
    assert max(len(m.get("description", "").split()) for m in meta) > 100
    assert truth["counts"]["long_descriptions"] > 0
    for m in meta:  # titles never name shape or material (only image/description do)
        title = html.unescape(m.get("title", "")).lower()
        words = [w for forms in (*SHAPES.values(), *MATERIALS.values()) for w in forms]
        assert not [w for w in words if f" {w} " in f" {title} "], title


def test_users_items_carry_their_taste(reviews: list[dict], truth: dict) -> None:
    by_user = defaultdict(list)
    for v in reviews:
        by_user[v["reviewerID"]].append(v["asin"])
    items = truth["items"]
    for kind in truth["model"]["taste_types"]:
        matched, base = [], []
        for uid, user in truth["users"].items():
            if user["taste_type"] != kind:
                continue
            for attr, value in user["taste"].items():
                matched.append(np.mean([items[a][attr] == value for a in by_user[uid]]))
                base.append(np.mean([it[attr] == value for it in items.values()]))
        if matched:
            assert np.mean(matched) > 2.5 * np.mean(base), kind


def test_too_small_a_catalog_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="n_items"):
        write_demo_catalog(replace(SMALL, out_dir=str(tmp_path / "x"), scale=0.1))


def test_stage_writes_under_root_and_scale_multiplies(tmp_path: Path) -> None:
    params = Params(demo=replace(SMALL, out_dir="data/raw/demo", scale=1.5))
    result = run_stage("demo_data", params, tmp_path)
    assert isinstance(result, StageResult) and result.stage == "demo_data"
    assert result.metrics["n_items"] == 120 and result.metrics["n_users"] == 180
    assert (tmp_path / "data/raw/demo/meta_Tiny.json.gz").exists()
    assert Path(result.outputs["truth"]) == tmp_path / "data/raw/demo/truth.json"
