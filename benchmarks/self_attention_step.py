"""FREEDOM's training step with the self-attention fusion: query projected into view space vs
``nn.MultiheadAttention``.

The self-attention fusion has one query token (the image) over ``V`` view tokens.
``nn.MultiheadAttention`` projects every view into keys and values; ``SelfAttentionFusion.fuse``
now projects the query into view space instead (``W_kᵀ q`` per head), pools the views per head,
and projects the pooled view once (``W_v Σ_v a_v T_v``). The maths are the same, so the loss and
gradients agree to float rounding (checked, relative to each tensor's largest value). This runs
both forms side by side in one process: the demo's shape, the train stage's FREEDOM step with the
fusion on each batch's distinct items, and rounds alternated so that machine load hits both
alike. The former form is kept verbatim here as the reference.

Results: ``benchmarks/results/self_attention_step.{json,md}``.

Usage::

    python benchmarks/self_attention_step.py --rounds 5 --steps 20 --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from demo_experiments import cpu_model  # noqa: E402
from fusion_step import BATCH, DIM, N_ITEMS, N_USERS, N_VIEWS, batches, build, timed  # noqa: E402

FORMS = ("query projected (now)", "nn.MultiheadAttention (before)")
# A gradient that vanishes mathematically (the output bias cancels in the modality BPR's pos - neg)
# is float noise near 1e-15; the fusion's real gradients here are 1e-8 and above.
NOISE_FLOOR = 1e-9


def multihead_fuse(fusion, text_views: torch.Tensor, image: torch.Tensor):  # noqa: ANN001, ANN201
    """The former ``SelfAttentionFusion.fuse``: keys and values projected from every view."""
    tokens = text_views.transpose(0, 1)  # [I, V, D]
    out, weights = fusion.attn(
        image.unsqueeze(1), tokens, tokens, need_weights=True, average_attn_weights=True
    )
    weights = weights.squeeze(1)
    return torch.einsum("iv,ivd->id", weights, tokens) + out.squeeze(1), weights


def with_fuse(model, fuse):  # noqa: ANN001, ANN201
    """``model.calculate_loss`` with ``fuse(fusion, views, image)`` in place of the fusion's own."""
    fusion = model.fusion

    def loss(*batch: torch.Tensor) -> torch.Tensor:
        fusion.fuse = lambda views, image: fuse(fusion, views, image)
        try:
            return model.calculate_loss(*batch)
        finally:
            del fusion.fuse  # the class's method again

    return loss


def step_forms(model) -> dict[str, object]:  # noqa: ANN001
    """The loss with each form of the fusion."""
    return {FORMS[0]: model.calculate_loss, FORMS[1]: with_fuse(model, multihead_fuse)}


def largest_difference(model, forms, data) -> float:  # noqa: ANN001
    """Largest relative difference (``max |a - b| / max |b|``, per tensor, the denominator at least
    ``NOISE_FLOOR``) of the loss and of every gradient between the forms, on one batch. Relative:
    the fusion reaches FREEDOM's loss through the ``reg_weight`` modality term, so its gradients
    are small in absolute terms."""
    out = []
    for fn in forms.values():
        model.zero_grad()
        loss = fn(*data[0])
        loss.backward()
        out.append([loss.detach()] + [p.grad.clone() for p in model.parameters() if p.grad is not None])
    return max(float((a - b).abs().max() / b.abs().max().clamp_min(NOISE_FLOOR))
               for a, b in zip(*out, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20, help="training steps timed per round and form")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = batches(args.steps)
    model = build("self_attention")
    with torch.no_grad():  # a trained state: the output projection starts at zero
        model.fusion.attn.out_proj.weight.normal_(0.0, 0.05)
    forms = step_forms(model)
    for fn in forms.values():
        timed(model, fn, data[:2])  # warm-up
    times: dict[str, list[float]] = {name: [] for name in forms}
    for r in range(args.rounds):
        for name in list(forms) if r % 2 == 0 else list(forms)[::-1]:  # order swapped each round
            times[name].append(timed(model, forms[name], data))
    ratios = [a / b for a, b in zip(times[FORMS[0]], times[FORMS[1]], strict=True)]
    distinct = float(np.mean([len(torch.unique(torch.cat([p, n]))) for _, p, n in data]))
    out = {
        "shape": {"users": N_USERS, "items": N_ITEMS, "views": N_VIEWS, "dim": DIM, "batch": BATCH},
        "mean_distinct_items_per_step": distinct,
        "rounds": args.rounds,
        "steps": args.steps,
        "threads": args.threads,
        "machine": cpu_model(),
        "torch": torch.__version__,
        "seconds_per_step": {k: statistics.median(v) for k, v in times.items()},
        "seconds_per_step_rounds": times,
        "ratio_median": statistics.median(ratios),
        "ratio_range": [min(ratios), max(ratios)],
        "max_rel_diff": largest_difference(model, forms, data),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "self_attention_step.json").write_text(json.dumps(out, indent=2) + "\n")
    s = out["seconds_per_step"]
    lines = [
        "# FREEDOM step with the self-attention fusion: query projected vs nn.MultiheadAttention",
        "",
        f"Written by `benchmarks/self_attention_step.py` on {out['machine']}, torch {torch.__version__}: "
        f"demo shape ({N_ITEMS} items, {N_USERS} users, {N_VIEWS} views x {DIM}, 4 heads), batch {BATCH} "
        f"({distinct:.0f} distinct items fused per step on average), {args.steps} steps per round, "
        f"{args.rounds} rounds with the order swapped, {args.threads} torch thread(s), one process.",
        "",
        f"| {FORMS[0]}, s/step | {FORMS[1]}, s/step | ratio median [range] "
        "| max relative diff (loss, gradients) |",
        "| --- | --- | --- | --- |",
        f"| {s[FORMS[0]]:.4f} | {s[FORMS[1]]:.4f} | {out['ratio_median']:.2f} "
        f"[{out['ratio_range'][0]:.2f} – {out['ratio_range'][1]:.2f}] | {out['max_rel_diff']:.1e} |",
    ]
    (args.out / "self_attention_step.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
