"""kNN graph build at 1x / 4x / 16x Baby's items: time and peak memory of :func:`cliper.knn.topk_cosine`.

Each scale runs in a fresh process on seeded random ``[scale x 7,050, dim]`` features and records
the seconds and the process's peak RSS (its baseline, torch imported, is recorded too). Exact
kNN is quadratic in compute (every pair's cosine), but memory must stay linear in the items:
one ``block x I`` similarity panel plus the ``I x k`` running lists. Results:
``benchmarks/results/knn_memory.{json,md,png}``.

Usage::

    python benchmarks/knn_memory.py --scales 1 4 16 --dim 64
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from speed_cliper import peak_rss_mb  # noqa: E402

from cliper import io  # noqa: E402

BABY_ITEMS = 7050
KNN_K = 10  # FREEDOM's default knn_k
BYTES_PER_FLOAT = 4
MB = 2**20


def measure(n_items: int, dim: int, k: int) -> dict:
    """Time one ``topk_cosine`` on random features (run in a fresh process)."""
    import torch

    from cliper import knn

    baseline = peak_rss_mb()
    x = torch.randn(n_items, dim, generator=torch.Generator().manual_seed(0))
    started = time.perf_counter()
    knn.topk_cosine(x, k)
    seconds = time.perf_counter() - started
    return {
        "items": n_items,
        "dim": dim,
        "k": k,
        "threads": torch.get_num_threads(),
        "seconds": seconds,
        "rss_baseline_mb": baseline,
        "rss_peak_mb": peak_rss_mb(),
        "panel_mb": knn.KNN_BLOCK * n_items * BYTES_PER_FLOAT / MB,
        "dense_sim_matrix_mb": n_items * n_items * BYTES_PER_FLOAT / MB,
    }


def plot(rows: list[dict], path: Path) -> None:
    """Seconds and peak RSS against items (log-log) with linear and quadratic guides."""
    from matplotlib.figure import Figure  # here: the measured child processes import this module

    from cliper import plots

    x = [r["items"] for r in rows]
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    for ax, key, title in ((axes[0], "seconds", "kNN build s"), (axes[1], "rss_peak_mb", "peak RSS MB")):
        y = [r[key] for r in rows]
        ax.plot(x, y, "o-", label="measured")
        ax.plot(x, [y[0] * (xi / x[0]) for xi in x], ":", color="grey", label="linear")
        ax.plot(x, [y[0] * (xi / x[0]) ** 2 for xi in x], "--", color="grey", label="quadratic")
        ax.set_xscale("log"), ax.set_yscale("log"), ax.set_title(title), ax.set_xlabel("items")
    axes[1].plot(x, [r["dense_sim_matrix_mb"] for r in rows], "x-", color="red", label="dense I x I matrix")
    axes[1].legend()
    fig.tight_layout()
    plots.save_png(fig, path)


def main() -> None:
    """One process per scale; write JSON, markdown and the plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(measure(args.one, args.dim, KNN_K)))
        return
    load_before, rows = list(os.getloadavg()), []
    for scale in args.scales:
        cmd = [sys.executable, __file__, "--one", str(scale * BABY_ITEMS), "--dim", str(args.dim),
               "--threads", str(args.threads)]  # fmt: skip
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO).stdout
        rows.append({"scale": scale, **json.loads(out.strip().splitlines()[-1])})
        print(json.dumps(rows[-1]), flush=True)
    lines = [
        "# kNN graph build as the items grow (`benchmarks/knn_memory.py`)",
        "",
        f"Random {args.dim}-d features, k = {KNN_K}, {args.threads} thread(s), CPU. Load average "
        f"(1/5/15 min) before {load_before}, after {list(os.getloadavg())}.",
        "",
        "| scale | items | s | peak RSS MB | RSS before MB | one panel MB | dense I x I MB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *[
            f"| {r['scale']}x | {r['items']:,} | {r['seconds']:.1f} | {r['rss_peak_mb']:.0f} | "
            f"{r['rss_baseline_mb']:.0f} | {r['panel_mb']:.0f} | {r['dense_sim_matrix_mb']:.0f} |"
            for r in rows
        ],
        "",
    ]
    io.write_json(args.out / "knn_memory.json", {"load_before": load_before, "rows": rows})
    io.write_text(args.out / "knn_memory.md", "\n".join(lines))
    plot(rows, args.out / "knn_memory.png")


if __name__ == "__main__":
    main()
