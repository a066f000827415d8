"""Unit tests of the ingest library: loose-JSON parsing, cleaning, k-core, id maps, images."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cliper.data.amazon import parse_loose_record, read_meta
from cliper.data.ingest import assign_ids, clean, find_images, k_core


def naive_k_core(pairs: list[tuple[int, int]], k: int) -> set[tuple[int, int]]:
    """Reference: drop one under-k node's edges at a time until none is left."""
    edges = set(pairs)
    while True:
        users = pd.Series([u for u, _ in edges]).value_counts()
        items = pd.Series([i for _, i in edges]).value_counts()
        bad = {(u, i) for u, i in edges if users[u] < k or items[i] < k}
        if not bad:
            return edges
        edges -= bad


def test_k_core_reaches_fixed_point_with_cascade():
    # A 3x3 complete block (2-core holds) plus a chain that unravels only over several rounds.
    pairs = [(u, i) for u in range(3) for i in range(3)]
    pairs += [(10, 10), (10, 11), (11, 11), (11, 12), (12, 12)]
    users = np.array([p[0] for p in pairs])
    items = np.array([p[1] for p in pairs])
    keep = k_core(users, items, 2)
    kept = {p for p, m in zip(pairs, keep, strict=True) if m}
    assert kept == {(u, i) for u in range(3) for i in range(3)}
    assert kept == naive_k_core(pairs, 2)


def test_k_core_matches_naive_on_random_graph():
    rng = np.random.default_rng(0)
    pairs = sorted(
        {(int(u), int(i)) for u, i in zip(rng.integers(0, 40, 400), rng.integers(0, 30, 400), strict=True)}
    )
    users = np.array([p[0] for p in pairs])
    items = np.array([p[1] for p in pairs])
    for k in (3, 5, 8):
        keep = k_core(users, items, k)
        kept = {p for p, m in zip(pairs, keep, strict=True) if m}
        assert kept == naive_k_core(pairs, k)
        if kept:  # the result really is a k-core
            assert pd.Series([u for u, _ in kept]).value_counts().min() >= k
            assert pd.Series([i for _, i in kept]).value_counts().min() >= k


def test_k_core_of_one_keeps_everything():
    assert k_core(np.array([1, 2]), np.array([3, 4]), 1).all()


def test_clean_drops_missing_ids_and_keeps_latest_duplicate():
    df = pd.DataFrame(
        {
            "user_raw": ["a", "a", None, "b", "", "a"],
            "asin": ["x", "x", "y", "y", "z", "y"],
            "rating": [1.0, 5.0, 3.0, 4.0, 2.0, 2.0],
            "timestamp": [20, 10, 5, 5, 5, 1],
        }
    )
    out = clean(df)
    assert len(out) == 3
    assert out.set_index(["user_raw", "asin"]).loc[("a", "x"), "rating"] == 1.0  # timestamp 20 wins


def test_parse_loose_record_python_literal_and_json():
    rec = parse_loose_record(
        "{'asin': 'B1', 'price': 3.5, 'categories': [['Baby', \"Kids'\"]], 'brand': None}\n", "m.json.gz", 1
    )
    assert rec == {"asin": "B1", "price": 3.5, "categories": [["Baby", "Kids'"]], "brand": None}
    assert parse_loose_record('{"asin": "B2", "brand": null}', "m", 2) == {"asin": "B2", "brand": None}


def test_read_meta_loose_gzip(tmp_path: Path):
    path = tmp_path / "meta_X.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(
            "{'asin': 'B2', 'title': 'Tracker&reg;', 'categories': [['Baby'], ['A', 'B']], 'price': 17.0}\n"
        )
        fh.write("\n{'asin': 'B1', 'brand': 'Acme', 'description': 'd', 'imUrl': 'http://x'}\n")
    meta = read_meta(path)
    assert list(meta.columns) == ["asin", "title", "brand", "description", "categories", "price"]
    row = meta.set_index("asin").loc["B2"]
    assert row["title"] == "Tracker&reg;"  # HTML entities kept as in the source
    assert json.loads(row["categories"]) == [["Baby"], ["A", "B"]]
    assert row["price"] == 17.0 and pd.isna(row["brand"])
    other = meta.set_index("asin").loc["B1"]
    assert pd.isna(other["categories"]) and np.isnan(other["price"]) and other["brand"] == "Acme"


def test_assign_ids_sorted_asin_and_user_order():
    df = pd.DataFrame({"user_raw": ["zed", "amy", "amy", "bob"], "asin": ["B9", "B10", "A1", "B9"]})
    df["user_key"], df["item_key"] = df["user_raw"], df["asin"]
    out, user_map, item_map = assign_ids(df)
    assert item_map["asin"].tolist() == ["A1", "B10", "B9"]  # code-point order, as MMRec's map
    assert item_map["item_id"].tolist() == [0, 1, 2]
    assert user_map["user_raw"].tolist() == ["amy", "bob", "zed"]
    assert out["item_id"].tolist() == [2, 1, 0, 2] and out["user_id"].tolist() == [2, 0, 0, 1]


def test_assign_ids_keeps_contiguous_integer_ids_and_ranks_gaps():
    df = pd.DataFrame({"user_key": [2, 0, 1, 0], "item_key": [1, 0, 2, 2]})
    df["user_raw"], df["asin"] = df["user_key"].astype(str), df["item_key"].astype(str)
    out, _, _ = assign_ids(df)
    assert out["user_id"].tolist() == [2, 0, 1, 0] and out["item_id"].tolist() == [1, 0, 2, 2]
    gaps = pd.DataFrame(
        {"user_key": [7, 3], "item_key": [40, 9], "user_raw": ["7", "3"], "asin": ["40", "9"]}
    )
    out, user_map, item_map = assign_ids(gaps)
    assert out["user_id"].tolist() == [1, 0] and out["item_id"].tolist() == [1, 0]
    assert item_map["asin"].tolist() == ["9", "40"]  # integer order kept for mmrec ids


def test_find_images_relative_to_root(tmp_path: Path):
    images = tmp_path / "raw" / "images"
    images.mkdir(parents=True)
    (images / "A.jpg").write_bytes(b"x")
    (images / "B.PNG").write_bytes(b"x")
    (images / "notes.txt").write_text("x")
    paths = find_images(images, pd.Series(["A", "B", "C"]), tmp_path)
    assert paths.tolist()[:2] == ["raw/images/A.jpg", "raw/images/B.PNG"]
    assert pd.isna(paths.iloc[2])
    outside = find_images(images, pd.Series(["A"]), tmp_path / "elsewhere")
    assert Path(outside.iloc[0]).is_absolute()


@pytest.mark.parametrize("missing_dir", [True, False])
def test_find_images_without_folder(tmp_path: Path, missing_dir: bool):
    folder = tmp_path / "nope" if missing_dir else None
    assert find_images(folder, pd.Series(["A"]), tmp_path).isna().all()
