"""FREEDOM's item kNN graph build, measured at growing item counts to extrapolate to 10M items.

Exact: :func:`cliper.knn.topk_cosine` (the trainer's chunked upper-triangle top-k) on seeded
clustered synthetic features, time and peak RSS at each size; its cost is ``n^2 d / 2`` multiply-adds,
so the fit ``t = c n^2`` from the measured points extrapolates it. Approximate: a faiss
``IndexIVFPQ`` (inverted lists + product quantisation: ``m`` bytes per item) built over up to 1M
items; its build time is measured whole, its search on a sample of queries (per-query cost times
``n`` for the whole graph), and its recall@k against the exact neighbours of that sample.
Results: ``benchmarks/results/knn_scaling.json`` and ``.md`` (read by ``docs/scaling.md``).

Usage::

    python benchmarks/knn_scaling.py --exact 10000 20000 40000 --approx 250000 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np
import torch

from cliper.knn import topk_cosine

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
DIM, K, CLUSTERS, NOISE = 768, 10, 2000, 0.6  # Long-CLIP-L width, FREEDOM knn_k (MMRec), data shape
NLIST_PER_SQRT_N, MAX_NLIST, PQ_M, PQ_BITS, NPROBE = (
    4,
    1024,
    96,
    8,
    16,
)  # lists min(4 sqrt n, 1024); 96 B/item
TRAIN_SAMPLE, QUERY_SAMPLE, SEED = 50_000, 2_000, 0
CHUNK, QUERY_CHUNK = 100_000, 200  # rows generated / exact queries scored at once
KIB = 1024


def features(n: int, dim: int = DIM) -> np.ndarray:
    """Seeded clustered float32 rows (cluster centre + Gaussian noise), L2-normalised, built in place."""
    rng = np.random.default_rng(SEED)
    centres = rng.standard_normal((CLUSTERS, dim), dtype=np.float32)
    x = centres[rng.integers(0, CLUSTERS, n)]
    for a in range(0, n, CHUNK):
        part = x[a : a + CHUNK]
        part += NOISE * rng.standard_normal(part.shape, dtype=np.float32)
        part /= np.linalg.norm(part, axis=1, keepdims=True)
    return x


def exact_neighbours(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Exact top-k of ``rows`` against all of ``x``, a few queries at a time (bounded memory)."""
    full = torch.from_numpy(x)
    parts = [
        torch.topk(torch.from_numpy(x[rows[a : a + QUERY_CHUNK]]) @ full.T, K, dim=1).indices
        for a in range(0, len(rows), QUERY_CHUNK)
    ]
    return torch.cat(parts).numpy()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB


def exact(n: int) -> dict:
    x = torch.from_numpy(features(n))
    started = time.perf_counter()
    topk_cosine(x, K)
    return {"kind": "exact", "n": n, "seconds": time.perf_counter() - started, "peak_rss_mb": peak_rss_mb()}


def approx(n: int) -> dict:
    import faiss

    x = features(n)
    rng = np.random.default_rng(SEED + 1)
    nlist = min(int(NLIST_PER_SQRT_N * np.sqrt(n)), MAX_NLIST)
    index = faiss.IndexIVFPQ(faiss.IndexFlatIP(DIM), DIM, nlist, PQ_M, PQ_BITS, faiss.METRIC_INNER_PRODUCT)
    started = time.perf_counter()
    index.train(x[rng.choice(n, min(n, max(TRAIN_SAMPLE, 40 * nlist)), replace=False)])
    index.add(x)
    build_s = time.perf_counter() - started
    index.nprobe = NPROBE
    queries = rng.choice(n, QUERY_SAMPLE, replace=False)
    started = time.perf_counter()
    _, found = index.search(x[queries], K)
    per_query = (time.perf_counter() - started) / QUERY_SAMPLE
    truth = exact_neighbours(x, queries)
    recall = float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))
    return {
        "kind": "ivfpq",
        "n": n,
        "nlist": nlist,
        "nprobe": NPROBE,
        "pq_bytes": PQ_M,
        "build_s": build_s,
        "search_s_per_query": per_query,
        "graph_s": build_s + per_query * n,
        "recall_at_k": recall,
        "index_mb": (n * PQ_M + nlist * DIM * 4) / KIB**2,
        "peak_rss_mb": peak_rss_mb(),
    }


def markdown(rows: list[dict], fit: float) -> str:
    lines = [
        f"# Item kNN graph build (k={K}, d={DIM}, CPU, {torch.get_num_threads()} torch threads)",
        "",
        "Written by `benchmarks/knn_scaling.py` (seeded clustered synthetic features; the 2-core machine",
        "was shared with other jobs).",
        "",
        "| method | items | build s | graph s (all items) | recall@k | index MB | peak RSS MB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if r["kind"] == "exact":
            cells = ["exact chunked top-k", f"{r['n']:,}", "—", f"{r['seconds']:.1f}", "1.000", "—"]
            lines.append("| " + " | ".join([*cells, f"{r['peak_rss_mb']:.0f}"]) + " |")
        else:
            name = f"faiss IVF{r['nlist']},PQ{r['pq_bytes']} nprobe {r['nprobe']}"
            cells = [
                name,
                f"{r['n']:,}",
                f"{r['build_s']:.1f}",
                f"{r['graph_s']:.1f}",
                f"{r['recall_at_k']:.3f}",
            ]
            lines.append(
                "| " + " | ".join([*cells, f"{r['index_mb']:.0f}", f"{r['peak_rss_mb']:.0f}"]) + " |"
            )
    lines += [
        "",
        f"Exact fit t = c n^2: c = {fit:.3e} s (10M items: {fit * 1e14 / 86400:,.0f} days on this CPU).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exact", type=int, nargs="*", default=[10_000, 20_000, 40_000])
    parser.add_argument("--approx", type=int, nargs="*", default=[250_000, 1_000_000])
    args = parser.parse_args()
    torch.manual_seed(SEED)
    rows = [exact(n) for n in args.exact] + [approx(n) for n in args.approx]
    points = [(r["n"], r["seconds"]) for r in rows if r["kind"] == "exact"]
    fit = sum(t * n**2 for n, t in points) / sum(n**4 for n, _ in points) if points else float("nan")
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"rows": rows, "exact_c": fit, "threads": torch.get_num_threads(), "load_avg": os.getloadavg()}
    (RESULTS / "knn_scaling.json").write_text(json.dumps(payload, indent=2))
    (RESULTS / "knn_scaling.md").write_text(markdown(rows, fit))
    print(markdown(rows, fit))


if __name__ == "__main__":
    main()
