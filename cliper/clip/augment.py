"""Image augmentation for contrastive adaptation, applied to a batch of model-ready tensors.

``random_grayscale`` shows a seeded share of a batch's images in grey (ITU-R 601 luma, as
torchvision's ``Grayscale``). In-batch InfoNCE learns only what it needs to tell a batch apart:
on a catalog where brand badge and colour already do that, shape and pattern stay unlearned
(``benchmarks/feature_probe.py``). A grey image removes the colour shortcut for that step, so its
text has to be matched by what is left. Images arrive normalised by the model's transform
(``(x - mean) / std`` per channel); the grey value is computed in pixel space and normalised back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

LUMA = (0.299, 0.587, 0.114)  # R, G, B weights of the grey value


def normalisation(transform: Callable[[Any], torch.Tensor]) -> tuple[Sequence[float], Sequence[float]]:
    """(mean, std) of the ``Normalize`` step inside a torchvision ``Compose`` (the CLIP preprocess).

    Raises:
        ValueError: the transform has no ``Normalize`` step.
    """
    for step in getattr(transform, "transforms", [transform]):
        if hasattr(step, "mean") and hasattr(step, "std"):
            return tuple(step.mean), tuple(step.std)
    raise ValueError(f"image transform {transform!r} has no Normalize step to undo for grayscale")


def random_grayscale(
    images: torch.Tensor, share: float, mean: Sequence[float], std: Sequence[float], gen: torch.Generator
) -> torch.Tensor:
    """``images [B, 3, H, W]`` (normalised) with each image turned grey with probability ``share``."""
    if share <= 0:
        return images
    pick = torch.rand(images.shape[0], generator=gen) < share
    if not pick.any():
        return images
    m = torch.tensor(mean, dtype=images.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=images.dtype).view(1, 3, 1, 1)
    luma = torch.tensor(LUMA, dtype=images.dtype).view(1, 3, 1, 1)
    grey = ((images[pick] * s + m) * luma).sum(dim=1, keepdim=True)
    out = images.clone()
    out[pick] = (grey - m) / s
    return out
