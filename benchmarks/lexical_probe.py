"""How much of an attribute could any text encoder bring to a kNN graph? A word-exact upper bound.

For every text view of the checkout's ``data/preprocessed/views.parquet``, each item's prompt is
embedded as TF-IDF (scikit-learn ``TfidfVectorizer``: every word its own dimension, so an attribute
word is never lost to what the encoder learned, but synonyms stay apart) and the kNN purity of
:func:`feature_probe.knn_purity` is measured per latent attribute. Then again with boilerplate
removed: sentences that occur verbatim in more than ``--max-share`` of the view's items (the
demo's filler: "Ships in recyclable, plastic-free packaging.", each in 17-20% of descriptions).
Beside them, the CLIP features of ``clip.extract.out_dir``. No labels are used except to score.

A view whose TF-IDF purity for an attribute is near chance cannot give FREEDOM's per-view kNN
graph that attribute, whatever the encoder. Results:
``benchmarks/results/lexical_probe_c<demo.seed>.{json,md}``.

Usage::

    python benchmarks/lexical_probe.py                 # after dvc repro extract
    python benchmarks/lexical_probe.py --max-share 0.1
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from feature_probe import ATTRIBUTES, chance, knn_purity, latent_labels, markdown_table  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402

from cliper import io  # noqa: E402
from cliper.config import load_params  # noqa: E402

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
MAX_SHARE = 0.1  # default --max-share: the demo's attribute sentences are each in at most 8% of items


def without_boilerplate(texts: list[str], max_share: float) -> list[str]:
    """``texts`` without the sentences found verbatim in more than ``max_share`` of them.

    A text made only of such sentences keeps its first one (an empty document has no TF-IDF row).
    """
    sentences = [SENTENCE_END.split(t.strip()) for t in texts]
    counts = Counter(s for parts in sentences for s in set(parts))
    limit = max_share * len(texts)
    return [" ".join(s for s in parts if counts[s] <= limit) or parts[0] for parts in sentences]


def tfidf(texts: list[str]) -> np.ndarray:
    """Dense TF-IDF rows (L2-normalised by scikit-learn) of ``texts``."""
    return TfidfVectorizer().fit_transform(texts).toarray().astype(np.float32)


def view_texts(views: pd.DataFrame) -> dict[str, list[str]]:
    """Per view name, its prompts in item order."""
    groups = views.groupby("view", sort=False)
    return {name: group.sort_values("item_id")["text"].tolist() for name, group in groups}


def main() -> None:
    """Measure, print and write ``<out>/lexical_probe_c<demo.seed>.{json,md}``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-share", type=float, default=MAX_SHARE,
                        help="a sentence in more than this share of a view's items is boilerplate")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    params = load_params(REPO / "params.yaml")
    labels = latent_labels(params)
    texts = view_texts(pd.read_parquet(REPO / params.preprocess.out_dir / "views.parquet"))
    features = REPO / params.clip.extract.out_dir
    clip_views = np.load(features / "text_views.npy")
    names = io.read_json(features / "meta.json")["views"]
    table = {"chance": chance(labels)}
    for j, name in enumerate(names):
        table[f"{name}: CLIP features"] = knn_purity(clip_views[j], labels)
        table[f"{name}: TF-IDF"] = knn_purity(tfidf(texts[name]), labels)
        table[f"{name}: TF-IDF, boilerplate removed"] = knn_purity(
            tfidf(without_boilerplate(texts[name], args.max_share)), labels)
    lines = [f"# kNN purity of word-exact text embeddings (TF-IDF), catalog demo.seed={params.demo.seed}",
             "", f"Written by `benchmarks/lexical_probe.py` (boilerplate: a sentence in more than "
             f"{args.max_share:.0%} of the view's items). Attributes: {', '.join(ATTRIBUTES)}.", "",
             *markdown_table(table)]
    stem = f"lexical_probe_c{params.demo.seed}"
    io.write_json(args.out / f"{stem}.json",
                  {"catalog": params.demo.seed, "max_share": args.max_share, "purity": table})
    io.write_text(args.out / f"{stem}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
