"""Sentence-swap negative captions for contrastive adaptation (NegCLIP-style hard text negatives).

In-batch InfoNCE stops learning once the cheapest attributes tell a batch apart: on the demo the
brand badge and colour do, so the sentences of a description that state shape, pattern or
material ("Made from soft cotton, it is gentle and durable.") are never needed to match an image
to its text (``benchmarks/feature_probe.py``). NegCLIP (Yuksekgonul et al., 2023) fixes this
with hard negative captions: the true caption with one detail changed. Here the change is
catalog-agnostic: one sentence of the caption is replaced by the most alike *different*
sentence of another item's caption of the same view (token Jaccard at least ``min_overlap``, so
template twins such as "Made from bamboo, it is gentle and durable." are swapped, not unrelated
filler). The negative keeps every other sentence, so the image can only reject it by what that
one sentence says; the text tower must encode it for the two captions to differ.

The swap is chosen at random (seeded) among the qualifying sentence pairs, so every attribute
sentence takes its turn. Captions of one sentence are never swapped (a whole other caption is an
ordinary in-batch negative already).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
WORD = re.compile(r"\w+")


def sentences(text: str) -> list[str]:
    """``text`` cut after every ``.``, ``!`` or ``?`` that a space or newline follows."""
    return [s for s in SENTENCE_END.split(text.strip()) if s]


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / max(len(a | b), 1)


def swap_one_sentence(text: str, donor: str, min_overlap: float, rng: np.random.Generator) -> str | None:
    """``text`` with one sentence replaced by an alike, different sentence of ``donor``; None if none.

    Candidates are the (sentence of ``text``, sentence of ``donor``) pairs that differ and share at
    least ``min_overlap`` of their words (Jaccard over lower-cased word tokens); one is drawn
    uniformly with ``rng``. A ``text`` of one sentence gets no negative.
    """
    own, other = sentences(text), sentences(donor)
    if len(own) < 2:
        return None
    words = [set(WORD.findall(s.lower())) for s in own]
    donor_words = [set(WORD.findall(s.lower())) for s in other]
    pairs = [
        (i, j)
        for i, a in enumerate(words)
        for j, b in enumerate(donor_words)
        if a != b and _jaccard(a, b) >= min_overlap
    ]
    if not pairs:
        return None
    i, j = pairs[int(rng.integers(len(pairs)))]
    return " ".join(own[:i] + [other[j]] + own[i + 1 :])


def swapped_captions(
    captions: Sequence[str], donors: Sequence[str], share: float, min_overlap: float,
    rng: np.random.Generator,
) -> tuple[list[str], np.ndarray]:
    """Negative captions for a batch and the rows they belong to.

    ``donors[r]`` is another item's caption of the same view as ``captions[r]``; a ``share`` of the
    rows (drawn with ``rng``) tries a swap with its donor.

    Returns:
        (negatives, rows): ``negatives[k]`` is the negative of ``captions[rows[k]]``.
    """
    if len(captions) != len(donors):
        raise ValueError(f"{len(captions)} captions but {len(donors)} donor captions")
    if share <= 0:
        return [], np.zeros(0, dtype=np.int64)
    tried = np.flatnonzero(rng.random(len(captions)) < share)
    negatives, rows = [], []
    for row in tried:  # string surgery on the batch's captions (B strings, not the catalog)
        negative = swap_one_sentence(captions[row], donors[row], min_overlap, rng)
        if negative is not None:
            negatives.append(negative)
            rows.append(row)
    return negatives, np.asarray(rows, dtype=np.int64)
