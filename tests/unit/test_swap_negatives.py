"""Sentence-swap negative captions (cliper/clip/swap_negatives.py) and their place in the loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cliper.clip.adapt import _info_nce
from cliper.clip.swap_negatives import sentences, swap_one_sentence, swapped_captions

TEXT = "This red bib features a round design. It is finished with stripes. Made from cotton, it is soft."
DONOR = "This blue cup features a star design. Lovely gift. Made from bamboo, it is soft."


def test_sentences_cut_after_end_marks_followed_by_space():
    assert sentences("One. Two!\nThree? 4.5 kg") == ["One.", "Two!", "Three?", "4.5 kg"]


def test_swap_replaces_exactly_one_sentence_with_an_alike_donor_sentence():
    seen = set()
    for seed in range(20):
        out = swap_one_sentence(TEXT, DONOR, 0.3, np.random.default_rng(seed))
        own, new = sentences(TEXT), sentences(out)
        assert len(new) == len(own)
        changed = [k for k in range(len(own)) if own[k] != new[k]]
        assert len(changed) == 1, out
        seen.add((changed[0], new[changed[0]]))
    # the two template twins take turns; "Lovely gift." shares no words and is never swapped in
    assert seen == {
        (0, "This blue cup features a star design."),
        (2, "Made from bamboo, it is soft."),
    }


def test_no_negative_without_an_alike_different_sentence():
    rng = np.random.default_rng(0)
    assert swap_one_sentence("Only one sentence here.", DONOR, 0.3, rng) is None
    assert swap_one_sentence(TEXT, TEXT, 0.3, rng) is None  # every sentence identical
    assert swap_one_sentence(TEXT, "Nothing alike at all. Zebra.", 0.3, rng) is None


def test_swapped_captions_share_and_rows():
    captions = [TEXT] * 200
    donors = [DONOR] * 200
    negatives, rows = swapped_captions(captions, donors, 0.5, 0.3, np.random.default_rng(0))
    assert len(negatives) == len(rows) and 70 < len(rows) < 130
    assert all(n != TEXT for n in negatives)
    assert swapped_captions(captions, donors, 0.0, 0.3, np.random.default_rng(0))[0] == []
    with pytest.raises(ValueError, match="donor"):
        swapped_captions(captions, donors[:3], 0.5, 0.3, np.random.default_rng(0))


def test_negative_captions_enter_only_the_image_to_text_side():
    torch.manual_seed(0)
    a, b = (torch.nn.functional.normalize(torch.randn(6, 8), dim=-1) for _ in range(2))
    scale = torch.tensor(10.0)
    plain = _info_nce(a, b, scale)
    assert torch.allclose(_info_nce(a, b, scale, b[:0]), plain)
    # a negative identical to row 0's positive caption halves row 0's image->text probability
    with_twin = _info_nce(a, b, scale, b[:1])
    logits = scale * a @ b.T
    target = torch.arange(6)
    i2t = torch.nn.functional.cross_entropy(torch.cat([logits, logits[:, :1]], 1), target)
    t2i = torch.nn.functional.cross_entropy(logits.T, target)
    assert torch.allclose(with_twin, (i2t + t2i) / 2)
    assert with_twin > plain
