"""The image-tower ceiling (benchmarks/image_tower_ceiling.py): learns what the pixels show, no more."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

from image_tower_ceiling import ceiling  # noqa: E402


def images_of(labels: np.ndarray, seed: int = 0) -> torch.Tensor:
    """Noise images whose label shifts one colour channel: visible to any tower."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(len(labels), 3, 64, 64, generator=gen) * 0.5
    x[np.arange(len(labels)), torch.as_tensor(labels)] += 1.5
    return x


def test_the_supervised_tower_learns_a_visible_attribute_and_not_an_invisible_one() -> None:
    torch.set_num_threads(2)
    labels = np.random.default_rng(0).integers(0, 3, 160)
    seen = ceiling("cliper-tiny", 0, labels, images_of(labels), epochs=4)
    assert seen["accuracy"] > 0.9 and seen["majority"] < 0.5, seen
    # labels unrelated to the pixels: a held-out score near the majority guess
    hidden = np.random.default_rng(1).integers(0, 3, 160)
    blind = ceiling("cliper-tiny", 0, hidden, images_of(labels), epochs=4)
    assert blind["accuracy"] < 0.6, blind
