"""Cost as the data grows: synthetic interaction sets of 1x, 4x and 16x Baby's size.

Each set is ``scale`` copies of real Baby (users and items renumbered per copy, so users, items
and interactions all grow by ``scale``) whose item column is then shuffled across all rows: the
bipartite configuration model, so every user keeps its degree (per split) and every item its
degree, while the copies are wired into one graph. Pairs the shuffle duplicates are dropped
(a few per thousand).

Per backbone and scale a fresh ``benchmarks/speed_cliper.py`` process builds the model (FREEDOM:
random 768-d features, five text views, both kNN graphs), times ``--batches`` training batches
(seconds per batch x batches per epoch = the epoch) and a full-ranking evaluation of the first
``--eval-users`` valid users (scaled to all of them), and records its peak RSS after the build,
after training and after the evaluation. Results: ``benchmarks/results/scaling.{json,md,png}``.

Usage::

    python benchmarks/scaling.py --scales 1 4 16 --models lightgcn freedom
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from real_baby import DEFAULT_INTER  # noqa: E402

from cliper import io  # noqa: E402

SEED = 20261201
COLUMNS = ["userID", "itemID", "x_label"]


def scaled_inter(base: pd.DataFrame, scale: int, seed: int = SEED) -> pd.DataFrame:
    """``scale`` renumbered copies of ``base``, item column shuffled over all rows, duplicates dropped."""
    n_users, n_items = int(base.userID.max()) + 1, int(base.itemID.max()) + 1
    copies = np.repeat(np.arange(scale), len(base))
    users = np.tile(base.userID.to_numpy(), scale) + copies * n_users
    items = np.tile(base.itemID.to_numpy(), scale) + copies * n_items
    items = np.random.default_rng(seed).permutation(items)
    frame = pd.DataFrame(
        {"userID": users, "itemID": items, "x_label": np.tile(base.x_label.to_numpy(), scale)}
    )
    return frame.drop_duplicates(["userID", "itemID"]).reset_index(drop=True)


def run(cmd: list[str]) -> dict:
    """One measurement process: its JSON line plus wall time and load."""
    load, started = os.getloadavg(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed: {proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out.update(wall_s=time.perf_counter() - started, load_before=list(load), load_after=list(os.getloadavg()))
    return out


def row(scale: int, r: dict, batches_per_epoch: int | None = None) -> dict:
    """The plotted figures of one measurement (model labelled with the batches-per-epoch option)."""
    rss = r["rss_mb"]
    label = r["model"] if batches_per_epoch is None else f"{r['model']}, {batches_per_epoch} batches/epoch"
    return {
        "scale": scale,
        "model": label,
        "batch_size": r.get("batch_size"),
        "users": r["n_users"],
        "items": r["n_items"],
        "train_pairs": r["n_train"],
        "build_s": r["build_seconds"],
        "batch_s": float(np.median(r["batch_seconds"])),
        "epoch_s": float(np.median(r["epoch_seconds"])),
        "eval_s": float(np.median(r["eval_seconds"])),
        "eval_ms_per_user": 1e3 * float(np.median(r["eval_seconds"])) / r["valid_users"],
        "rss_built_mb": rss["built"],
        "rss_trained_mb": rss["trained"],
        "rss_peak_mb": rss["peak"],
        "eval_rss_increase_mb": max(0.0, rss["peak"] - rss["trained"]),
        "batches_timed": r["batches_timed"],
        "valid_users_timed": r["valid_users_timed"],
        "load_before": r["load_before"],
        "load_after": r["load_after"],
    }


def plot(rows: list[dict], path: Path) -> None:
    """Log-log panels against train pairs, with a linear (slope 1) guide from the 1x point."""
    from matplotlib.figure import Figure  # here: the measured child processes import this module

    from cliper import plots

    panels = [
        ("batch_s", "s per training batch"),
        ("epoch_s", "s per epoch (batch x batches)"),
        ("eval_ms_per_user", "ms per evaluated user"),
        ("build_s", "model build s (incl. kNN)"),
        ("rss_peak_mb", "peak RSS MB"),
        ("eval_rss_increase_mb", "evaluation RSS increase MB"),
    ]
    fig = Figure(figsize=(13, 7))
    axes = fig.subplots(2, 3)
    for ax, (key, title) in zip(axes.flat, panels, strict=True):
        for model in dict.fromkeys(r["model"] for r in rows):
            pts = sorted((r["train_pairs"], r[key]) for r in rows if r["model"] == model and r[key] > 0)
            if not pts:
                continue
            x, y = zip(*pts, strict=True)
            ax.plot(x, y, "o-", label=model)
            ax.plot(x, [y[0] * xi / x[0] for xi in x], ":", color="grey")
        ax.set_xscale("log"), ax.set_yscale("log")
        ax.set_title(title), ax.set_xlabel("train pairs")
    axes.flat[0].legend(title="dotted: linear")
    fig.tight_layout()
    plots.save_png(fig, path)


def markdown(rows: list[dict], meta: dict) -> str:
    """The scaling table."""
    lines = [
        "# Cost as the data grows (synthetic 1x / 4x / 16x Baby)",
        "",
        f"Written by `benchmarks/scaling.py` ({meta['started']} to {meta['finished']}), "
        f"{meta['threads']} torch thread, CPU (GPU: not measured). Epoch = median s/batch over "
        f"{meta['batches']} timed batches x batches per epoch; evaluation = the first {meta['eval_users']} "
        "valid users, scaled to all. Plot: `scaling.png`.",
        "",
        "| model | scale | users | items | train pairs | batch | build s | s/batch | s/epoch | eval s | "
        "ms/user | peak RSS MB | eval RSS +MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['scale']}x | {r['users']:,} | {r['items']:,} | {r['train_pairs']:,} | "
            f"{r['batch_size']:,} | {r['build_s']:.1f} | {r['batch_s']:.3f} | {r['epoch_s']:.1f} | "
            f"{r['eval_s']:.1f} | "
            f"{r['eval_ms_per_user']:.3f} | {r['rss_peak_mb']:.0f} | {r['eval_rss_increase_mb']:.0f} |"
        )
    lines += ["", f"Load average (1/5/15 min) before {meta['load_before']}, after {meta['load_after']}.", ""]
    return "\n".join(lines)


def main() -> None:
    """Write the synthetic sets, measure each (model, scale), write table and plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--models", nargs="+", default=["lightgcn", "freedom"])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--eval-users", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches-per-epoch", type=int, nargs="*", default=[],
                        help="also measure with train.batches_per_epoch = each value (fixed steps per epoch)")
    parser.add_argument("--skip", nargs="*", default=[], metavar="MODEL:SCALE",
                        help="pairs not measured (freedom:16: its exact 768-d kNN is ~12 min on one core)")
    parser.add_argument("--variant-models", nargs="*", default=None,
                        help="models measured with --batches-per-epoch too (default: all)")
    parser.add_argument("--inter", type=Path, default=DEFAULT_INTER)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    base = pd.read_csv(args.inter, sep="\t", usecols=COLUMNS)
    meta = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "load_before": list(os.getloadavg()),
            "threads": args.threads, "batches": args.batches, "eval_users": args.eval_users}  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory(prefix="cliper-scaling-") as tmp:
        for scale in args.scales:
            inter = Path(tmp) / f"baby_x{scale}.inter"
            scaled_inter(base, scale).to_csv(inter, sep="\t", index=False)
            for model, per_epoch in itertools.product(args.models, [None, *args.batches_per_epoch]):
                varied = args.variant_models is None or model in args.variant_models
                if (per_epoch is not None and not varied) or f"{model}:{scale}" in args.skip:
                    continue
                cmd = [sys.executable, str(REPO / "benchmarks" / "speed_cliper.py"), "--model", model,
                       "--inter", str(inter), "--epochs", "1", "--threads", str(args.threads),
                       "--max-batches", str(args.batches), "--eval-users", str(args.eval_users)]  # fmt: skip
                if per_epoch is not None:
                    cmd += ["--batches-per-epoch", str(per_epoch)]
                rows.append(row(scale, run(cmd), per_epoch))
                print(json.dumps(rows[-1]), flush=True)
                _write(rows, meta, args.out)  # partial results survive an interrupted run


def _write(rows: list[dict], meta: dict, out: Path) -> None:
    meta = {**meta, "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "load_after": list(os.getloadavg())}
    io.write_json(out / "scaling.json", {"meta": meta, "rows": rows})
    io.write_text(out / "scaling.md", markdown(rows, meta))
    plot(rows, out / "scaling.png")


if __name__ == "__main__":
    main()
