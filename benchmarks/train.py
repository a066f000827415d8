"""Training/evaluation speed on the real Baby interactions: seconds per epoch, per full ranking, peak memory.

For each backbone (default LightGCN and FREEDOM) and device (CPU, plus CUDA when available),
a fresh process builds the model on the real Baby train split (19,445 users x 7,050 items) with
random 768-d image and text-view features (5 views, attention fusion), runs ``--epochs``
training epochs through :class:`cliper.train.Trainer` and ``--evals`` full-ranking valid
evaluations, and reports the median seconds, the model build time and the peak memory (process
max RSS; CUDA max allocated). Results: ``benchmarks/results/train_speed.json`` and ``.md``.
Reference (MMRec on this 2-core CPU): LightGCN 3.96 s/epoch, FREEDOM 6.2 s/epoch with 768-d
features, one full-ranking evaluation 2.3-2.9 s.

Usage::

    nice python benchmarks/train.py --epochs 3 --evals 2
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from real_baby import DEFAULT_INTER, read_inter  # noqa: E402

from cliper import io  # noqa: E402
from cliper.config import FusionConfig  # noqa: E402
from cliper.models import Features, InteractionData, build_model, get_model_class  # noqa: E402
from cliper.train import Trainer, TrainSettings, seed_everything  # noqa: E402

FEATURE_DIM, N_VIEWS = 768, 5
REFERENCE = {"lightgcn": 3.96, "freedom": 6.2}


def measure(name: str, device: str, inter: Path, epochs: int, evals: int) -> dict:
    """Time one backbone on one device (run in a fresh process for a clean peak-memory figure)."""
    splits = read_inter(inter)
    data = InteractionData(splits.n_users, splits.n_items, splits.users["train"], splits.items["train"])
    seed_everything(0)
    features = fusion = None
    if get_model_class(name).needs_features:
        gen = torch.Generator().manual_seed(0)
        features = Features(
            torch.randn(data.n_items, FEATURE_DIM, generator=gen),
            torch.randn(N_VIEWS, data.n_items, FEATURE_DIM, generator=gen),
            tuple(f"view{i}" for i in range(N_VIEWS)),
        )
        from cliper.fusion import build_fusion

        fusion = build_fusion(FusionConfig(), N_VIEWS, FEATURE_DIM)
    started = time.perf_counter()
    model = build_model(name, data=data, features=features, fusion=fusion)
    build_s = time.perf_counter() - started
    settings = TrainSettings(device=device, progress=False)
    trainer = Trainer(
        model, data.train_users, data.train_items, data.n_items, splits.target("valid"), settings
    )
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    epoch_s, eval_s = [], []
    for _ in range(epochs):
        t = time.perf_counter()
        trainer.train_epoch()
        _sync(device)
        epoch_s.append(time.perf_counter() - t)
    for _ in range(evals):
        t = time.perf_counter()
        trainer.evaluate(trainer.valid)
        _sync(device)
        eval_s.append(time.perf_counter() - t)
    return {
        "model": name,
        "device": device,
        "threads": torch.get_num_threads(),
        "build_seconds": build_s,
        "seconds_per_epoch": statistics.median(epoch_s),
        "epoch_seconds": epoch_s,
        "seconds_per_eval": statistics.median(eval_s),
        "eval_seconds": eval_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None,
        "mmrec_reference_s_per_epoch_cpu": REFERENCE.get(name),
    }


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def markdown(rows: list[dict]) -> str:
    """Result table."""
    lines = [
        "# Training speed on real Baby (768-d random features for FREEDOM)",
        "",
        "Written by `benchmarks/train.py`; medians over the measured epochs/evaluations.",
        "",
        "| model | device | threads | build s | s/epoch | s/full eval | peak RSS MB | CUDA peak MB "
        "| MMRec s/epoch (CPU) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        cuda = f"{r['cuda_peak_mb']:.0f}" if r["cuda_peak_mb"] is not None else "—"
        lines.append(
            f"| {r['model']} | {r['device']} | {r['threads']} | {r['build_seconds']:.1f} | "
            f"{r['seconds_per_epoch']:.2f} | {r['seconds_per_eval']:.2f} | {r['peak_rss_mb']:.0f} | {cuda} | "
            f"{r['mmrec_reference_s_per_epoch_cpu'] or '—'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Spawn one measurement process per (model, device); collect and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lightgcn", "freedom"])
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu (+ cuda when available)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--evals", type=int, default=2)
    parser.add_argument("--inter", type=Path, default=DEFAULT_INTER)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "DEVICE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], args.one[1], args.inter, args.epochs, args.evals)))
        return
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rows = []
    for name in args.models:
        for device in devices:
            cmd = [
                sys.executable,
                __file__,
                "--one",
                name,
                device,
                "--epochs",
                str(args.epochs),
                "--evals",
                str(args.evals),
                "--inter",
                str(args.inter),
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    meta = {
        "inter": str(args.inter),
        "epochs": args.epochs,
        "evals": args.evals,
        "cpu_count": __import__("os").cpu_count(),
        "load_avg_at_end": list(__import__("os").getloadavg()),
        "numpy": np.__version__,
        "torch": torch.__version__,
    }
    io.write_json(args.out / "train_speed.json", {"meta": meta, "results": rows})
    io.write_text(
        args.out / "train_speed.md",
        markdown(rows) + f"\nLoad average at the end: {meta['load_avg_at_end']}"
        " (the 2-core machine was shared with other jobs; MMRec's reference was measured unloaded).\n",
    )
    print(markdown(rows))


if __name__ == "__main__":
    main()
