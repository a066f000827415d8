"""Item views: prompt templates, missing fields, global sentence, token chunking, image loading."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import open_clip
import pandas as pd
import pytest
from PIL import Image

from cliper.config import PreprocessConfig
from cliper.errors import CliperError, DataError
from cliper.views.images import (
    PLACEHOLDER_RGB,
    STATUS_CORRUPT,
    STATUS_MISSING,
    STATUS_OK,
    build_manifest,
    missing_list,
    open_rgb,
    placeholder,
)
from cliper.views.prompts import BpeTokenizer, build_views, chunk_tokens, count_tokens, view_prefix

CFG = PreprocessConfig()


def _items(**fields) -> pd.DataFrame:
    row = {
        "item_id": 0,
        "asin": "B0",
        "title": None,
        "brand": None,
        "description": None,
        "categories": None,
        "price": None,
        "image_path": None,
    }
    row.update(fields)
    return pd.DataFrame([row])


def _prompts(items: pd.DataFrame, cfg: PreprocessConfig = CFG) -> dict[str, str]:
    views = build_views(items, cfg)
    return dict(zip(views["view"], views["text"], strict=True))


def test_present_fields_follow_the_spec_templates():
    items = _items(
        title="Soft Baby Blanket &amp; Pillow",
        brand="Acme&reg;",
        categories=json.dumps([["Baby", "Nursery", "Bedding"], ["Other"]]),
        description="Warm.\nMachine   washable.",
    )
    p = _prompts(items)
    assert p["title"] == "The product title is Soft Baby Blanket & Pillow."
    assert p["brand"] == "The product brand is Acme®."
    assert p["categories"] == "The product categories are Baby Nursery Bedding."
    assert p["description"] == "The product description is Warm. Machine washable."
    assert p["global"] == (
        "The product titled Soft Baby Blanket & Pillow, by the brand Acme®, in the categories "
        "Baby Nursery Bedding, described as Warm. Machine washable."
    )
    assert "{" not in p["global"]


@pytest.mark.parametrize("value", [None, "", "   ", "x", " y "])
def test_missing_fields_use_missing_prompts(value):
    p = _prompts(_items(title=value, brand=value, description=value, categories=None))
    assert p["title"] == "The product title is Missing."
    assert p["brand"] == "The product brand is Missing."
    assert p["categories"] == "The product categories are Missing."
    assert p["description"] == "The product description is Missing."
    assert p["global"] == "The product is Missing."


def test_empty_category_lists_are_missing_and_global_keeps_present_fields():
    p = _prompts(_items(title="Bottle", categories=json.dumps([[]])))
    assert p["categories"] == "The product categories are Missing."
    assert p["global"] == "The product titled Bottle."


def test_absent_columns_count_as_missing():
    items = pd.DataFrame({"item_id": [0, 1], "title": ["Cup", "Bowl"]})
    views = build_views(items, CFG)
    assert len(views) == 2 * len(CFG.views)
    assert (views.loc[views["view"] == "brand", "text"] == "The product brand is Missing.").all()


def test_views_and_templates_are_params():
    cfg = dataclasses.replace(
        CFG, views=["brand", "title"], templates={**CFG.templates, "brand": "Made by {value}."}
    )
    views = build_views(_items(title="Cup", brand="Acme"), cfg)
    assert views["view"].tolist() == ["brand", "title"]
    assert views["text"].tolist() == ["Made by Acme.", "The product title is Cup."]
    assert view_prefix("brand", cfg) == "Made by "


def test_bad_view_or_template_is_refused():
    with pytest.raises(CliperError, match="unknown view 'colour'"):
        build_views(_items(), dataclasses.replace(CFG, views=["colour"]))
    with pytest.raises(CliperError, match="title"):
        build_views(_items(), dataclasses.replace(CFG, templates={**CFG.templates, "title": "no slot"}))


def test_malformed_categories_name_the_item():
    with pytest.raises(DataError, match="item 0.*categories"):
        build_views(_items(categories="[[not json"), CFG)


@pytest.fixture(scope="module")
def tok() -> BpeTokenizer:
    return BpeTokenizer.from_open_clip(open_clip.get_tokenizer("ViT-B-32"), 77)


def test_short_prompt_is_one_chunk_matching_open_clip(tok):
    text = "The product title is Soft Blanket."
    (chunk,) = chunk_tokens(text, "The product title is ", tok)
    ref = open_clip.get_tokenizer("ViT-B-32")([text])[0]
    assert chunk == ref[: len(chunk)].tolist() and int(ref[len(chunk) :].abs().sum()) == 0


def test_long_prompt_is_chunked_on_tokens_with_prefix(tok):
    prefix = "The product description is "
    body = " ".join(f"word{i}" for i in range(200))
    chunks = chunk_tokens(prefix + body, prefix, tok)
    prefix_ids = tok.encode(prefix)
    assert len(chunks) > 1
    assert all(len(c) <= 77 and c[0] == tok.sot and c[-1] == tok.eot for c in chunks)
    assert all(c[1 : 1 + len(prefix_ids)] == prefix_ids for c in chunks)
    bodies = [tok_id for c in chunks for tok_id in c[1 + len(prefix_ids) : -1]]
    assert bodies == tok.encode(body)
    n_tokens, n_chunks = count_tokens([prefix + body], [prefix], tok)
    assert n_tokens == [len(tok.encode(prefix + body)) + 2] and n_chunks == [len(chunks)]


# --------------------------------------------------------------------------- images


def test_image_modes_become_rgb(tmp_path):
    Image.new("CMYK", (20, 10), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16)).save(tmp_path / "deep.png")
    Image.new("P", (8, 8), 3).save(tmp_path / "pal.png")
    Image.new("RGBA", (8, 8), (255, 0, 0, 255)).save(tmp_path / "png_named.jpg", format="PNG")
    for name in ("cmyk.jpg", "deep.png", "pal.png", "png_named.jpg"):
        img, check = open_rgb(tmp_path / name)
        assert check.status == STATUS_OK and img.mode == "RGB", name
    deep, _ = open_rgb(tmp_path / "deep.png")
    assert np.asarray(deep).min() == 255  # 16-bit white stays white, not clipped garbage
    red, check = open_rgb(tmp_path / "png_named.jpg")
    assert check.mode == "RGBA" and tuple(np.asarray(red)[0, 0]) == (255, 0, 0)


def test_unusable_images_get_status_reason_and_placeholder(tmp_path):
    Image.new("RGB", (32, 24), (10, 200, 30)).save(tmp_path / "ok.jpg")
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    items = pd.DataFrame(
        {
            "item_id": [0, 1, 2, 3, 4],
            "asin": list("ABCDE"),
            "image_path": ["ok.jpg", "zero.jpg", "bad.jpg", "gone.jpg", None],
        }
    )
    manifest = build_manifest(items, tmp_path)
    assert manifest["status"].tolist() == [
        STATUS_OK,
        STATUS_CORRUPT,
        STATUS_CORRUPT,
        STATUS_MISSING,
        STATUS_MISSING,
    ]
    assert manifest.loc[0, ["width", "height", "mode"]].tolist() == [32, 24, "RGB"]
    assert "zero-byte" in manifest.loc[1, "reason"] and "not found" in manifest.loc[3, "reason"]
    missing = missing_list(items, manifest)
    assert missing["asin"].tolist() == ["B", "C", "D", "E"] and missing["reason"].str.len().gt(0).all()
    grey = np.asarray(placeholder(16))
    assert grey.shape == (16, 16, 3) and (grey == PLACEHOLDER_RGB).all()


def test_nullable_string_columns_with_na_are_missing(tmp_path):
    items = pd.DataFrame(
        {"item_id": [0, 1], "asin": ["A", "B"], "title": ["Cup", None], "image_path": [None, "gone.jpg"]}
    ).astype({"title": "string", "image_path": "string"})
    p = build_views(items, CFG)
    assert (
        p.loc[(p["view"] == "title") & (p["item_id"] == 1), "text"].item() == "The product title is Missing."
    )
    manifest = build_manifest(items, tmp_path)
    assert manifest["status"].tolist() == [STATUS_MISSING, STATUS_MISSING]
    assert pd.isna(manifest["path"].tolist()[0])
