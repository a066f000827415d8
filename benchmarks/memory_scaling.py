"""Embedding table + Adam memory, measured against the formula used in ``docs/scaling.md``.

For growing entity counts (users + items) a dense ``[n, d]`` float32 table gets one BPR-style
step with the trainer's Adam (:func:`cliper.train._adam`): the parameter, its dense gradient and
Adam's two moments are ``4 * n * d * 4`` bytes. Each size runs in a fresh process so the peak
RSS is its own; the formula's bytes are compared with the measured growth over the baseline.
Results: ``benchmarks/results/memory_scaling.json`` and ``.md``.

Usage::

    python benchmarks/memory_scaling.py --entities 1000000 2000000 4000000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
DIM, BATCH, KIB, MIB = 64, 2048, 1024, 1024**2
TENSORS_PER_ROW = 4  # parameter, gradient, Adam exp_avg, exp_avg_sq
FLOAT_BYTES = 4


def one(n: int) -> dict:
    import torch

    from cliper.train import _adam

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB
    table = torch.nn.Parameter(torch.nn.init.xavier_uniform_(torch.empty(n, DIM)))
    module = torch.nn.Module()
    module.table = table
    optimizer = _adam(module, 1e-3)
    rows = torch.randint(0, n, (3, BATCH))
    u, p, q = (table[r] for r in rows)
    loss = -torch.nn.functional.logsigmoid((u * p).sum(-1) - (u * q).sum(-1)).mean()
    loss.backward()
    optimizer.step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB
    return {
        "entities": n,
        "dim": DIM,
        "formula_mb": TENSORS_PER_ROW * n * DIM * FLOAT_BYTES / MIB,
        "measured_mb": peak - base,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, nargs="+", default=[1_000_000, 2_000_000, 4_000_000])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one)))
        return
    rows = [
        json.loads(
            subprocess.run(
                [sys.executable, __file__, "--one", str(n)], check=True, capture_output=True, text=True
            ).stdout.splitlines()[-1]
        )
        for n in args.entities
    ]
    lines = [
        f"# Embedding table + Adam memory (d={DIM}, float32, one step)",
        "",
        "Written by `benchmarks/memory_scaling.py`: peak RSS growth of a fresh process vs `16 n d` bytes.",
        "",
        "| entities | formula MB | measured MB | measured / formula |",
        "| --- | --- | --- | --- |",
        *(
            f"| {r['entities']:,} | {r['formula_mb']:.0f} | {r['measured_mb']:.0f} | "
            f"{r['measured_mb'] / r['formula_mb']:.2f} |"
            for r in rows
        ),
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "memory_scaling.json").write_text(json.dumps(rows, indent=2))
    (RESULTS / "memory_scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
