"""``benchmarks/lexical_probe.py``: boilerplate sentences go, attribute sentences stay; purity shows it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

from feature_probe import knn_purity  # noqa: E402
from lexical_probe import tfidf, without_boilerplate  # noqa: E402


def test_sentences_shared_by_too_many_items_are_removed() -> None:
    texts = ["Made of oak. Ships free.", "Made of silk. Ships free.", "Ships free.", "Made of oak."]
    # "Ships free." is in 3 of 4 items; "Made of oak." in 2 (50%), kept at max_share 0.5
    assert without_boilerplate(texts, 0.5) == ["Made of oak.", "Made of silk.", "Ships free.", "Made of oak."]
    assert without_boilerplate(texts, 0.75) == texts  # nothing is above 75%


def test_removing_boilerplate_lets_the_attribute_word_pick_the_neighbours() -> None:
    rng = np.random.default_rng(0)
    # 20 filler sentences of their own words, 6 per item (each in ~30% of items), rarer than
    # the material words (each in ~33%), so TF-IDF weighs the filler up and the neighbours follow it;
    # the material sentences vary (an adjective), as the demo's do, so none is above the share
    filler = [f"Word{i}a word{i}b word{i}c word{i}d." for i in range(20)]
    material = rng.integers(0, 3, 300)
    texts = []
    for m in material:
        chosen = rng.choice(len(filler), 6, replace=False)
        adjective = ["soft", "fine", "pure", "natural"][rng.integers(4)]  # each sentence in ~8% of items
        made = f"Made from {adjective} {['oak', 'silk', 'wool'][m]}."
        texts.append(" ".join([filler[i] for i in chosen] + [made]))
    labels = {"material": material}
    raw = knn_purity(tfidf(texts), labels)["material"]
    clean = knn_purity(tfidf(without_boilerplate(texts, 0.2)), labels)["material"]
    assert clean == 1.0 and raw < 0.6, (raw, clean)
