"""Item images: robust loading to RGB, a placeholder for unusable images, the image manifest.

Loading handles what real catalogs contain: CMYK JPEGs, 16-bit PNGs, palette/transparent
images, a PNG saved with a ``.jpg`` name (Pillow reads the content, not the name). Missing,
zero-byte, truncated or undecodable files are replaced by a **placeholder**: a uniform
mid-grey (128, 128, 128) RGB image, which after CLIP normalisation is close to the dataset
mean, so it carries no colour or shape signal; such items are listed in
``missing_images.csv``. The model's own preprocessing (bicubic resize, centre crop, CLIP
mean/std) is open_clip's ``preprocess_val`` transform and is applied by the extractor's
DataLoader workers, not re-implemented here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

PLACEHOLDER_RGB = (128, 128, 128)
PLACEHOLDER_SIZE = 224
STATUS_OK, STATUS_MISSING, STATUS_CORRUPT = "ok", "missing", "corrupt"
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


@dataclass(frozen=True)
class ImageCheck:
    """Outcome of opening one image file."""

    status: str
    reason: str
    width: int
    height: int
    mode: str


def placeholder(size: int = PLACEHOLDER_SIZE) -> Image.Image:
    """The documented stand-in for an unusable image: uniform mid-grey RGB."""
    return Image.new("RGB", (size, size), PLACEHOLDER_RGB)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (16-bit scaled, alpha composited on white)."""
    if img.mode in _WIDE_MODES:
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        arr = np.clip(arr / top * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB") if img.mode != "RGB" else img


def resolve_path(path: Any, root: Path) -> Path | None:
    """``image_path`` of items.parquet -> absolute Path (relative paths are under ``root``)."""
    if path is None or pd.isna(path) or str(path).strip() == "":
        return None
    p = Path(str(path))
    return p if p.is_absolute() else root / p


def open_rgb(path: Path | None) -> tuple[Image.Image | None, ImageCheck]:
    """Open and fully decode one image; ``(None, check)`` with the reason when unusable."""
    if path is None:
        return None, ImageCheck(STATUS_MISSING, "no image_path in the catalog", 0, 0, "")
    if not path.is_file():
        return None, ImageCheck(STATUS_MISSING, f"file not found: {path}", 0, 0, "")
    if path.stat().st_size == 0:
        return None, ImageCheck(STATUS_CORRUPT, f"zero-byte file: {path}", 0, 0, "")
    try:
        with Image.open(path) as img:
            img.load()
            mode, (width, height) = img.mode, img.size
            rgb = to_rgb(img)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        return None, ImageCheck(STATUS_CORRUPT, f"cannot decode {path}: {exc}", 0, 0, "")
    if width < 1 or height < 1:
        return None, ImageCheck(STATUS_CORRUPT, f"empty image {path}", width, height, mode)
    return rgb, ImageCheck(STATUS_OK, "", width, height, mode)


def build_manifest(items: pd.DataFrame, root: Path) -> pd.DataFrame:
    """Check every item image: item_id, path, status (ok/missing/corrupt), reason, width, height, mode."""
    col = items["image_path"] if "image_path" in items.columns else pd.Series([None] * len(items))
    paths = [None if pd.isna(p) else str(p) for p in col.astype(object).tolist()]
    rows = []
    for raw in tqdm(paths, desc="check images", unit="img", leave=False):
        _, check = open_rgb(resolve_path(raw, root))
        rows.append(
            (
                raw,
                check.status,
                check.reason,
                check.width,
                check.height,
                check.mode,
            )
        )
    df = pd.DataFrame(rows, columns=["path", "status", "reason", "width", "height", "mode"])
    df.insert(0, "item_id", items["item_id"].to_numpy())
    df[["width", "height"]] = df[["width", "height"]].astype("int64")
    bad = int((df["status"] != STATUS_OK).sum())
    if bad:
        log.warning("%d of %d items have no usable image; they get a mid-grey placeholder", bad, len(df))
    return df


def missing_list(items: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """Items whose image is unusable: item_id, asin, reason."""
    bad = manifest["status"] != STATUS_OK
    asin = items["asin"] if "asin" in items.columns else pd.Series([None] * len(items))
    return pd.DataFrame(
        {
            "item_id": manifest.loc[bad, "item_id"].to_numpy(),
            "asin": asin.to_numpy()[bad.to_numpy()],
            "reason": manifest.loc[bad, "reason"].to_numpy(),
        }
    )


class ImageDataset(torch.utils.data.Dataset):
    """Images of the manifest, decoded in DataLoader workers and transformed by open_clip.

    Args:
        paths: absolute path (or ``None``) per item, in item order.
        transform: open_clip's ``preprocess_val`` (resize bicubic, centre crop, normalise).
    """

    def __init__(self, paths: list[Path | None], transform: Callable[[Image.Image], torch.Tensor]):
        self.paths = paths
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        img, _ = open_rgb(self.paths[index])
        return self.transform(img if img is not None else placeholder())


def manifest_paths(manifest: pd.DataFrame, root: Path) -> list[Path | None]:
    """Absolute paths of usable images (``None`` = placeholder) in manifest order."""
    ok = (manifest["status"] == STATUS_OK).tolist()
    return [
        resolve_path(p, root) if good else None for p, good in zip(manifest["path"].tolist(), ok, strict=True)
    ]
