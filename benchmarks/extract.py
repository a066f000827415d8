"""Benchmark: cliper's batched extractor vs a faithful copy of the original per-item loop.

Same model, same machine, same synthetic catalog, one run each, each in its own forked process
(so peak memory is per method). The original loop, per item: for every view, split the
prompt into 230-character pieces re-prefixed with the view prefix, tokenise at the full
context, ``encode_text`` and sum; then open, preprocess and ``encode_image`` the image.

    python benchmarks/extract.py --model cliper-tiny --items 600
    nice python benchmarks/extract.py --model ViT-B-32 --items 60 --tag vitb32

Writes ``benchmarks/results/extract[_TAG].json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cliper.clip.extract import extract_features, order_views  # noqa: E402
from cliper.clip.load import load_clip  # noqa: E402
from cliper.config import PreprocessConfig  # noqa: E402
from cliper.views.images import open_rgb, placeholder  # noqa: E402
from cliper.views.prompts import build_views, view_prefix  # noqa: E402

ORIGINAL_CHUNK_CHARS = 230
WORDS = (
    "soft cotton baby blanket bottle warm gentle stroller seat toy washable organic large small "
    "pink blue safe bpa free easy clean travel nursery feeding bath"
).split()


def synth_catalog(folder: Path, n_items: int, image_size: int, seed: int) -> pd.DataFrame:
    """Demo-like items: repeated brands/categories, 10% long descriptions, 2% missing images."""
    rng = np.random.default_rng(seed)
    brands = [f"Brand{k}" for k in range(max(n_items // 15, 2))]
    cats = [json.dumps([["Baby", w.title(), v.title()]]) for w in WORDS[:6] for v in WORDS[6:10]]
    rows = []
    for i in range(n_items):
        path = folder / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (image_size, image_size, 3), dtype=np.uint8)).save(path)
        n_desc = int(rng.integers(150, 400)) if rng.random() < 0.1 else int(rng.integers(10, 50))
        rows.append(
            {
                "item_id": i,
                "asin": f"B{i:06d}",
                "title": " ".join(rng.choice(WORDS, rng.integers(4, 12))),
                "brand": brands[int(rng.integers(len(brands)))] if rng.random() > 0.1 else None,
                "description": " ".join(rng.choice(WORDS, n_desc)),
                "categories": cats[int(rng.integers(len(cats)))],
                "image_path": None if rng.random() < 0.02 else str(path),
            }
        )
    return pd.DataFrame(rows)


def run_new(args, items: pd.DataFrame, folder: Path) -> dict:
    """cliper's extractor; text/image split from the shard callback's timestamps."""
    loaded = load_clip(args.model, None, args.precision, args.device, seed=0)
    cfg = PreprocessConfig()
    ordered = order_views(build_views(items, cfg), list(cfg.views), len(items))
    manifest = pd.DataFrame(
        {
            "item_id": items["item_id"],
            "path": items["image_path"],
            "status": np.where(items["image_path"].isna(), "missing", "ok"),
        }
    )
    marks = {}
    start = time.perf_counter()
    extract_features(
        loaded,
        ordered,
        list(cfg.views),
        {v: view_prefix(v, cfg) for v in cfg.views},
        manifest,
        folder,
        folder / "cache",
        args.batch_size,
        args.num_workers,
        "mean",
        on_shard=lambda kind, _: marks.__setitem__(kind, time.perf_counter()),
    )
    total = time.perf_counter() - start
    return {"text_s": marks["text"] - start, "image_s": total - (marks["text"] - start), "total_s": total}


def run_loop(args, items: pd.DataFrame, folder: Path) -> dict:
    """The original: one item at a time, every view at full context, then the image."""
    loaded = load_clip(args.model, None, args.precision, args.device, seed=0)
    cfg = PreprocessConfig()
    views = build_views(items, cfg)
    texts = views.pivot(index="item_id", columns="view", values="text")[list(cfg.views)].to_numpy()
    text_s = image_s = 0.0
    model, dev = loaded.model, loaded.device
    with torch.no_grad():
        for i, row in enumerate(items.itertuples()):
            t0 = time.perf_counter()
            for view, text in zip(cfg.views, texts[i], strict=True):
                prefix = view_prefix(view, cfg)
                body = text[len(prefix) :]
                pieces = [
                    prefix + body[s : s + ORIGINAL_CHUNK_CHARS]
                    for s in range(0, len(body), ORIGINAL_CHUNK_CHARS)
                ]
                model.encode_text(loaded.tokenizer(pieces or [text]).to(dev)).sum(0).cpu()
            t1 = time.perf_counter()
            img, _ = open_rgb(Path(row.image_path) if isinstance(row.image_path, str) else None)
            model.encode_image(
                loaded.preprocess(img if img is not None else placeholder()).unsqueeze(0).to(dev)
            ).cpu()
            text_s, image_s = text_s + t1 - t0, image_s + time.perf_counter() - t1
    return {"text_s": text_s, "image_s": image_s, "total_s": text_s + image_s}


def _child(method: str, args, items: pd.DataFrame, folder: Path, queue) -> None:
    torch.set_num_threads(args.threads)
    out = (run_new if method == "new" else run_loop)(args, items, folder)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.cuda.is_available() and args.device == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    queue.put(out)


def measure(method: str, args, items: pd.DataFrame, folder: Path) -> dict:
    """Run one method in a fresh process; items/s and the time split."""
    ctx = mp.get_context("fork")  # fresh process per method; fork keeps DataLoader workers cheap
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(method, args, items, folder, queue))
    proc.start()
    out = queue.get()
    proc.join()
    out["items_per_s"] = len(items) / out["total_s"]
    return out


def report(args, n_items: int, new: dict, loop: dict) -> dict:
    """Result dict with speed-ups and targets."""
    return {
        "model": args.model,
        "device": args.device,
        "precision": args.precision,
        "n_items": n_items,
        "n_views": len(PreprocessConfig().views),
        "batch_size": args.batch_size,
        "num_workers": args.num_workers,
        "threads": args.threads,
        "new": new,
        "original_loop": loop,
        "speedup_text": loop["text_s"] / new["text_s"],
        "speedup_image": loop["image_s"] / new["image_s"],
        "speedup_total": loop["total_s"] / new["total_s"],
        "targets": {"text_speedup_cpu_77_tokens": 5.0, "total_speedup_cpu_vit_b_32": 2.0},
    }


def markdown(res: dict) -> str:
    """Human-readable table of one benchmark run."""
    rows = [
        f"| {name} | {r['text_s']:.2f} | {r['image_s']:.2f} | {r['total_s']:.2f} | {r['items_per_s']:.1f} | "
        f"{r['peak_rss_mb']:.0f} |"
        for name, r in (("cliper extractor", res["new"]), ("original loop", res["original_loop"]))
    ]
    return "\n".join(
        [
            f"# Extraction benchmark: {res['model']} on {res['device']} ({res['n_items']} items x "
            f"{res['n_views']} views)",
            "",
            f"batch {res['batch_size']}, workers {res['num_workers']}, torch threads {res['threads']}, "
            f"precision {res['precision']}; one run each, separate processes.",
            "",
            "| method | text s | image s | total s | items/s | peak RSS MB |",
            "| --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
            f"Speed-up: text x{res['speedup_text']:.1f}, image x{res['speedup_image']:.1f}, "
            f"total x{res['speedup_total']:.1f}.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cliper-tiny")
    parser.add_argument("--items", type=int, default=600)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="amp")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--tag", default="")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        items = synth_catalog(folder, args.items, args.image_size, seed=0)
        loop = measure("loop", args, items, folder)
        new = measure("new", args, items, folder)
    res = report(args, len(items), new, loop)
    stem = "extract" + (f"_{args.tag}" if args.tag else "")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{stem}.json").write_text(json.dumps(res, indent=2) + "\n")
    (args.out_dir / f"{stem}.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
