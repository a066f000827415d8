"""Does the demo's content signal reach the features? kNN purity and a linear probe per attribute.

For the image features, every text view and the attention-fused text of ``--features``, the share
of each item's 10 nearest items (cosine) that share its latent attribute (``truth.json`` of the
demo catalog: category, brand, colour, shape, pattern, material, price band, size), beside
chance (the sum of squared attribute shares). FREEDOM's item-item graph is exactly such a kNN
graph, so an attribute at chance here is one the backbone cannot use. A second table gives the
held-out accuracy of a linear probe (softmax regression on the L2-normalised features, a seeded
75/25 item split): an attribute can be encoded, so a linear layer can read it, while the kNN
graph is still dominated by others.

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
PROBE_TRAIN_SHARE, PROBE_SEED, PROBE_STEPS, PROBE_WEIGHT_DECAY = 0.75, 0, 200, 1e-4


def knn_purity(x: np.ndarray, labels: dict[str, np.ndarray], k: int = K) -> dict[str, float]:
    """Per attribute, the mean share of each row's ``k`` cosine neighbours with the same value."""
    t = torch.nn.functional.normalize(torch.as_tensor(x, dtype=torch.float32), dim=-1)
    sim = t @ t.T
    sim.fill_diagonal_(-float("inf"))
    nb = sim.topk(k, dim=1).indices.numpy()
    return {a: float((v[nb] == v[:, None]).mean()) for a, v in labels.items()}


def latent_labels(params, attributes: tuple[str, ...] = ATTRIBUTES) -> dict[str, np.ndarray]:
    """Per attribute, the demo's latent value of every item (``truth.json``, items.parquet order)."""
    truth = io.read_json(REPO / params.demo.out_dir / "truth.json")["items"]
    asins = pd.read_parquet(REPO / params.ingest.out_dir / "items.parquet", columns=["asin"])["asin"]
    return {a: np.array([truth[x][a] for x in asins]) for a in attributes}


def probe_split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The seeded (train, held-out) item indices of the linear probe."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(PROBE_SEED))
    cut = int(PROBE_TRAIN_SHARE * n)
    return perm[:cut], perm[cut:]


def linear_probe(x: np.ndarray, labels: dict[str, np.ndarray]) -> dict[str, float]:
    """Per attribute, the held-out accuracy of softmax regression on the normalised rows of ``x``."""
    t = torch.nn.functional.normalize(torch.as_tensor(x, dtype=torch.float32), dim=-1)
    train, test = probe_split(len(t))
    mean, std = t[train].mean(0), t[train].std(0) + 1e-6
    t = (t - mean) / std
    out = {}
    for name, values in labels.items():
        y = torch.as_tensor(np.unique(values, return_inverse=True)[1])
        torch.manual_seed(PROBE_SEED)  # the layer's initial weights
        layer = torch.nn.Linear(t.shape[1], int(y.max()) + 1)
        opt = torch.optim.LBFGS(layer.parameters(), max_iter=PROBE_STEPS, line_search_fn="strong_wolfe")

        def closure(layer=layer, opt=opt, y=y) -> torch.Tensor:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(layer(t[train]), y[train])
            loss = loss + PROBE_WEIGHT_DECAY * layer.weight.square().sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            out[name] = float((layer(t[test]).argmax(1) == y[test]).float().mean())
    return out


def majority(labels: dict[str, np.ndarray]) -> dict[str, float]:
    """Accuracy of always guessing the most frequent value (the linear probe's chance)."""
    return {a: float(np.unique(v, return_counts=True)[1].max() / len(v)) for a, v in labels.items()}


def chance(labels: dict[str, np.ndarray]) -> dict[str, float]:
    """Purity of random neighbours: the sum of squared value shares."""
    return {a: float(((np.unique(v, return_counts=True)[1] / len(v)) ** 2).sum()) for a, v in labels.items()}


def markdown_table(table: dict[str, dict[str, float]]) -> list[str]:
    """Markdown lines: one row per features name, one column per attribute."""
    return ["| features | " + " | ".join(ATTRIBUTES) + " |", "| --- |" + " --- |" * len(ATTRIBUTES)] + [
        f"| {name} | " + " | ".join(f"{v[a]:.2f}" for a in ATTRIBUTES) + " |" for name, v in table.items()
    ]


def main() -> None:
    """Measure, print and write ``<out>/feature_probe[_<name>].{json,md}``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=Path, default=None, help="default: clip.extract.out_dir")
    parser.add_argument("--name", default="", help="suffix of the output files")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    params = load_params(REPO / "params.yaml")
    folder = args.features or REPO / params.clip.extract.out_dir
    labels = latent_labels(params)
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
             *markdown_table(table)]
    probes = {"majority": majority(labels)} | {name: linear_probe(x, labels) for name, x in rows.items()}
    share = f"{1 - PROBE_TRAIN_SHARE:.0%}"
    lines += ["", f"Linear probe: held-out accuracy ({share} of the items, seed {PROBE_SEED}).", "",
              *markdown_table(probes)]
    stem = "feature_probe" + (f"_{args.name}" if args.name else "")
    io.write_json(args.out / f"{stem}.json",
                  {"features": str(folder), "k": K, "purity": table, "linear_probe": probes})
    io.write_text(args.out / f"{stem}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
