"""Load the extracted CLIP features (``data/features/``) and check them before training.

Contract (docs/architecture.md): ``text_views.npy`` float ``[n_views, n_items, dim]`` in the
view order of ``meta.json: views``, ``image.npy`` float ``[n_items, dim]``, ``meta.json`` with
``views`` and ``content_hash``. Every mismatch (item count, dimension, view list) and every
non-finite value raises :class:`~cliper.errors.DataError` naming the file and what was expected,
so a bad input stops the train stage before any epoch runs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from cliper import io
from cliper.errors import DataError
from cliper.models.base import Features

logger = logging.getLogger(__name__)

TEXT_FILE = "text_views.npy"
IMAGE_FILE = "image.npy"
META_FILE = "meta.json"


def _load_array(path: Path) -> np.ndarray:
    if not path.exists():
        raise DataError(f"{path}: feature file not found (run the extract stage first)")
    try:
        return np.load(path, mmap_mode="r")
    except ValueError as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc})") from exc


def _check_finite(path: Path, array: np.ndarray) -> None:
    """Raise naming the first item with a NaN/inf value."""
    flat = np.asarray(array, dtype=np.float32)
    bad = ~np.isfinite(flat)
    if bad.any():
        where = np.argwhere(bad)[0]
        item = int(where[-2])
        raise DataError(
            f"{path}: {int(bad.sum())} non-finite value(s) (NaN/inf), first at item {item} "
            f"(index {tuple(int(i) for i in where)}); re-run the extract stage"
        )


def check_features(text: np.ndarray, image: np.ndarray, views: list[str], n_items: int, folder: Path) -> None:
    """Validate shapes, view list and finiteness against the dataset's ``n_items``."""
    text_path, image_path = folder / TEXT_FILE, folder / IMAGE_FILE
    if text.ndim != 3:
        raise DataError(f"{text_path}: expected shape [n_views, n_items, dim], got {text.shape}")
    if image.ndim != 2:
        raise DataError(f"{image_path}: expected shape [n_items, dim], got {image.shape}")
    if text.shape[0] != len(views):
        raise DataError(
            f"{text_path}: {text.shape[0]} views but {folder / META_FILE} lists {len(views)}: {views}"
        )
    for path, count in ((text_path, text.shape[1]), (image_path, image.shape[0])):
        if count != n_items:
            raise DataError(f"{path}: features for {count} items, but the interactions have {n_items} items")
    if text.shape[2] != image.shape[1]:
        raise DataError(
            f"{folder}: text dim {text.shape[2]} != image dim {image.shape[1]}; "
            "both must come from one CLIP model"
        )
    _check_finite(text_path, text)
    _check_finite(image_path, image)


def view_rows(wanted: list[str], views: list[str]) -> list[int] | None:
    """Positions of the ``wanted`` view names in ``views``; None when the list is empty, repeats a
    name or names a view that ``views`` lacks (the caller says which setting is wrong)."""
    if not wanted or len(set(wanted)) != len(wanted) or any(v not in views for v in wanted):
        return None
    return [views.index(v) for v in wanted]


def select_views(text: np.ndarray, views: list[str], wanted: list[str] | None, folder: Path) -> np.ndarray:
    """Rows of ``text`` [V, I, D] for the ``wanted`` view names (all when ``wanted`` is None)."""
    if wanted is None:
        return text
    rows = view_rows(wanted, views)
    if rows is None:
        raise DataError(
            f"params.yaml train.views: {wanted!r} must be distinct names among the extracted views {views} "
            f"({folder / META_FILE}); re-run extract with preprocess.views including them"
        )
    return text[rows]


def load_features(
    folder: str | Path, n_items: int, views: list[str] | None = None
) -> tuple[Features, str]:
    """Load and check ``folder``; returns (features, content hash from ``meta.json``).

    Args:
        folder: the extract stage's output folder.
        n_items: item count of the interactions (ids 0..n_items-1).
        views: the text views to keep, in this order (None = all, in the extract order).

    Raises:
        DataError: missing files, shape/view/item-count mismatch or non-finite values.
    """
    folder, views_wanted = Path(folder), views
    meta_path = folder / META_FILE
    if not meta_path.exists():
        raise DataError(f"{meta_path}: not found (run the extract stage first)")
    meta = io.read_json(meta_path)
    views = meta.get("views")
    if not isinstance(views, list) or not views:
        raise DataError(f"{meta_path}: 'views' must be a non-empty list of view names, got {views!r}")
    text, image = _load_array(folder / TEXT_FILE), _load_array(folder / IMAGE_FILE)
    check_features(text, image, views, n_items, folder)
    content_hash = str(meta.get("content_hash") or io.sha256_array(np.asarray(text), np.asarray(image)))
    if views_wanted is not None:
        text = select_views(text, views, views_wanted, folder)
        content_hash = io.sha256_array(extra={"features": content_hash, "views": views_wanted})
        views = list(views_wanted)
    features = Features(
        image=torch.from_numpy(np.array(image, dtype=np.float32)),
        text_views=torch.from_numpy(np.array(text, dtype=np.float32)),
        view_names=tuple(str(v) for v in views),
    )
    logger.info(
        "features: %d views x %d items x %d dims (%s)", len(views), n_items, image.shape[1], content_hash[:12]
    )
    return features, content_hash


def write_features(folder: str | Path, text: np.ndarray, image: np.ndarray, views: list[str]) -> Path:
    """Write a feature folder in the extract stage's format (used by tests and benchmarks)."""
    folder = Path(folder)
    io.write_npy(folder / TEXT_FILE, np.asarray(text, dtype=np.float32))
    io.write_npy(folder / IMAGE_FILE, np.asarray(image, dtype=np.float32))
    io.write_json(
        folder / META_FILE,
        {
            "views": list(views),
            "dim": int(image.shape[1]),
            "dtype": "float32",
            "content_hash": io.sha256_array(np.asarray(text, np.float32), np.asarray(image, np.float32)),
        },
    )
    return folder
