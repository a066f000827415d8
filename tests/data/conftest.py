"""A tiny Amazon-2014-format catalog written into ``tmp_path`` for the data tests.

12 users x 8 items, every user rates 6 items (so the 5-core keeps them all), plus one user
with 2 ratings and one item with 1 rating that the 5-core must drop. Meta lines are loose
Python literals (single quotes), as in the real 2014 dumps; images are 40-pixel JPEGs.
"""

from __future__ import annotations

import gzip
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from cliper.config import IngestConfig, Params, ValidateConfig

N_USERS, N_ITEMS, PER_USER = 12, 8, 6
IMAGE_SIDE = 40


def asin(i: int) -> str:
    return f"B{i:03d}"


def write_catalog(raw: Path, name: str = "Tiny") -> Path:
    """Write meta, ratings and images for the tiny catalog under ``raw``."""
    (raw / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for u in range(N_USERS):
        for t in range(PER_USER):
            rows.append(f"U{u:02d},{asin((u + t) % N_ITEMS)},{1 + (u + t) % 5}.0,{1400000000 + 100 * u + t}")
    rows += [
        f"Usparse,{asin(0)},4.0,1400000000",
        f"Usparse,{asin(1)},5.0,1400000001",
        f"U00,{asin(N_ITEMS)},3.0,1400000002",
    ]  # asin(N_ITEMS): an item with one rating
    (raw / f"ratings_{name}.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    lines = []
    for i in range(N_ITEMS + 1):
        brand = "None" if i % 3 == 0 else repr(f"Brand{i}")
        lines.append(
            f"{{'asin': '{asin(i)}', 'title': 'Item {i} &amp; friends', 'brand': {brand}, "
            f"'categories': [['Baby', 'Toys'], ['Gift {i}']], 'price': {10 + i}.5, "
            f"'description': \"It's item {i}\", 'related': {{'also_bought': ['X1']}}}}"
        )
    with gzip.open(raw / f"meta_{name}.json.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    for i in range(N_ITEMS + 1):
        Image.new("RGB", (IMAGE_SIDE, IMAGE_SIDE), (20 * i, 100, 200)).save(raw / "images" / f"{asin(i)}.jpg")
    return raw


def tiny_params(raw_dir: str = "raw", **validate: object) -> Params:
    """Params pointing ingest at ``raw_dir`` (relative to the project root)."""
    ingest = IngestConfig(raw_dir=raw_dir, name="Tiny", k_core=5)
    return Params(ingest=ingest, validate=replace(ValidateConfig(k_core=5, min_image_size=32), **validate))


@pytest.fixture
def tiny_shape() -> dict[str, int]:
    """Users, items and ratings per user that survive the 5-core."""
    return {"users": N_USERS, "items": N_ITEMS, "per_user": PER_USER}


@pytest.fixture
def make_params():
    """``make_params(raw_dir="raw", **validate_overrides) -> Params`` for the tiny catalog."""
    return tiny_params


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    """A project root with the tiny catalog in ``raw/``."""
    write_catalog(tmp_path / "raw")
    return tmp_path
