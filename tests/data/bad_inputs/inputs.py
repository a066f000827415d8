"""Generators of bad inputs, written by code into a copy of a good tiny project (no binaries kept).

Each function takes the project root and damages one input the way a real catalog, a typo or a
broken download does. ``test_corpus.py`` pairs each with the stage that must refuse it.
"""

from __future__ import annotations

import gzip
import io
import json
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

RAW = "raw"
NAME = "Tiny"
META = f"{RAW}/meta_{NAME}.json.gz"
RATINGS = f"{RAW}/ratings_{NAME}.csv"
REVIEWS = f"{RAW}/reviews_{NAME}_5.json.gz"
ITEMS = "data/ingested/items.parquet"
CHECKPOINT = "models/clip/open_clip_pytorch_model.bin"
LONGCLIP_CONTEXT = 248  # Long-CLIP's text positions
BOMB_SIDE = (20_000, 10_000)  # 200 M pixels: over twice PIL's limit, so Image.open itself refuses


# --------------------------------------------------------------------------- text files


def write_gz_lines(root: Path, rel: str, lines: list[str]) -> None:
    with gzip.open(root / rel, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def read_gz_lines(root: Path, rel: str) -> list[str]:
    with gzip.open(root / rel, "rt", encoding="utf-8") as fh:
        return fh.read().splitlines()


def edit_meta_line(root: Path, lineno: int, text: str) -> None:
    lines = read_gz_lines(root, META)
    lines[lineno - 1] = text
    write_gz_lines(root, META, lines)


def edit_ratings_line(root: Path, lineno: int, text: str) -> None:
    path = root / RATINGS
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[lineno - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def prepend_ratings_header(root: Path) -> None:
    path = root / RATINGS
    path.write_text("user,item,rating,timestamp\n" + path.read_text(encoding="utf-8"), encoding="utf-8")


def truncate(root: Path, rel: str, keep: float = 0.5) -> None:
    path = root / rel
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def meta_matching_nothing(root: Path) -> None:
    """The meta file of another catalog: no ASIN in common with the ratings."""
    write_gz_lines(root, META, [f"{{'asin': 'Z{i:03d}', 'title': 'Other {i}'}}" for i in range(9)])


def meta_without_titles(root: Path) -> None:
    write_gz_lines(root, META, [f"{{'asin': 'B{i:03d}', 'brand': 'Brand{i}'}}" for i in range(9)])


def reviews_from_ratings(root: Path, overall: object = None, drop: str | None = None) -> None:
    """A reviews file with the ratings' rows; line 2 gets ``overall`` when given; ``drop`` removes a field."""
    rows = (root / RATINGS).read_text(encoding="utf-8").splitlines()
    lines = []
    for i, row in enumerate(rows):
        user, asin, rating, ts = row.split(",")
        record = {"reviewerID": user, "asin": asin, "overall": float(rating), "unixReviewTime": int(ts)}
        if i == 1 and overall is not None:
            record["overall"] = overall
        if drop:
            record.pop(drop)
        lines.append(json.dumps(record))  # json writes NaN for float("nan"), as some dumps do
    write_gz_lines(root, REVIEWS, lines)


def write_inter(
    root: Path, rows: list[str], header: str = "userID\titemID\trating\ttimestamp\tx_label"
) -> None:
    (root / RAW / "bad.inter").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")


def good_inter_rows(n_users: int = 6, n_items: int = 6) -> list[str]:
    """Every user rates every item; labels 0 except one valid and one test per user."""
    return [
        f"{u}\t{i}\t5.0\t{100 + i}\t{0 if i < n_items - 2 else i - n_items + 3}"
        for u in range(n_users)
        for i in range(n_items)
    ]


def write_id_map(root: Path, name: str, header: str, rows: list[str]) -> None:
    (root / RAW / name).write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- images


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` (RGB) with a tiny, incomplete IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def jpeg_with_declared_size(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF0 marker is patched to declare ``width`` x ``height``."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def set_image(root: Path, asin: str, data: bytes) -> None:
    (root / RAW / "images" / f"{asin}.jpg").write_bytes(data)


def solid_jpeg(side: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (10, 120, 200)).save(buf, format="JPEG")
    return buf.getvalue()


def set_image_path(root: Path, item_id: int, value: str) -> None:
    """Rewrite one ``image_path`` of items.parquet (what a crafted catalog or URL table could hold)."""
    items = pd.read_parquet(root / ITEMS)
    items["image_path"] = items["image_path"].astype(object)
    items.loc[item_id, "image_path"] = value
    items.to_parquet(root / ITEMS, index=False)


# --------------------------------------------------------------------------- CLIP checkpoints


def wrong_model_checkpoint(root: Path, dest: str) -> None:
    """The adapted checkpoint without its text tower's positional embedding: not this architecture."""
    state = torch.load(root / CHECKPOINT, map_location="cpu", weights_only=True)
    state.pop("positional_embedding")
    state["visual.extra.weight"] = torch.zeros(3)
    torch.save(state, root / dest)


def longclip_checkpoint(root: Path, dest: str) -> None:
    """The adapted checkpoint in Long-CLIP's format (two 248-row position tables) for a 77-token model."""
    state = torch.load(root / CHECKPOINT, map_location="cpu", weights_only=True)
    width = state["positional_embedding"].shape[1]
    state["positional_embedding"] = torch.zeros(LONGCLIP_CONTEXT, width)
    state["positional_embedding_res"] = torch.zeros(LONGCLIP_CONTEXT, width)
    torch.save(state, root / dest)


def set_interaction(root: Path, row: int, column: str, value: object) -> None:
    """Rewrite one cell of interactions.parquet (an ingested file edited or produced by another tool)."""
    path = root / "data/ingested/interactions.parquet"
    inter = pd.read_parquet(path)
    inter[column] = inter[column].astype("float64" if isinstance(value, float) else inter[column].dtype)
    inter.loc[row, column] = value
    inter.to_parquet(path, index=False)


def edit_npy(root: Path, rel: str, change: Callable[[np.ndarray], np.ndarray]) -> None:
    path = root / rel
    with open(path, "rb") as fh:
        array = np.load(fh)
    with open(path, "wb") as fh:
        np.save(fh, change(array))


def with_nan(array: np.ndarray) -> np.ndarray:
    out = array.copy()
    out.flat[0] = np.nan
    return out
