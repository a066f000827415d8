"""Stage ``extract``: encode every view and image with the adapted CLIP model.

Reads ``<preprocess.out_dir>/`` and ``<clip.adapt.out_dir>/`` (checkpoint + ``model.json``),
writes ``<clip.extract.out_dir>/``: ``text_views.npy`` [V, I, D], ``image.npy`` [I, D] (float32
unless ``clip.extract.dtype: float16``) and ``meta.json`` (model, checkpoint sha256, views,
dims, dtype, preprocessing config, chunk rule, content_hash). Shards live under
``<clip.extract.cache_dir>/<hash>/`` so a killed run resumes; the output folder is replaced
whole at the end, so it never holds partial files.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cliper.clip.extract import ShardCallback, cache_key, extract_features
from cliper.clip.load import LoadedClip, load_clip
from cliper.config import Params, to_dict
from cliper.errors import CliperError, DataError
from cliper.features import IMAGE_FILE, META_FILE, TEXT_FILE
from cliper.io import atomic_dir, read_json, sha256_array, write_json
from cliper.stages import StageResult
from cliper.stages.adapt import MODEL_JSON
from cliper.stages.preprocess import read_outputs
from cliper.views.images import PLACEHOLDER_RGB, manifest_paths
from cliper.views.prompts import view_prefix

log = logging.getLogger(__name__)


def read_model_info(params: Params, root: Path) -> tuple[dict, Path]:
    """``model.json`` of the adapt stage and the checkpoint path it names.

    Raises:
        CliperError: missing files, or a checkpoint made for another ``clip.model``.
    """
    folder = root / params.clip.adapt.out_dir
    if not (folder / MODEL_JSON).is_file():
        raise CliperError(f"{folder / MODEL_JSON}: not found; run the adapt stage first (cliper run adapt)")
    info = read_json(folder / MODEL_JSON)
    if info.get("model") != params.clip.model:
        raise CliperError(
            f"{folder / MODEL_JSON}: checkpoint is for model '{info.get('model')}' but "
            f"clip.model is '{params.clip.model}'; rerun the adapt stage"
        )
    return info, folder / info["checkpoint"]


def inputs_digest(ordered: pd.DataFrame, manifest: pd.DataFrame, paths: list[Path | None]) -> str:
    """Hash of the prompts, the manifest and the bytes of every usable image."""
    digest = hashlib.sha256()
    digest.update(
        pd.util.hash_pandas_object(ordered[["item_id", "view", "text"]], index=False).to_numpy().tobytes()
    )
    digest.update(
        pd.util.hash_pandas_object(manifest[["item_id", "status"]], index=False).to_numpy().tobytes()
    )
    for path in paths:
        digest.update(path.read_bytes() if path is not None else b"<placeholder>")
    return digest.hexdigest()


@dataclass(frozen=True)
class ExtractSetup:
    """What both the stage and a shard worker derive from the params: inputs, model, cache folder."""

    loaded: LoadedClip
    ordered: pd.DataFrame
    manifest: pd.DataFrame
    paths: list[Path | None]
    views: list[str]
    prefixes: dict[str, str]
    key: str
    cache: Path


def prepare(params: Params, root: Path, device: str | None = None) -> ExtractSetup:
    """Read the inputs, load the adapted model (on ``device``, default ``clip.device``), name the cache."""
    clip, cfg = params.clip, params.clip.extract
    views = list(params.preprocess.views)
    ordered, manifest = read_outputs(params, root)
    info, checkpoint = read_model_info(params, root)
    loaded = load_clip(clip.model, str(checkpoint), clip.precision, device or clip.device, root,
                       channels_last=clip.channels_last)
    if loaded.sha256 != info.get("sha256"):
        raise CliperError(f"{checkpoint}: sha256 differs from {MODEL_JSON}; rerun the adapt stage")
    paths = manifest_paths(manifest, root)
    key = cache_key(
        clip.model,
        loaded.sha256,
        clip.precision,
        loaded.device.type,
        clip.channels_last,
        cfg.batch_size,
        views,
        inputs_digest(ordered, manifest, paths),
    )
    prefixes = {v: view_prefix(v, params.preprocess) for v in views}
    return ExtractSetup(loaded, ordered, manifest, paths, views, prefixes, key, root / cfg.cache_dir / key)


def run(params: Params, root: Path, on_shard: ShardCallback | None = None) -> StageResult:
    """Extract features; ``on_shard(kind, index)`` is called after each shard (tests interrupt here).

    With ``clip.extract.shards.n_shards >= 1`` the batches are first encoded by the shard executor
    (:mod:`cliper.stages.extract_shards`); the arrays are then assembled from the same batch files.
    """
    clip, cfg = params.clip, params.clip.extract
    setup = prepare(params, root)
    loaded, manifest, views, key, cache = setup.loaded, setup.manifest, setup.views, setup.key, setup.cache
    shard_metrics: dict[str, int] = {}
    if cfg.shards.n_shards:
        from cliper.stages.extract_shards import run_shards  # imports this module (prepare)

        shard_metrics = run_shards(params, root, setup)
    text, image = extract_features(
        loaded,
        setup.ordered,
        views,
        setup.prefixes,
        manifest,
        root,
        cache,
        cfg.batch_size,
        cfg.num_workers,
        cfg.chunk_combine,
        on_shard,
    )
    text, image = text.astype(cfg.dtype), image.astype(cfg.dtype)
    expect = (len(views), len(manifest), loaded.embed_dim)
    if text.shape != expect or image.shape != expect[1:]:
        raise DataError(
            f"extract: got text {text.shape} / image {image.shape}, expected {expect}; "
            f"delete {cache} and rerun"
        )
    meta = {
        "model": clip.model,
        "checkpoint_sha256": loaded.sha256,
        "views": views,
        "n_items": len(manifest),
        "dim": loaded.embed_dim,
        "dtype": cfg.dtype,
        "context_length": loaded.context_length,
        "chunk_combine": cfg.chunk_combine,
        "chunking": "tokens; each chunk re-prefixed with its view prefix",
        "preprocessing": {
            "views": to_dict(params.preprocess),
            "image_transform": repr(loaded.preprocess),
            "placeholder_rgb": list(PLACEHOLDER_RGB),
        },
        "precision": clip.precision,
        "device": loaded.device.type,
        "cache_key": key,
        "content_hash": sha256_array(text, image),
    }
    out = root / cfg.out_dir
    with atomic_dir(out) as tmp:
        np.save(tmp / TEXT_FILE, text)
        np.save(tmp / IMAGE_FILE, image)
        write_json(tmp / META_FILE, meta)
    log.info("extract: text %s, image %s -> %s", text.shape, image.shape, out)
    return StageResult(
        "extract",
        {n: str(out / n) for n in (TEXT_FILE, IMAGE_FILE, META_FILE)},
        {"n_items": len(manifest), "n_views": len(views), "dim": loaded.embed_dim, **shard_metrics},
    )
