"""Item images: robust loading to RGB, a placeholder for unusable images, the image manifest.

Loading handles what real catalogs contain: CMYK JPEGs, 16-bit PNGs, palette/transparent
images, a PNG saved with a ``.jpg`` name (Pillow reads the content, not the name). Missing,
zero-byte, truncated or undecodable files, and files that break the **image rule**
(:class:`ImageRule`, shared by the validate and preprocess stages: shorter side at least
``validate.min_image_size``, at most ``validate.max_image_pixels`` pixels, read from the file
header before anything is decoded, so a decompression bomb never allocates its pixels), or
whose path leaves the configured folders (``../``, an absolute path elsewhere, a NUL byte), are
replaced by a **placeholder**: a uniform
mid-grey (128, 128, 128) RGB image, which after CLIP normalisation is close to the dataset
mean, so it carries no colour or shape signal; such items are listed in
``missing_images.csv`` with the reason. The model's own preprocessing (bicubic resize, centre crop, CLIP
mean/std) is open_clip's ``preprocess_val`` transform and is applied by the extractor's
DataLoader workers, not re-implemented here.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from cliper.config import Params, ValidateConfig
from cliper.config_bounds import MAX_DECODABLE_PIXELS

log = logging.getLogger(__name__)

PLACEHOLDER_RGB = (128, 128, 128)
PLACEHOLDER_SIZE = 224
STATUS_OK, STATUS_MISSING, STATUS_CORRUPT = "ok", "missing", "corrupt"
STATUS_SMALL, STATUS_LARGE, STATUS_UNSAFE = "too_small", "too_large", "unsafe_path"
STATUSES: tuple[str, ...] = (
    STATUS_OK, STATUS_MISSING, STATUS_CORRUPT, STATUS_SMALL, STATUS_LARGE, STATUS_UNSAFE
)
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_BAR_MIN = 500  # progress bar only for catalogs at least this large


@dataclass(frozen=True)
class ImageRule:
    """What makes an image usable; one rule for the validate and preprocess stages.

    The default is permissive in size (for library use, and for the extract/adapt loaders, which
    only open images the manifest already accepted); the stages build it from
    ``params.validate`` with :meth:`from_config`.
    """

    min_size: int = 1
    max_pixels: int = MAX_DECODABLE_PIXELS

    @classmethod
    def from_config(cls, cfg: ValidateConfig) -> ImageRule:
        return cls(min_size=cfg.min_image_size, max_pixels=cfg.max_image_pixels)


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


def allowed_folders(params: Params, root: Path) -> tuple[Path, ...]:
    """The folders item images may be read from: the project root and the configured image folders.

    ``ingest.raw_dir`` and ``ingest.image_dir`` (relative to ``raw_dir``) may lie outside the
    project; the fetch stage's ``image_dir`` (when that section exists) too.
    """
    raw = Path(params.ingest.raw_dir)
    raw = raw if raw.is_absolute() else root / raw
    folders = [root, raw, raw / params.ingest.image_dir if params.ingest.image_dir else raw / "images"]
    fetch = getattr(params, "fetch", None)
    if fetch is not None and getattr(fetch, "image_dir", None):
        folders.append(root / fetch.image_dir)
    return tuple(f.resolve() for f in folders)


def safe_path(raw: Any, root: Path, folders: Sequence[Path] | None) -> tuple[Path | None, ImageCheck | None]:
    """``(absolute path, None)``, or ``(None, refusal)`` for a path with a NUL byte or outside ``folders``.

    ``folders=None`` allows any path. Symbolic links are followed before the check.
    """
    if raw is not None and not pd.isna(raw) and "\x00" in str(raw):
        return None, ImageCheck(STATUS_UNSAFE, f"image_path {str(raw)!r} contains a NUL byte", 0, 0, "")
    path = resolve_path(raw, root)
    if path is None or folders is None:
        return path, None
    real = path.resolve()
    if not any(real.is_relative_to(folder) for folder in folders):
        reason = (
            f"image_path {str(raw)!r} resolves to {real}, outside the configured folders "
            f"{[str(f) for f in folders]}; not read"
        )
        return None, ImageCheck(STATUS_UNSAFE, reason, 0, 0, "")
    return path, None


def open_rgb(path: Path | None, rule: ImageRule = ImageRule()) -> tuple[Image.Image | None, ImageCheck]:
    """Check ``rule`` on the header, then fully decode; ``(None, check)`` with the reason when unusable."""
    if path is None:
        return None, ImageCheck(STATUS_MISSING, "no image_path in the catalog", 0, 0, "")
    if not path.is_file():
        return None, ImageCheck(STATUS_MISSING, f"file not found: {path}", 0, 0, "")
    if path.stat().st_size == 0:
        return None, ImageCheck(STATUS_CORRUPT, f"zero-byte file: {path}", 0, 0, "")
    try:
        with warnings.catch_warnings():  # the size is judged by ``rule`` below, not by PIL's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:  # reads the header only
                mode, (width, height) = img.mode, img.size
                refusal = _size_refusal(path, width, height, mode, rule)
                if refusal is not None:
                    return None, refusal
                img.load()
                rgb = to_rgb(img)
    except Image.DecompressionBombError as exc:  # over twice PIL's own limit: refused in Image.open
        reason = f"{path}: too many pixels to decode ({exc}); not decoded"
        return None, ImageCheck(STATUS_LARGE, reason, 0, 0, "")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        return None, ImageCheck(STATUS_CORRUPT, f"cannot decode {path}: {exc}", 0, 0, "")
    return rgb, ImageCheck(STATUS_OK, "", width, height, mode)


def _size_refusal(path: Path, width: int, height: int, mode: str, rule: ImageRule) -> ImageCheck | None:
    if width < 1 or height < 1:
        return ImageCheck(STATUS_CORRUPT, f"empty image {path}", width, height, mode)
    if width * height > rule.max_pixels:
        reason = (
            f"{path}: {width}x{height} = {width * height} pixels, over validate.max_image_pixels "
            f"({rule.max_pixels}); not decoded"
        )
        return ImageCheck(STATUS_LARGE, reason, width, height, mode)
    if min(width, height) < rule.min_size:
        reason = (
            f"{path}: {width}x{height} pixels; the shorter side must be at least validate.min_image_size "
            f"({rule.min_size})"
        )
        return ImageCheck(STATUS_SMALL, reason, width, height, mode)
    return None


def check_image(raw: Any, root: Path, rule: ImageRule, folders: Sequence[Path] | None) -> ImageCheck:
    """The image rule for one ``image_path`` value: path safety, header size, full decode."""
    path, refusal = safe_path(raw, root, folders)
    return refusal if refusal is not None else open_rgb(path, rule)[1]


def build_manifest(
    items: pd.DataFrame,
    root: Path,
    rule: ImageRule = ImageRule(),
    folders: Sequence[Path] | None = None,
) -> pd.DataFrame:
    """Check every item image: item_id, path, status (one of :data:`STATUSES`), reason, width, height, mode.

    Args:
        items: the items table (``item_id``, ``image_path``).
        root: project root (relative paths are under it).
        rule: size limits (stages: ``ImageRule.from_config(params.validate)``).
        folders: where images may be read from (stages: :func:`allowed_folders`); None = anywhere.
    """
    col = items["image_path"] if "image_path" in items.columns else pd.Series([None] * len(items))
    paths = [None if pd.isna(p) else str(p) for p in col.astype(object).tolist()]
    rows = []
    for raw in tqdm(paths, desc="check images", unit="img", disable=len(paths) < _BAR_MIN, leave=False):
        check = check_image(raw, root, rule, folders)
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
