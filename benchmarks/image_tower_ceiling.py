"""Can the demo's image tower see an attribute at all? Supervised ceiling vs the adapted features.

``feature_probe.py`` shows that the adapted image features barely know shape and material. That
has two possible causes: the images at ``clip.model``'s resolution do not show the attribute to
this tower (a model or image-size defect), or the contrastive objective never asks for it (a
recipe defect). This diagnostic separates them: it trains ``clip.model``'s image tower from the
same random init, with a linear head, **supervised** on one latent attribute of ``truth.json``
(labels only the demo has; the pipeline never sees them), and reports held-out accuracy beside
the linear probe of the adapted features (``feature_probe.json``) and the majority guess.
A ceiling far above the adapted probe means the signal is in the pixels and the recipe misses it.

Usage::

    python benchmarks/image_tower_ceiling.py --attributes material shape --epochs 12
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from cliper import io
from cliper.clip.adapt import image_dataset
from cliper.clip.load import load_clip
from cliper.config import load_params
from cliper.views.images import manifest_paths

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from demo_experiments import cpu_model  # noqa: E402
from feature_probe import PROBE_TRAIN_SHARE, latent_labels, probe_split  # noqa: E402

BATCH, LR = 64, 1e-3
LOGIT_SCALE = 10.0  # the head reads unit-norm embeddings, as the kNN graph does


def decoded_images(params, loaded) -> torch.Tensor:
    """All item images as model-ready tensors [I, 3, H, W] (items.parquet order)."""
    manifest = pd.read_parquet(REPO / params.preprocess.out_dir / "images.parquet")
    data = image_dataset(loaded, manifest_paths(manifest, REPO))
    return torch.stack([data[i] for i in tqdm(range(len(data)), desc="decode", unit="image")])


def ceiling(model: str, seed: int, labels: np.ndarray, images: torch.Tensor, epochs: int) -> dict:
    """Held-out accuracy of ``model``'s image tower (fresh init) + a linear head trained on ``labels``.

    ``majority`` is the held-out share of the training split's most frequent label: the score of
    a tower that sees nothing.
    """
    tower = load_clip(model, None, "fp32", "cpu", seed=seed).model.visual
    y = torch.as_tensor(np.unique(labels, return_inverse=True)[1])
    head = torch.nn.Linear(tower.output_dim, int(y.max()) + 1)
    train, test = probe_split(len(y))  # the split of feature_probe's linear probe
    opt = torch.optim.AdamW([*tower.parameters(), *head.parameters()], lr=LR)
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in tqdm(range(epochs), desc="supervised", unit="epoch"):
        tower.train()
        for batch in train[torch.randperm(len(train), generator=gen)].split(BATCH):
            loss = F.cross_entropy(head(F.normalize(tower(images[batch]), dim=-1) * LOGIT_SCALE), y[batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    tower.eval()
    with torch.no_grad():
        embedded = torch.cat([F.normalize(tower(images[b]), dim=-1) for b in test.split(256)])
        logits = head(embedded * LOGIT_SCALE)
    return {"accuracy": float((logits.argmax(1) == y[test]).float().mean()),
            "majority": float((y[test] == torch.bincount(y[train]).argmax()).float().mean()),
            "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attributes", nargs="+", default=["material", "shape", "pattern"])
    parser.add_argument("--epochs", type=int, default=12, help="supervised epochs (adapt: 18 contrastive)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--probe", type=Path, default=REPO / "benchmarks" / "results" / "feature_probe.json",
                        help="feature_probe.py output whose image linear probe is the comparison")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params(REPO / "params.yaml")
    loaded = load_clip(params.clip.model, None, "fp32", "cpu", seed=params.clip.adapt.seed)
    images = decoded_images(params, loaded)
    labels = latent_labels(params, tuple(args.attributes))
    adapted = io.read_json(args.probe)["linear_probe"]["image"] if args.probe.exists() else {}
    rows, seed = {}, params.clip.adapt.seed
    for attribute in args.attributes:
        rows[attribute] = ceiling(params.clip.model, seed, labels[attribute], images, args.epochs)
        rows[attribute]["adapted_linear_probe"] = adapted.get(attribute)
        print(attribute, rows[attribute])
    lines = [
        f"# Image-tower ceiling: `{params.clip.model}` trained supervised per attribute", "",
        f"Written by `benchmarks/image_tower_ceiling.py` ({args.epochs} epochs, batch {BATCH}, lr {LR}, "
        f"{args.threads} threads, {cpu_model()}; catalog `demo.seed` "
        f"{params.demo.seed}; held-out {1 - PROBE_TRAIN_SHARE:.0%} of the items, the split of "
        f"`feature_probe.py`). Adapted: the linear probe of `{args.probe.name}`'s image features.", "",
        "| attribute | majority | supervised tower (ceiling) | adapted features, linear probe | seconds |",
        "| --- | --- | --- | --- | --- |",
        *[f"| {a} | {r['majority']:.2f} | {r['accuracy']:.2f} | "
          f"{'–' if r['adapted_linear_probe'] is None else format(r['adapted_linear_probe'], '.2f')} | "
          f"{r['seconds']:.0f} |" for a, r in rows.items()],
    ]
    io.write_json(args.out / "image_tower_ceiling.json", {"epochs": args.epochs, "rows": rows})
    io.write_text(args.out / "image_tower_ceiling.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
