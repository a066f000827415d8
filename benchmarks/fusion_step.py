"""FREEDOM's training step with a learnable fusion: fused per distinct item vs per requested row.

``MultimodalRecommender.text_features(items)`` runs a learnable fusion (self_attention, mlp) once
per distinct item of ``items`` and gathers the rows back, and FREEDOM asks once for a batch's
positives and negatives together. Before, the fusion ran on every requested row, twice per step
(positives, then negatives). This runs both forms side by side in one process on the demo's
shape (2,000 items, 1,200 users, 5 views x 128 dims, batch 2048; random data and features, the
train stage's batch sampling replaced by uniform draws), alternating rounds so that machine load
hits both alike, and checks that both give the same loss and gradients.

Results: ``benchmarks/results/fusion_step.{json,md}``.

Usage::

    python benchmarks/fusion_step.py --rounds 5 --steps 20 --threads 1
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

from cliper.config import FusionConfig
from cliper.fusion import build_fusion
from cliper.models import Features, InteractionData, build_model
from cliper.models.base import bpr_loss, rows
from cliper.models.freedom import _modality_bpr
from cliper.models.multimodal import MultimodalRecommender

REPO = Path(__file__).resolve().parents[1]
N_USERS, N_ITEMS, N_VIEWS, DIM = 1200, 2000, 5, 128  # the demo catalog's shape
N_PAIRS, BATCH = 16000, 2048
SEED = 0


def per_row(model: MultimodalRecommender, items: torch.Tensor | None = None) -> torch.Tensor:
    """The former ``text_features``: the fusion run on every requested row, repeats included."""
    if items is None:
        return model.fusion(model.text_views, model.image_raw)[0]
    return model.fusion(model.text_views[:, items], model.image_raw[items])[0]


def per_row_freedom_loss(model, users, pos, neg) -> torch.Tensor:
    """The former FREEDOM loss, kept verbatim as the reference: the fusion on positives, then negatives."""
    user_all, item_all = model.compute_embeddings()
    u = rows(user_all, users)
    loss = bpr_loss((u * rows(item_all, pos)).sum(-1), (u * rows(item_all, neg)).sum(-1))
    mf_t = _modality_bpr(u, model.text_trs, per_row(model, pos), per_row(model, neg))
    mf_v = _modality_bpr(u, model.image_trs, model.image_features(pos), model.image_features(neg))
    return loss + model.reg_weight * (mf_t + mf_v)


def build(fusion: str) -> MultimodalRecommender:
    rng = np.random.default_rng(SEED)
    data = InteractionData(
        N_USERS, N_ITEMS, rng.integers(0, N_USERS, N_PAIRS), rng.integers(0, N_ITEMS, N_PAIRS)
    )
    gen = torch.Generator().manual_seed(SEED)
    features = Features(
        torch.randn(N_ITEMS, DIM, generator=gen),
        torch.randn(N_VIEWS, N_ITEMS, DIM, generator=gen),
        tuple(f"v{i}" for i in range(N_VIEWS)),
    )
    torch.manual_seed(SEED)
    return build_model(
        "freedom", data, {}, features=features, fusion=build_fusion(FusionConfig(name=fusion), N_VIEWS, DIM)
    )


def batches(steps: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(SEED + 1)
    return [
        tuple(torch.randint(0, n, (BATCH,), generator=gen) for n in (N_USERS, N_ITEMS, N_ITEMS))
        for _ in range(steps)
    ]


def timed(model, loss_fn, data) -> float:
    """Seconds per step (forward + backward) over ``data``."""
    model.train()
    model.pre_epoch()
    started = time.perf_counter()
    for users, pos, neg in data:
        model.zero_grad()
        loss_fn(users, pos, neg).backward()
    return (time.perf_counter() - started) / len(data)


def same_result(model, data) -> float:
    """Largest absolute difference of loss and gradients between the two forms (one batch)."""
    users, pos, neg = data[0]
    out = []
    for fn in (model.calculate_loss, lambda *b: per_row_freedom_loss(model, *b)):
        model.zero_grad()
        loss = fn(users, pos, neg)
        loss.backward()
        out.append([loss.detach()] + [p.grad.clone() for p in model.parameters() if p.grad is not None])
    return max(float((a - b).abs().max()) for a, b in zip(*out, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20, help="training steps timed per round and form")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fusions", nargs="+", default=["self_attention", "mlp"])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = batches(args.steps)
    distinct = float(np.mean([len(torch.unique(torch.cat([p, n]))) for _, p, n in data]))
    results = {}
    for fusion in args.fusions:
        model = build(fusion)
        forms = {
            "distinct items": model.calculate_loss,
            "every row": lambda *b, m=model: per_row_freedom_loss(m, *b),
        }
        timed(model, model.calculate_loss, data[:2])  # warm-up
        times: dict[str, list[float]] = {name: [] for name in forms}
        for r in range(args.rounds):
            for name in list(forms) if r % 2 == 0 else list(forms)[::-1]:  # order swapped each round
                times[name].append(timed(model, forms[name], data))
        ratios = [a / b for a, b in zip(times["distinct items"], times["every row"], strict=True)]
        results[fusion] = {
            "seconds_per_step": {k: statistics.median(v) for k, v in times.items()},
            "ratio_median": statistics.median(ratios),
            "ratio_range": [min(ratios), max(ratios)],
            "max_abs_diff": same_result(model, data),
        }
    out = {
        "shape": {"users": N_USERS, "items": N_ITEMS, "views": N_VIEWS, "dim": DIM, "batch": BATCH},
        "mean_distinct_items_per_step": distinct,
        "rows_per_step_before": 2 * BATCH,
        "rounds": args.rounds,
        "steps": args.steps,
        "threads": args.threads,
        "machine": platform.processor() or platform.machine(),
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fusion_step.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        "# FREEDOM step with a learnable fusion: distinct items vs every row (one run, side by side)",
        "",
        f"Written by `benchmarks/fusion_step.py`: demo shape ({N_ITEMS} items, {N_USERS} users, "
        f"{N_VIEWS} views x {DIM}), batch {BATCH} (positives + negatives = {2 * BATCH} rows, "
        f"{distinct:.0f} distinct items per step on average), {args.steps} steps per round, "
        f"{args.rounds} rounds with the order swapped, {args.threads} torch thread(s).",
        "",
        "| fusion | s/step, distinct items | s/step, every row | ratio median [range] | max abs diff |",
        "| --- | --- | --- | --- | --- |",
    ]
    for fusion, r in results.items():
        s = r["seconds_per_step"]
        lines.append(
            f"| {fusion} | {s['distinct items']:.4f} | {s['every row']:.4f} | {r['ratio_median']:.2f} "
            f"[{r['ratio_range'][0]:.2f} – {r['ratio_range'][1]:.2f}] | {r['max_abs_diff']:.1e} |"
        )
    (args.out / "fusion_step.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
