"""Full-ranking evaluation: ``torch.topk`` (cliper's ranking) vs counting each target's rank.

:func:`cliper.evaluate.rank_hits` takes ``torch.topk`` at the largest K and looks every ranked
item up among the user's targets (MMRec's way). The train stage evaluates valid after every epoch,
and at K = 50 ``topk`` took a fifth of a demo grid point's time (a cProfile, stop 46). The
candidate measured here ranks each target instead, by counting the items its user scores at least
as high (``counted_hits``): one comparison per score and target, no sort. It gives the same hits
wherever scores do not tie.

Both forms run in one process on random scores of two shapes: the demo catalog's valid split
and real Amazon Baby's test split (users, items, train items masked and targets per user as
there), alternating rounds so that machine load hits both alike, and the hit matrices are
compared. Outcome here: the candidate is faster on the demo's 2,000 items and slower on Baby's
7,050 (summing the comparisons costs more than ``topk``), so cliper keeps ``topk``.

Results: ``benchmarks/results/rank_hits.{json,md}``.

Usage::

    python benchmarks/rank_hits.py --rounds 5 --threads 1 2
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from cliper.csr import expand_rows
from cliper.evaluate import EvalTarget, rank_hits

REPO = Path(__file__).resolve().parents[1]
# name: (users, items, train items per user, targets per user), as in the splits
SHAPES = {
    "demo valid": (1200, 2000, 10, 1.5),
    "Amazon Baby test": (19445, 7050, 6, 1.2),
}
MAX_K, BATCH_USERS, SEED = 50, 4096, 0
FORMS = ("topk + lookup (cliper)", "rank counting (candidate)")


def counted_hits(score_fn, target: EvalTarget, max_k: int, batch_users: int) -> np.ndarray:
    """The candidate: a target's 0-based rank is the count of items scored >= it, itself excluded."""
    out = np.zeros((target.n_users, max_k), dtype=bool)
    for start in range(0, target.n_users, batch_users):
        stop = min(start + batch_users, target.n_users)
        users = target.users[start:stop]
        scores = score_fn(torch.as_tensor(users)).float()
        rows, cols = expand_rows(target.mask_indptr, target.mask_items, users)
        scores[torch.as_tensor(rows), torch.as_tensor(cols)] = -torch.inf
        t_rows, t_cols = expand_rows(target.target_indptr, target.target_items, np.arange(start, stop))
        r, t = torch.as_tensor(t_rows), scores[torch.as_tensor(t_rows), torch.as_tensor(t_cols)]
        ranks = ((scores[r] >= t[:, None]).sum(dim=1) - 1).numpy()
        hit = ranks < max_k
        out[start + t_rows[hit], ranks[hit]] = True
    return out


def case(users: int, items: int, train_per_user: int, targets_per_user: float):
    """(user embeddings, item embeddings, target) of random data with the split's shape."""
    rng = np.random.default_rng(SEED)
    n_train, n_target = users * train_per_user, int(users * targets_per_user)
    target = EvalTarget.build(
        users, items, rng.integers(0, users, n_train), rng.integers(0, items, n_train),
        np.concatenate([np.arange(users), rng.integers(0, users, n_target - users)]),
        rng.integers(0, items, n_target),
    )
    gen = torch.Generator().manual_seed(SEED)
    return torch.randn(users, 64, generator=gen), torch.randn(items, 64, generator=gen), target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="torch thread counts (the train stage's grid processes: 1 each)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    results = [row for name, shape in SHAPES.items() for row in measure(name, shape, args)]
    write(args, results)


def measure(name: str, shape: tuple, args: argparse.Namespace) -> list[dict]:
    """One row per thread count: both forms' median seconds per evaluation of ``shape``."""
    user_emb, item_emb, target = case(*shape)

    def score_fn(u: torch.Tensor) -> torch.Tensor:
        return user_emb[u] @ item_emb.T  # a fresh product, as full_sort_predict returns

    forms = {
        FORMS[0]: lambda: rank_hits(score_fn, target, MAX_K, BATCH_USERS, owns_scores=True),
        FORMS[1]: lambda: counted_hits(score_fn, target, MAX_K, BATCH_USERS),
    }
    same = bool(np.array_equal(forms[FORMS[0]](), forms[FORMS[1]]()))
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        times: dict[str, list[float]] = {form: [] for form in FORMS}
        for r in range(args.rounds):
            for form in FORMS if r % 2 == 0 else FORMS[::-1]:  # order swapped each round
                started = time.perf_counter()
                forms[form]()
                times[form].append(time.perf_counter() - started)
        ratios = [a / b for a, b in zip(times[FORMS[0]], times[FORMS[1]], strict=True)]
        rows.append({
            "shape": name, "users": target.n_users, "items": target.n_items,
            "targets": int(target.pos_len.sum()), "threads": threads,
            "seconds": {form: statistics.median(v) for form, v in times.items()},
            "seconds_rounds": times,
            "speedup_median": statistics.median(ratios), "speedup_range": [min(ratios), max(ratios)],
            "same_hits": same,
        })
    return rows


def write(args: argparse.Namespace, results: list[dict]) -> None:
    out = {"max_k": MAX_K, "batch_users": BATCH_USERS, "rounds": args.rounds,
           "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
           "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rank_hits.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        "# Full-ranking evaluation: topk (cliper) vs counting ranks (a candidate; one run, side by side)",
        "",
        f"Written by `benchmarks/rank_hits.py`: hits at K = {MAX_K} for every evaluated user, random "
        f"scores (64-dim dot products), {args.rounds} rounds with the order swapped, torch "
        f"{torch.__version__}; median seconds per evaluation "
        "(scoring included). Speed-up: the candidate's, above 1 when it is faster.",
        "",
        f"| split shape | users x items | threads | {FORMS[0]} | {FORMS[1]} "
        "| candidate speed-up median [range] | same hits |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        s = r["seconds"]
        lines.append(
            f"| {r['shape']} | {r['users']} x {r['items']} | {r['threads']} | {s[FORMS[0]]:.4f} | "
            f"{s[FORMS[1]]:.4f} | {r['speedup_median']:.2f}x [{r['speedup_range'][0]:.2f} – "
            f"{r['speedup_range'][1]:.2f}] | {'yes' if r['same_hits'] else 'NO'} |"
        )
    (args.out / "rank_hits.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
