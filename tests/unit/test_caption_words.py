"""Caption-word targets and head (cliper/clip/caption_words.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cliper.clip.caption_words import WordHead, caption_words
from cliper.errors import CliperError

# views [V=2, I=6]: "cotton" in 3 items, "bamboo" in 2, "the" everywhere, "rare" once, a number
TEXTS = np.array(
    [
        ["The cotton bib.", "The cotton cup.", "The bamboo cup.", "The bamboo mat.", "The cotton hat.",
         "The rare 42 toy."],
        ["Soft.", "Soft.", "Soft.", "Soft.", "Hard.", "Hard."],
    ]
)


def test_targets_mark_the_words_of_every_view_of_an_item():
    words = caption_words(TEXTS, np.arange(6), max_words=100, min_items=2, max_share=0.7)
    assert words.vocabulary == ["bamboo", "cotton", "cup", "hard", "soft"]  # "the": 6/6 > 70%; "rare": 1 item
    col = {w: k for k, w in enumerate(words.vocabulary)}
    assert words.targets.shape == (6, 5)
    assert words.targets[:, col["cotton"]].tolist() == [1, 1, 0, 0, 1, 0]
    assert words.targets[:, col["hard"]].tolist() == [0, 0, 0, 0, 1, 1]  # from the second view
    assert words.targets[:, col["cup"]].tolist() == [0, 1, 1, 0, 0, 0]


def test_vocabulary_comes_from_the_training_items_only():
    words = caption_words(TEXTS, np.array([0, 1, 2, 4]), max_words=100, min_items=2, max_share=1.0)
    assert "bamboo" not in words.vocabulary  # only item 2 of the training items has it
    assert words.targets.shape[0] == 6  # held-out items still get targets (unused)
    assert caption_words(TEXTS, np.arange(6), max_words=2, min_items=1, max_share=0.7).vocabulary == [
        "cotton", "soft",
    ]


def test_no_qualifying_word_names_the_params_to_change():
    with pytest.raises(CliperError, match="words_min_items"):
        caption_words(TEXTS, np.arange(6), max_words=10, min_items=7, max_share=0.5)


def test_head_loss_is_per_positive_word_and_learns_the_targets():
    torch.manual_seed(0)
    targets = caption_words(TEXTS, np.arange(6), 100, 2, 0.7).targets
    emb = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    head = WordHead(8, targets.shape[1])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        head.linear(emb * 8**0.5), targets, reduction="sum") / targets.sum()
    assert torch.allclose(head.loss(emb, targets), expected)
    opt = torch.optim.Adam(head.parameters(), lr=0.1)
    for _ in range(200):
        opt.zero_grad()
        head.loss(emb, targets).backward()
        opt.step()
    assert ((head.logits(emb) > 0).float() == targets).all()
