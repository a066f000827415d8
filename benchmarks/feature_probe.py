"""Does the demo's content signal reach the features? kNN purity per latent attribute.

For the image features, every text view and the attention-fused text of ``--features``, the share
of each item's 10 nearest items (cosine) that share its latent attribute (``truth.json`` of the
demo catalog: category, brand, colour, shape, pattern, material, price band, size), beside
chance (the sum of squared attribute shares). FREEDOM's item-item graph is exactly such a kNN
graph, so an attribute at chance here is one the backbone cannot use.

Usage::

    python benchmarks/feature_probe.py                               # data/features
    python benchmarks/feature_probe.py --features /tmp/other/features --name hard-negatives
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cliper import io
from cliper.config import load_params
from cliper.fusion import build_fusion

REPO = Path(__file__).resolve().parents[1]
ATTRIBUTES = ("category", "brand", "colour", "shape", "pattern", "material", "price_band", "size")
K = 10


def knn_purity(x: np.ndarray, labels: dict[str, np.ndarray], k: int = K) -> dict[str, float]:
    """Per attribute, the mean share of each row's ``k`` cosine neighbours with the same value."""
    t = torch.nn.functional.normalize(torch.as_tensor(x, dtype=torch.float32), dim=-1)
    sim = t @ t.T
    sim.fill_diagonal_(-float("inf"))
    nb = sim.topk(k, dim=1).indices.numpy()
    return {a: float((v[nb] == v[:, None]).mean()) for a, v in labels.items()}


def chance(labels: dict[str, np.ndarray]) -> dict[str, float]:
    """Purity of random neighbours: the sum of squared value shares."""
    return {a: float(((np.unique(v, return_counts=True)[1] / len(v)) ** 2).sum()) for a, v in labels.items()}


def main() -> None:
    """Measure, print and write ``<out>/feature_probe[_<name>].{json,md}``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=Path, default=None, help="default: clip.extract.out_dir")
    parser.add_argument("--name", default="", help="suffix of the output files")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    params = load_params(REPO / "params.yaml")
    folder = args.features or REPO / params.clip.extract.out_dir
    truth = io.read_json(REPO / params.demo.out_dir / "truth.json")
    asins = pd.read_parquet(REPO / params.ingest.out_dir / "items.parquet", columns=["asin"])["asin"]
    labels = {a: np.array([truth["items"][x][a] for x in asins]) for a in ATTRIBUTES}
    image = np.load(folder / "image.npy")
    views = np.load(folder / "text_views.npy")
    names = io.read_json(folder / "meta.json")["views"]
    tv, im = torch.as_tensor(views, dtype=torch.float32), torch.as_tensor(image, dtype=torch.float32)
    with torch.no_grad():  # the train stage's own fusion (params.yaml: train.fusion), as FREEDOM gets it
        fused, weights = build_fusion(params.train.fusion, len(names), tv.shape[-1])(tv, im)
    fused = fused.numpy()
    rows = {"image": image} | {f"text: {n}": views[j] for j, n in enumerate(names)} | {"text: fused": fused}
    table = {"chance": chance(labels)} | {name: knn_purity(x, labels) for name, x in rows.items()}
    mean_weights = "none" if weights is None else ", ".join(
        f"{n} {w:.2f}" for n, w in zip(names, weights.mean(0).tolist(), strict=True)
    )
    lines = [f"# kNN purity of `{folder}` ({K} neighbours, cosine) per latent attribute", "",
             f"Written by `benchmarks/feature_probe.py`. Mean attention weight per view: {mean_weights}.", "",
             "| features | " + " | ".join(ATTRIBUTES) + " |", "| --- |" + " --- |" * len(ATTRIBUTES)]
    lines += [f"| {name} | " + " | ".join(f"{v[a]:.2f}" for a in ATTRIBUTES) + " |"
              for name, v in table.items()]
    stem = "feature_probe" + (f"_{args.name}" if args.name else "")
    io.write_json(args.out / f"{stem}.json", {"features": str(folder), "k": K, "purity": table})
    io.write_text(args.out / f"{stem}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
