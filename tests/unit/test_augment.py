"""Grayscale augmentation of adaptation batches (cliper/clip/augment.py)."""

from __future__ import annotations

import pytest
import torch
from torchvision import transforms

from cliper.clip.augment import normalisation, random_grayscale

MEAN, STD = (0.48, 0.46, 0.41), (0.27, 0.26, 0.28)


def batch(n: int = 64) -> torch.Tensor:
    pixels = torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    return (pixels - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def pixels(x: torch.Tensor) -> torch.Tensor:
    return x * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)


def test_picked_images_are_grey_in_pixel_space_and_the_rest_untouched() -> None:
    x = batch()
    out = random_grayscale(x, 0.5, MEAN, STD, torch.Generator().manual_seed(1))
    p = pixels(out)
    grey = (p.amax(dim=1) - p.amin(dim=1)).amax(dim=(1, 2)) < 1e-5
    same = (out == x).flatten(1).all(dim=1)
    assert torch.equal(grey, ~same), "every image is either grey or unchanged"
    assert 20 <= int(grey.sum()) <= 44, "about half of 64"
    expected = (pixels(x) * torch.tensor((0.299, 0.587, 0.114)).view(1, 3, 1, 1)).sum(1)
    assert torch.allclose(p[grey][:, 0], expected[grey], atol=1e-5), "ITU-R 601 luma"


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_share_zero_keeps_and_share_one_greys_every_image(share: float) -> None:
    x = batch(16)
    out = random_grayscale(x, share, MEAN, STD, torch.Generator().manual_seed(1))
    p = pixels(out)
    assert (out is x) if share == 0 else bool(((p.amax(1) - p.amin(1)) < 1e-5).all())


def test_normalisation_is_read_from_the_transform() -> None:
    compose = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    assert normalisation(compose) == (MEAN, STD)
    with pytest.raises(ValueError, match="no Normalize step"):
        normalisation(transforms.Compose([transforms.ToTensor()]))
