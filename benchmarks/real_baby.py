"""Quality check on the real Amazon Baby split: ID-only backbones vs MMRec's published numbers.

Reads ``baby.inter`` (``userID itemID x_label``, tab-separated; see ``data/amazon/README.md``),
trains each backbone with its MMRec defaults (``cliper/models/configs/<name>.yaml``) under the
MMRec protocol (Adam 1e-3, batch 2048, early stopping on valid Recall@20 with patience 20,
test at the best valid epoch) through :func:`cliper.grid.grid_search`, and writes
``<out>/real_baby.json`` and ``<out>/real_baby.md``. Checkpoints go to
``.cache/cliper/train/real_baby/`` so an interrupted run resumes.

Usage::

    nice python benchmarks/real_baby.py --models lightgcn bpr
    nice python benchmarks/real_baby.py --inter /path/to/baby.inter --models bpr --out benchmarks/results
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

import pandas as pd
import torch

from cliper import io
from cliper.evaluate import Splits
from cliper.grid import checkpoint_dir, grid_search, read_progress
from cliper.models import InteractionData, build_model, resolve_config
from cliper.train import TrainSettings

REPO = Path(__file__).resolve().parents[1]
DEFAULT_INTER = REPO.parent / "shared" / "data" / "amazon" / "baby" / "baby.inter"
# MMRec-protocol targets on Baby (Recall@20, NDCG@20) from data/amazon/README.md.
TARGETS = {"bpr": (0.0575, 0.0249), "lightgcn": (0.0754, 0.0328)}
TOLERANCE = 0.05


def read_inter(path: Path) -> Splits:
    """``baby.inter`` -> :class:`Splits` (MMRec column names mapped to the project's)."""
    df = pd.read_csv(path, sep="\t", usecols=["userID", "itemID", "x_label"])
    df = df.rename(columns={"userID": "user_id", "itemID": "item_id"})
    return Splits.from_frame(df, source=str(path))


def data_hash(splits: Splits) -> str:
    """Content hash of the three splits (names the checkpoint folder with the model)."""
    return io.sha256_array(
        *(a for s in ("train", "valid", "test") for a in (splits.users[s], splits.items[s]))
    )


def cache_key(name: str, splits: Splits) -> dict:
    """What names a model's checkpoint folder besides the settings."""
    return {"benchmark": "real_baby", "model": name, "data": data_hash(splits)}


def run_model(name: str, splits: Splits, settings: TrainSettings, cache: Path) -> dict:
    """Train ``name`` with its defaults; returns the record for the report."""
    data = InteractionData(splits.n_users, splits.n_items, splits.users["train"], splits.items["train"])
    started = time.perf_counter()
    result = grid_search(
        [{}],
        lambda p: build_model(name, data=data, config=p),
        data.train_users,
        data.train_items,
        data.n_items,
        splits.target("valid"),
        splits.target("test"),
        settings,
        cache_dir=cache,
        cache_key=cache_key(name, splits),
    )
    rec = result.points[result.best_index]
    target = TARGETS.get(name)
    recall, ndcg = rec["test"]["recall@20"], rec["test"]["ndcg@20"]
    within = None
    if target:
        within = bool(abs(recall / target[0] - 1) <= TOLERANCE and abs(ndcg / target[1] - 1) <= TOLERANCE)
    return {
        "model": name,
        "config": resolve_config(name, {}),
        "best_epoch": rec["best_epoch"],
        "n_epochs": rec["n_epochs"],
        "seconds_per_epoch": rec["seconds_per_epoch"],
        "wall_seconds": time.perf_counter() - started,
        "valid": rec["valid"],
        "test": rec["test"],
        "target_recall@20": target[0] if target else None,
        "target_ndcg@20": target[1] if target else None,
        "within_5pct": within,
    }


def markdown(records: list[dict], meta: dict) -> str:
    """The report table."""
    lines = [
        "# Real Amazon Baby: test metrics at the best valid epoch (MMRec protocol)",
        "",
        f"Data: `{meta['inter']}` ({meta['n_users']} users, {meta['n_items']} items); "
        f"device {meta['device']}, torch threads {meta['threads']}; batches per epoch: "
        f"{meta['settings'].get('batches_per_epoch') or 'MMRec (batches of 2048)'}. "
        "Written by `benchmarks/real_baby.py`.",
        "",
        "| model | best epoch | epochs run | train s/epoch | R@10 | R@20 | N@10 | N@20 "
        "| target R@20 / N@20 | within ±5% |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in records:
        t = r["test"]
        target = f"{r['target_recall@20']} / {r['target_ndcg@20']}" if r["target_recall@20"] else "—"
        lines.append(
            f"| {r['model']} | {r['best_epoch']} | {r['n_epochs']} | {r['seconds_per_epoch']:.2f} | "
            f"{t['recall@10']:.4f} | {t['recall@20']:.4f} | {t['ndcg@10']:.4f} | {t['ndcg@20']:.4f} | "
            f"{target} | {r['within_5pct']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Parse arguments, run every model, write JSON + markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inter", type=Path, default=DEFAULT_INTER)
    parser.add_argument("--models", nargs="+", default=["lightgcn", "bpr"])
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--patience", type=int, default=20)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--cache", type=Path, default=REPO / ".cache" / "cliper" / "train" / "real_baby")
    parser.add_argument("--tag", default="", help="suffix of the output file names")
    parser.add_argument("--batches-per-epoch", type=int, default=None,
                        help="train.batches_per_epoch (off: MMRec's batches of 2048)")
    parser.add_argument("--status", action="store_true", help="print checkpoint progress and exit")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    splits = read_inter(args.inter)
    settings = TrainSettings(epochs=args.epochs, patience=args.patience, device=args.device, progress=False,
                             batches_per_epoch=args.batches_per_epoch)
    if args.status:
        for name in args.models:
            folder = checkpoint_dir(args.cache, cache_key(name, splits), {}, settings)
            print(name, json.dumps(read_progress(folder), default=float))
        return
    records = []
    for name in args.models:
        records.append(run_model(name, splits, settings, args.cache))
        logging.info("%s: %s", name, json.dumps(records[-1]["test"]))
    meta = {
        "inter": str(args.inter),
        "n_users": splits.n_users,
        "n_items": splits.n_items,
        "device": settings.device
        if settings.device != "auto"
        else ("cuda" if torch.cuda.is_available() else "cpu"),
        "threads": torch.get_num_threads(),
        "settings": dataclasses.asdict(settings),
    }
    stem = f"real_baby{('_' + args.tag) if args.tag else ''}"
    io.write_json(args.out / f"{stem}.json", {"meta": meta, "results": records})
    io.write_text(args.out / f"{stem}.md", markdown(records, meta))
    print(markdown(records, meta))


if __name__ == "__main__":
    main()
