"""Epoch time of DDP training at 1 vs 2 processes on real Baby (CPU, gloo), through the cliper Trainer.

For each backbone (LightGCN, FREEDOM with seeded random 768-d features, as ``speed_cliper.py``)
three launches of this script under ``torchrun``: 1 process x 1 thread, 1 process x 2 threads,
2 processes x 1 thread (``train.distributed.batch: global``: batch 2048 per optimiser step, each
rank computing 1024 of it). Every launch builds the model, trains ``--epochs`` epochs
(:meth:`cliper.train.Trainer.train_epoch`, the code the train stage runs) and rank 0 reports the
median epoch time and the losses. Results: ``benchmarks/results/ddp_train.json`` and ``.md``.

Usage::

    python benchmarks/ddp_train.py --epochs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

RESULTS = REPO / "benchmarks" / "results"
LAYOUTS = [(1, 1), (1, 2), (2, 1)]  # (processes, torch threads per process)
MODELS = ("lightgcn", "freedom")


def worker(name: str, epochs: int, out: Path) -> None:
    """One rank: build, train ``epochs`` epochs, rank 0 writes the timings."""
    import torch
    from real_baby import DEFAULT_INTER, read_inter
    from speed_cliper import SEED, build

    from cliper.config_scale import DistributedConfig
    from cliper.distributed import finish
    from cliper.train import Trainer, TrainSettings

    splits = read_inter(DEFAULT_INTER)
    model, data, build_s = build(name, splits)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    settings = TrainSettings(
        device="cpu", progress=False, seed=SEED, world_size=world, distributed=DistributedConfig()
    )
    trainer = Trainer(
        model, data.train_users, data.train_items, data.n_items, splits.target("valid"), settings
    )
    seconds, losses = [], []
    for _ in range(epochs):
        started = time.perf_counter()
        losses.append(trainer.train_epoch())
        seconds.append(time.perf_counter() - started)
    if trainer.dist.is_main:
        out.write_text(
            json.dumps(
                {
                    "model": name,
                    "processes": world,
                    "threads": torch.get_num_threads(),
                    "build_s": build_s,
                    "epoch_s": seconds,
                    "median_epoch_s": statistics.median(seconds[1:] or seconds),
                    "losses": losses,
                    "train_pairs": len(data.train_users),
                }
            )
        )
    finish()


def launch(name: str, processes: int, threads: int, epochs: int) -> dict:
    """This script under torchrun with ``processes`` ranks of ``threads`` torch threads."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [
            str(Path(sys.executable).parent / "torchrun"),
            "--standalone",  # a free rendezvous port: launches that follow each other never share one
            "--nproc-per-node",
            str(processes),
            __file__,
            "--worker",
            name,
            "--epochs",
            str(epochs),
            "--out",
            str(out),
        ]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        subprocess.run(cmd, check=True, env=env, cwd=REPO)
        result = json.loads(out.read_text())
    result["load_avg_after"] = os.getloadavg()
    return result


def markdown(rows: list[dict]) -> str:
    lines = [
        "# DDP training: epoch time at 1 vs 2 processes (real Baby, CPU, gloo)",
        "",
        "Written by `benchmarks/ddp_train.py`. Batch 2048 per optimiser step (`train.distributed.batch:",
        "global`), median epoch time over the epochs after the first; the 2-core machine was shared with",
        "other jobs (load average after each launch in the last column). NCCL / GPU: not measured (no GPU",
        "was lent).",
        "",
        "| model | processes x threads | s/epoch | vs 1x1 | first/last loss | load avg |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        base = next(
            r for r in rows if r["model"] == row["model"] and r["processes"] == 1 and r["threads"] == 1
        )
        lines.append(
            f"| {row['model']} | {row['processes']} x {row['threads']} | {row['median_epoch_s']:.2f} | "
            f"{base['median_epoch_s'] / row['median_epoch_s']:.2f}x | {row['losses'][0]:.4f} / "
            f"{row['losses'][-1]:.4f} | {row['load_avg_after'][0]:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.epochs, args.out)
        return
    rows = [launch(m, p, t, args.epochs) for m in args.models for p, t in LAYOUTS]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ddp_train.json").write_text(json.dumps(rows, indent=2))
    (RESULTS / "ddp_train.md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
