"""The feature probe's linear probe (benchmarks/feature_probe.py): reads what is encoded, no more."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

from feature_probe import knn_purity, linear_probe, majority  # noqa: E402


def features(n: int = 800, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A dominant attribute in 8 strong dimensions, a weak one in 1 among 32 of noise, one absent."""
    rng = np.random.default_rng(seed)
    labels = {name: rng.integers(0, 4, n) for name in ("dominant", "weak", "absent")}
    codes = rng.normal(size=(4, 8)) * 5
    weak = np.array([-1.5, -0.5, 0.5, 1.5])[labels["weak"]][:, None]
    x = np.hstack([codes[labels["dominant"]], weak, rng.normal(size=(n, 32))])
    return x.astype(np.float32), labels


def test_linear_probe_reads_a_weak_direction_the_knn_graph_misses() -> None:
    x, labels = features()
    probe, purity, chance = linear_probe(x, labels), knn_purity(x, labels), majority(labels)
    assert probe["dominant"] > 0.95 and purity["dominant"] > 0.95
    assert probe["weak"] > 0.9, probe
    assert purity["weak"] < 0.45, purity  # neighbours follow the dominant attribute
    assert abs(probe["absent"] - chance["absent"]) < 0.1, (probe, chance)


def test_majority_is_the_most_frequent_share() -> None:
    assert majority({"a": np.array([1, 1, 1, 2])}) == {"a": 0.75}
