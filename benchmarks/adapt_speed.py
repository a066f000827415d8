"""The adapt stage's training step: the image tower's weight layout and the AdamW kernel, side by side.

``clip.channels_last`` keeps the convolution weights in NHWC layout, and
``clip.adapt.fused_adamw`` steps with torch's fused AdamW kernel
(:func:`cliper.clip.adapt.make_optimizer`); both are off by default. This times the real
training step (:func:`cliper.clip.adapt._train_step`: both towers forward and backward, the
InfoNCE loss, the optimiser step) in the four combinations, in one process, on the demo's
batches: ``clip.adapt.batch_size`` of the project's images with their description and global
captions, as the stage draws them. Rounds alternate the four forms so that machine load hits
them alike; each form starts from the same weights. It also reports how far the embeddings of
the two layouts are apart (rounding only) and the stage's projected step time
(``clip.adapt.epochs`` x full batches).

Needs the project's ``preprocess`` outputs (``dvc repro preprocess``). Results:
``benchmarks/results/adapt_speed.{json,md}``.

Usage::

    python benchmarks/adapt_speed.py --rounds 5 --steps 8 --threads 2
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from cliper.clip.adapt import (
    _batch_size,
    _Indexed,
    _train_step,
    caption_draw,
    image_dataset,
    make_optimizer,
    split_items,
    tokenize_views,
)
from cliper.clip.load import load_clip
from cliper.config import load_params
from cliper.stages.adapt import caption_rows
from cliper.stages.preprocess import read_outputs
from cliper.views.images import manifest_paths

REPO = Path(__file__).resolve().parents[1]
FORMS = {  # name: (channels_last, fused AdamW)
    "default layout, AdamW loop (the default)": (False, False),
    "default layout, fused AdamW": (False, True),
    "channels_last, AdamW loop": (True, False),
    "channels_last, fused AdamW (both options)": (True, True),
}
BASELINE = "default layout, AdamW loop (the default)"


def demo_batches(root: Path, steps: int, seed: int):
    """(params, loaded model, [(images, tokens)] x steps) from the project's preprocess outputs."""
    params = load_params(root / "params.yaml")
    clip, cfg = params.clip, params.clip.adapt
    views = list(params.preprocess.views)
    ordered, manifest = read_outputs(params, root)
    texts = ordered["text"].to_numpy().reshape(len(views), len(manifest))
    loaded = load_clip(clip.model, clip.pretrained, "fp32", "cpu", root, seed=cfg.seed)
    train, _ = split_items(len(manifest), cfg.val_fraction, cfg.seed)
    size = _batch_size(cfg, len(train))
    gen = torch.Generator().manual_seed(seed)
    picked = train[torch.randperm(len(train), generator=gen)[: size * steps].numpy()]
    images = _Indexed(image_dataset(loaded, manifest_paths(manifest, root)), picked, cfg.preload_images_mb)
    tokens = tokenize_views(loaded, texts)
    rows_drawn = caption_rows(cfg.caption_views, views)
    batches = []
    for s in range(steps):
        rows = range(s * size, (s + 1) * size)
        items = torch.as_tensor(picked[list(rows)])
        views_drawn = caption_draw(len(views), rows_drawn, size, gen)
        batches.append((torch.stack([images[k][0] for k in rows]), tokens[items, views_drawn]))
    return params, loaded, batches, len(train) // size


def time_form(loaded, start: dict, form: tuple[bool, bool], batches, cfg) -> float:
    """Median seconds per training step of one form, from the ``start`` weights."""
    channels_last, fused = form
    model = loaded.model
    model.load_state_dict(start)
    model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    model.train()
    weights = list(model.parameters())
    opt = make_optimizer(weights, replace(cfg, fused_adamw=fused), torch.device("cpu"))
    times = []
    for images, tokens in batches:
        started = time.perf_counter()
        _train_step(loaded, opt, images, tokens)
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])  # the first step warms the kernels


def layout_gap(loaded, start: dict, batches) -> float:
    """Largest absolute difference of the image embeddings between the two layouts (rounding only)."""
    model = copy.deepcopy(loaded.model).eval()
    model.load_state_dict(start)
    out = []
    with torch.inference_mode():
        for layout in (torch.contiguous_format, torch.channels_last):
            model.to(memory_format=layout)
            out.append(model.encode_image(batches[0][0]))
    return float((out[0] - out[1]).abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=8, help="training steps timed per round and form")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the demo machine: 2 cores)")
    parser.add_argument("--root", type=Path, default=REPO, help="project with preprocess outputs")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params, loaded, batches, steps_per_epoch = demo_batches(args.root, args.steps, seed=0)
    cfg = params.clip.adapt
    start = copy.deepcopy(loaded.model.state_dict())
    per_form: dict[str, list[float]] = {name: [] for name in FORMS}
    for _ in range(args.rounds):
        for name, form in FORMS.items():
            per_form[name].append(time_form(loaded, start, form, batches, cfg))
    base = statistics.median(per_form[BASELINE])
    stage_steps = cfg.epochs * steps_per_epoch
    rows = {
        name: {
            "s_per_step_median": statistics.median(times),
            "s_per_step_rounds": times,
            "speedup": base / statistics.median(times),
            "projected_stage_steps_s": statistics.median(times) * stage_steps,
        }
        for name, times in per_form.items()
    }
    result = {
        "model": params.clip.model,
        "batch_size": int(batches[0][0].shape[0]),
        "stage_steps": stage_steps,
        "rounds": args.rounds,
        "steps": args.steps,
        "threads": args.threads,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "layout_max_abs_diff": layout_gap(loaded, start, batches),
        "forms": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "adapt_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "adapt_speed.md").write_text(report(result))
    print(report(result))


def report(result: dict) -> str:
    lines = [
        "# Adapt stage: training-step time by weight layout and AdamW kernel",
        "",
        f"`benchmarks/adapt_speed.py`: {result['model']}, batches of {result['batch_size']} demo items, "
        f"{result['threads']} threads, torch {result['torch']}, {result['rounds']} alternating rounds x "
        f"{result['steps']} steps (median of each round, first step dropped; the table: median of rounds).",
        "",
        f"| form | s / step | speed-up | x {result['stage_steps']} steps of the stage |",
        "|---|---|---|---|",
    ]
    for name, row in result["forms"].items():
        lines.append(
            f"| {name} | {row['s_per_step_median']:.3f} | {row['speedup']:.2f}x | "
            f"{row['projected_stage_steps_s']:.0f} s |"
        )
    lines += [
        "",
        f"Image embeddings of the two layouts differ by at most {result['layout_max_abs_diff']:.1e} "
        "(the same weights: rounding only).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
