"""The cliper side of the speed benchmarks: one backbone, one process, timings as JSON.

Used by ``benchmarks/train.py`` (real Baby, beside MMRec) and ``benchmarks/scaling.py``
(synthetic 1x/4x/16x). It mirrors what ``../shared/reference/mmrec_run.py`` times on the MMRec
side: the model constructor (adjacency, fusion, kNN graphs), then per epoch one training epoch
(``pre_epoch`` included) followed by one full-ranking evaluation of valid.

Run as a script it prints one JSON object (the last line of stdout)::

    python benchmarks/speed_cliper.py --model freedom --epochs 2 --threads 1
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from real_baby import DEFAULT_INTER, read_inter  # noqa: E402

from cliper.config import FusionConfig  # noqa: E402
from cliper.evaluate import Splits  # noqa: E402
from cliper.fusion import build_fusion  # noqa: E402
from cliper.models import Features, InteractionData, build_model, get_model_class  # noqa: E402
from cliper.train import Trainer, TrainSettings, epoch_batch_size, seed_everything  # noqa: E402

FEATURE_DIM, N_VIEWS = 768, 5  # CLIPER's width (Long-CLIP-L) and its five text views
SEED = 999  # MMRec's default seed, as mmrec_run.py
KIB = 1024


def peak_rss_mb() -> float:
    """This process's peak resident set so far (MB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB


def random_features(n_items: int, dim: int = FEATURE_DIM, n_views: int = N_VIEWS) -> Features:
    """Seeded random float32 image + text-view features (timing only, as mmrec_run.py)."""
    gen = torch.Generator().manual_seed(SEED)
    return Features(
        torch.randn(n_items, dim, generator=gen),
        torch.randn(n_views, n_items, dim, generator=gen),
        tuple(f"view{i}" for i in range(n_views)),
    )


def build(name: str, splits: Splits) -> tuple[torch.nn.Module, InteractionData, float]:
    """Seed, make features (multimodal backbones) and time ``build_model``."""
    data = InteractionData(splits.n_users, splits.n_items, splits.users["train"], splits.items["train"])
    features = fusion = None
    if get_model_class(name).needs_features:
        features = random_features(data.n_items)
        fusion = build_fusion(FusionConfig(), N_VIEWS, FEATURE_DIM)
    seed_everything(SEED)
    started = time.perf_counter()
    model = build_model(name, data=data, features=features, fusion=fusion)
    return model, data, time.perf_counter() - started


def measure(
    name: str,
    splits: Splits,
    epochs: int,
    max_batches: int | None = None,
    eval_users: int | None = None,
    batches_per_epoch: int | None = None,
) -> dict:
    """Build, then ``epochs`` x (train epoch, valid evaluation); times in seconds, memory in MB.

    Args:
        max_batches: stop each epoch after this many batches (scaling runs); the epoch time is then
            ``seconds per batch x batches per epoch``.
        eval_users: evaluate only the first this-many valid users (scaling runs); the evaluation
            time is then scaled to all valid users.
    """
    rss_start = peak_rss_mb()
    model, data, build_s = build(name, splits)
    rss_built = peak_rss_mb()
    valid = splits.target("valid")
    n_valid = valid.n_users
    if eval_users is not None and eval_users < n_valid:
        valid = _first_users(valid, eval_users)
    settings = TrainSettings(device="cpu", progress=False, seed=SEED)
    if batches_per_epoch is not None:  # the trainer's batch for the whole epoch, fixed: _train times a subset
        wanted = replace(settings, batches_per_epoch=batches_per_epoch)
        settings = replace(settings, batch_size=epoch_batch_size(wanted, len(data.train_users)))
    trainer = Trainer(model, data.train_users, data.train_items, data.n_items, valid, settings)
    n_batches = -(-len(data.train_users) // settings.batch_size)
    epoch_s, eval_s, batch_s = [], [], []
    rss_trained = rss_built
    for _ in range(epochs):
        done, seconds = _train(trainer, max_batches)
        batch_s.append(seconds / done)
        epoch_s.append(seconds / done * n_batches)
        rss_trained = peak_rss_mb()
        started = time.perf_counter()
        trainer.evaluate(trainer.valid)
        eval_s.append((time.perf_counter() - started) * n_valid / valid.n_users)
    return {
        "model": name,
        "threads": torch.get_num_threads(),
        "n_users": data.n_users,
        "n_items": data.n_items,
        "n_train": len(data.train_users),
        "batches_per_epoch": n_batches,
        "batch_size": settings.batch_size,
        "batches_timed": done,
        "valid_users": n_valid,
        "valid_users_timed": valid.n_users,
        "build_seconds": build_s,
        "epoch_seconds": epoch_s,
        "batch_seconds": batch_s,
        "eval_seconds": eval_s,
        "rss_mb": {"start": rss_start, "built": rss_built, "trained": rss_trained, "peak": peak_rss_mb()},
    }


def _train(trainer: Trainer, max_batches: int | None) -> tuple[int, float]:
    """One full epoch, or ``max_batches`` batches of random train pairs; (batches run, seconds)."""
    full_users, full_items = trainer.users, trainer.items
    keep = (
        len(full_users)
        if max_batches is None
        else min(len(full_users), max_batches * trainer.settings.batch_size)
    )
    if keep < len(full_users):
        pick = trainer.rng.choice(len(full_users), keep, replace=False)
        trainer.users, trainer.items = full_users[pick], full_items[pick]
    try:
        started = time.perf_counter()
        trainer.train_epoch()
        seconds = time.perf_counter() - started
    finally:
        trainer.users, trainer.items = full_users, full_items
    return -(-keep // trainer.settings.batch_size), seconds


def _first_users(target, n: int):
    """The same :class:`EvalTarget` restricted to its first ``n`` users."""
    return replace(target, users=target.users[:n], target_indptr=target.target_indptr[: n + 1])


def main() -> None:
    """Measure one backbone and print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--inter", type=Path, default=DEFAULT_INTER)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--max-batches", type=int, default=None)
    parser.add_argument("--eval-users", type=int, default=None)
    parser.add_argument("--batches-per-epoch", type=int, default=None, help="train.batches_per_epoch (off)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    np.random.seed(SEED)
    result = measure(args.model, read_inter(args.inter), args.epochs, args.max_batches, args.eval_users,
                     args.batches_per_epoch)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
