"""Benchmark: image fetching throughput from concurrency, against a local server with latency.

The local image host of the tests (``tests/image_server.py``, real HTTP on 127.0.0.1) adds
``--latency-ms`` to every response, standing in for a remote image host. The same items are
fetched at concurrency 1 and at ``fetch.concurrency`` of params.yaml (the default), each into
an empty folder, with the stage's own code (:func:`cliper.data.fetch.fetch_images`).

    python benchmarks/fetch.py                       # 200 items, 50 ms latency
    python benchmarks/fetch.py --items 400 --latency-ms 100

Writes ``benchmarks/results/fetch.json`` and ``fetch.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cliper import io  # noqa: E402
from cliper.config import load_params  # noqa: E402
from cliper.data.fetch import OK, FetchJob, fetch_images  # noqa: E402
from tests.image_server import IMAGE_SIDE, ImageServer  # noqa: E402

TARGET_SPEEDUP = 10.0


def run_once(server: ImageServer, n_items: int, concurrency: int, base) -> dict:
    cfg = dataclasses.replace(base, enabled=True, concurrency=concurrency, progress=False)
    jobs = [FetchJob(i, f"B{concurrency:03d}{i:06d}", server.url("img", f"c{concurrency}-{i}.jpg"))
            for i in range(n_items)]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        outcomes = fetch_images(jobs, cfg, Path(tmp))
        seconds = time.perf_counter() - start
    ok = sum(o.outcome == OK for o in outcomes)
    if ok != n_items:
        raise RuntimeError(f"only {ok} of {n_items} images fetched at concurrency {concurrency}")
    return {"concurrency": concurrency, "items": n_items, "seconds": round(seconds, 3),
            "items_per_s": round(n_items / seconds, 1)}


def report(meta: dict, rows: list[dict], speedup: float) -> str:
    lines = [
        "# Image fetch throughput (local server, added latency)",
        "",
        f"Written by `benchmarks/fetch.py`. {meta['items']} JPEGs ({meta['image_side']} px), "
        f"{meta['latency_ms']} ms added per response, server on 127.0.0.1 in the same process; "
        f"{meta['cpus']} CPUs, Python {meta['python']}.",
        "",
        "| concurrency | seconds | items/s |",
        "| --- | --- | --- |",
        *[f"| {r['concurrency']} | {r['seconds']} | {r['items_per_s']} |" for r in rows],
        "",
        f"Speed-up at the default concurrency: **{speedup:.1f}x** (target >= {TARGET_SPEEDUP:.0f}x: "
        f"{'met' if speedup >= TARGET_SPEEDUP else 'NOT met'}).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    base = load_params(ROOT / "params.yaml").fetch
    with ImageServer(latency_s=args.latency_ms / 1000) as server:
        rows = [run_once(server, args.items, c, base) for c in (1, base.concurrency)]
    speedup = rows[1]["items_per_s"] / rows[0]["items_per_s"]
    meta = {"items": args.items, "latency_ms": args.latency_ms, "image_side": IMAGE_SIDE,
            "default_concurrency": base.concurrency, "cpus": os.cpu_count(),
            "python": platform.python_version()}
    io.write_json(args.out / "fetch.json", {"meta": meta, "runs": rows, "speedup": round(speedup, 2),
                                            "target_speedup": TARGET_SPEEDUP})
    io.write_text(args.out / "fetch.md", report(meta, rows, speedup))
    print(report(meta, rows, speedup))


if __name__ == "__main__":
    main()
