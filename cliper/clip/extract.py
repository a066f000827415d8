"""Batched, resumable CLIP feature extraction of every text view and image (spec section 2).

Text work is cut without changing results:

1. identical prompt strings are encoded once (``Missing`` prompts, brands, categories repeat);
2. prompts longer than the context are split on tokens into re-prefixed chunks
   (:func:`cliper.views.prompts.chunk_tokens`);
3. chunks are sorted by token length and each batch is padded only to its longest chunk
   (:func:`cliper.clip.encode.encode_text_trimmed`);
4. chunk embeddings are combined per prompt by ``chunk_combine``: ``mean`` (default) = mean
   of L2-normalised chunk embeddings, so a 40-chunk description has the same scale as a
   one-chunk title and every view weighs alike in the fusion's weighted sum; ``sum`` = the
   original's sum of raw chunk embeddings (its norm grows with the text length).

Images are decoded and transformed (open_clip ``preprocess_val``) by DataLoader workers.
Everything runs under ``torch.inference_mode`` with autocast on CUDA (``clip.precision: amp``).
Each batch result is a shard ``text_#####.npy`` / ``image_#####.npy`` in a cache folder named
by the hash of all inputs and settings; a killed run resumes from the shards present and,
batches being identical, yields the same arrays as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from cliper.clip.encode import encode_token_lists
from cliper.clip.load import LoadedClip
from cliper.errors import DataError
from cliper.io import write_npy
from cliper.views.images import ImageDataset, manifest_paths
from cliper.views.prompts import BpeTokenizer, chunk_tokens

log = logging.getLogger(__name__)

ShardCallback = Callable[[str, int], None]


@dataclass(frozen=True)
class TextPlan:
    """Unique prompts split into chunks, chunks sorted by token length."""

    chunks: list[list[int]]  # token ids per chunk, ascending length
    owner: np.ndarray  # [C] unique-prompt index of each chunk
    codes: np.ndarray  # [V * I] unique-prompt index of each (view, item) row
    n_prompts: int
    n_rows: int  # V * I


def order_views(views: pd.DataFrame, view_names: list[str], n_items: int) -> pd.DataFrame:
    """Rows of ``views.parquet`` ordered view-major, item-minor; checks completeness.

    Raises:
        DataError: a view or (view, item) row is missing or duplicated.
    """
    sub = views[views["view"].isin(view_names)]
    missing = sorted(set(view_names) - set(sub["view"]))
    if missing:
        raise DataError(
            f"views.parquet: views {missing} not found (has {sorted(set(views['view']))}); "
            "rerun preprocess with these views"
        )
    rank = sub["view"].map({v: k for k, v in enumerate(view_names)})
    sub = sub.assign(_rank=rank.to_numpy()).sort_values(["_rank", "item_id"], kind="stable")
    expect = np.tile(np.arange(n_items), len(view_names))
    if len(sub) != len(expect) or not np.array_equal(sub["item_id"].to_numpy(), expect):
        raise DataError(
            f"views.parquet: expected one row per (view, item) for {len(view_names)} views x "
            f"{n_items} items (item_id 0..{n_items - 1}), found {len(sub)} rows"
        )
    return sub.drop(columns="_rank").reset_index(drop=True)


def plan_text(ordered: pd.DataFrame, prefixes: dict[str, str], tok: BpeTokenizer) -> TextPlan:
    """Deduplicate prompts, chunk them on tokens, sort the chunks by length."""
    codes, uniques = pd.factorize(ordered["text"], sort=False)
    first_view = ordered["view"].to_numpy()[np.unique(codes, return_index=True)[1]]
    chunks: list[list[int]] = []
    owner: list[int] = []
    for idx, (text, view) in enumerate(zip(uniques.tolist(), first_view.tolist(), strict=True)):
        pieces = chunk_tokens(text, prefixes[view], tok)
        chunks.extend(pieces)
        owner.extend([idx] * len(pieces))
    order = np.argsort(
        np.fromiter((len(c) for c in chunks), dtype=np.int64, count=len(chunks)), kind="stable"
    )
    return TextPlan(
        [chunks[i] for i in order],
        np.asarray(owner, dtype=np.int64)[order],
        np.asarray(codes, dtype=np.int64),
        len(uniques),
        len(ordered),
    )


def combine_chunks(chunk_emb: np.ndarray, owner: np.ndarray, n_prompts: int, rule: str) -> np.ndarray:
    """Per-prompt embedding from chunk embeddings: ``mean`` of L2-normalised chunks, or ``sum``."""
    emb = torch.from_numpy(chunk_emb.astype(np.float32))
    if rule == "mean":
        emb = torch.nn.functional.normalize(emb, dim=-1)
    out = torch.zeros(n_prompts, emb.shape[1]).index_add_(0, torch.from_numpy(owner), emb)
    if rule == "mean":
        counts = torch.bincount(torch.from_numpy(owner), minlength=n_prompts).clamp_min(1)
        out = out / counts[:, None]
    return out.numpy()


def cache_key(*parts: object) -> str:
    """Short hash naming the shard folder (inputs + settings)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(repr(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _batches(n: int, size: int) -> list[range]:
    return [range(s, min(s + size, n)) for s in range(0, n, size)]


def text_batches(plan: TextPlan, batch_size: int) -> list[range]:
    """Chunk indices of each text batch (the batch files ``text_#####.npy``)."""
    return _batches(len(plan.chunks), batch_size)


def encode_text_batches(
    loaded: LoadedClip,
    plan: TextPlan,
    cache: Path,
    batch_size: int,
    indices: Iterable[int],
    on_shard: ShardCallback | None = None,
) -> int:
    """Encode the text batches ``indices`` whose files are missing; returns how many it encoded."""
    batches = text_batches(plan, batch_size)
    todo = [k for k in indices if not (cache / f"text_{k:05d}.npy").exists()]
    with torch.inference_mode(), loaded.autocast():
        for k in tqdm(todo, desc="encode text", unit="batch", leave=False):
            seqs = [plan.chunks[i] for i in batches[k]]
            emb = encode_token_lists(loaded.model, seqs, loaded.context_length, loaded.device)
            write_npy(cache / f"text_{k:05d}.npy", emb.float().cpu().numpy())
            if on_shard is not None:
                on_shard("text", k)
    return len(todo)


def _encode_text_shards(
    loaded: LoadedClip, plan: TextPlan, cache: Path, batch_size: int, on_shard: ShardCallback | None
) -> np.ndarray:
    n = len(text_batches(plan, batch_size))
    encode_text_batches(loaded, plan, cache, batch_size, range(n), on_shard)
    return np.concatenate([np.load(cache / f"text_{k:05d}.npy") for k in range(n)])


def image_batches(n_items: int, batch_size: int) -> list[range]:
    """Item indices of each image batch (the batch files ``image_#####.npy``)."""
    return _batches(n_items, batch_size)


def encode_image_batches(
    loaded: LoadedClip,
    paths: list[Path | None],
    cache: Path,
    batch_size: int,
    num_workers: int,
    indices: Iterable[int],
    on_shard: ShardCallback | None = None,
) -> int:
    """Encode the image batches ``indices`` whose files are missing; returns how many it encoded."""
    batches = image_batches(len(paths), batch_size)
    todo = [k for k in indices if not (cache / f"image_{k:05d}.npy").exists()]
    if todo:
        loader = torch.utils.data.DataLoader(
            ImageDataset(paths, loaded.preprocess),
            batch_sampler=[list(batches[k]) for k in todo],
            num_workers=num_workers,
            pin_memory=loaded.device.type == "cuda",
        )
        with torch.inference_mode(), loaded.autocast():
            for k, images in zip(
                todo, tqdm(loader, desc="encode images", unit="batch", leave=False), strict=True
            ):
                emb = loaded.model.encode_image(images.to(loaded.device, non_blocking=True))
                write_npy(cache / f"image_{k:05d}.npy", emb.float().cpu().numpy())
                if on_shard is not None:
                    on_shard("image", k)
    return len(todo)


def _encode_image_shards(
    loaded: LoadedClip,
    paths: list[Path | None],
    cache: Path,
    batch_size: int,
    num_workers: int,
    on_shard: ShardCallback | None,
) -> np.ndarray:
    n = len(image_batches(len(paths), batch_size))
    encode_image_batches(loaded, paths, cache, batch_size, num_workers, range(n), on_shard)
    return np.concatenate([np.load(cache / f"image_{k:05d}.npy") for k in range(n)])


def extract_features(
    loaded: LoadedClip,
    ordered: pd.DataFrame,
    view_names: list[str],
    prefixes: dict[str, str],
    manifest: pd.DataFrame,
    root: Path,
    cache: Path,
    batch_size: int,
    num_workers: int,
    chunk_combine: str,
    on_shard: ShardCallback | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Encode every view and image; float32 ``text_views`` [V, I, D] and ``image`` [I, D].

    Args:
        ordered: :func:`order_views` output (view-major, item-minor).
        prefixes: view -> prefix re-added to every chunk.
        manifest: ``images.parquet`` (one row per item, item order).
        cache: shard folder (created); existing shards are reused.
        on_shard: called as ``on_shard(kind, index)`` after each shard is written.
    """
    n_items = len(manifest)
    cache.mkdir(parents=True, exist_ok=True)
    tok = BpeTokenizer.from_open_clip(loaded.tokenizer, loaded.context_length)
    plan = plan_text(ordered, prefixes, tok)
    log.info("%d prompts -> %d unique -> %d chunks", plan.n_rows, plan.n_prompts, len(plan.chunks))
    was_training = loaded.model.training
    loaded.model.eval()
    try:
        chunk_emb = _encode_text_shards(loaded, plan, cache, batch_size, on_shard)
        image = _encode_image_shards(
            loaded, manifest_paths(manifest, root), cache, batch_size, num_workers, on_shard
        )
    finally:
        loaded.model.train(was_training)
    prompts = combine_chunks(chunk_emb, plan.owner, plan.n_prompts, chunk_combine)
    text_views = prompts[plan.codes].reshape(len(view_names), n_items, -1)
    if image.shape != (n_items, text_views.shape[2]):
        raise DataError(
            f"extract: image features {image.shape} do not match text features {text_views.shape} "
            f"(cache {cache}); delete the cache folder and rerun"
        )
    return text_views, image
