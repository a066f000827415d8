"""Caption-word prediction: an auxiliary image loss for contrastive adaptation.

In-batch InfoNCE learns only what tells a batch apart; on the demo that is the brand badge and
colour, so the adapted image features barely know shape or material (linear probe 0.38 / 0.34)
although the same image tower, trained on those labels, reads them from the pixels at 0.95 / 0.73
(``benchmarks/image_tower_ceiling.py``). The catalog's texts name them in words ("features a
triangular design", "Made from bamboo fibre"). Predicting which words an item's texts contain
from its image, a multi-label classification over the catalog's vocabulary (CatLIP, Mehta et al.
2024; Joulin et al. 2016), asks the image for every word it can see, not only the ones that
separate a batch. No labels are involved: the targets are the item's own views.

The vocabulary is built once with scikit-learn's ``CountVectorizer`` over the training items
(a word counts once per item, across all its views): words in at least ``min_items`` items and
at most ``max_share`` of them, the ``max_words`` most frequent. The head is a linear layer on the
normalised image embedding; it is used for training only and not saved with the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.feature_extraction.text import CountVectorizer

from cliper.errors import CliperError


@dataclass(frozen=True)
class CaptionWords:
    """Multi-hot word targets [I, W] (rows: every item of ``texts``) and the vocabulary."""

    targets: torch.Tensor
    vocabulary: list[str]


def caption_words(
    texts: np.ndarray, train: np.ndarray, max_words: int, min_items: int, max_share: float
) -> CaptionWords:
    """Word targets of every item from its views ``texts`` [V, I]; vocabulary from ``train`` items.

    Raises:
        CliperError: no word qualifies (too few items or too strict bounds).
    """
    documents = np.array([" ".join(col) for col in texts.T.tolist()], dtype=object)
    vectorizer = CountVectorizer(
        binary=True, lowercase=True, min_df=min_items, max_df=max_share, max_features=max_words,
        token_pattern=r"(?u)\b[^\W\d_][\w-]+\b",  # words of 2+ characters, no bare numbers
    )
    try:
        vectorizer.fit(documents[train])
    except ValueError as exc:  # sklearn: "After pruning, no terms remain" / empty vocabulary
        raise CliperError(
            f"clip.adapt.words_weight: no caption word is in at least {min_items} and at most "
            f"{max_share:.0%} of the {len(train)} training items ({exc}); lower "
            "clip.adapt.words_min_items or raise clip.adapt.words_max_share"
        ) from exc
    matrix = vectorizer.transform(documents).tocoo()
    targets = torch.zeros(matrix.shape, dtype=torch.float32)
    rows, cols = (torch.from_numpy(index.astype(np.int64)) for index in (matrix.row, matrix.col))
    targets[rows, cols] = 1.0
    return CaptionWords(targets, vectorizer.get_feature_names_out().tolist())


class WordHead(torch.nn.Module):
    """Linear word logits from normalised image embeddings; BCE against the items' word targets."""

    def __init__(self, embed_dim: int, n_words: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(embed_dim, n_words)
        # unit vectors have coordinates of ~1/sqrt(d); rescaled to ~1 the head can reach confident
        # logits within the few hundred steps of an adaptation (at 1/sqrt(d) it barely left zero)
        self.input_scale = float(embed_dim) ** 0.5

    def logits(self, image_embeddings: torch.Tensor) -> torch.Tensor:
        """Word logits [B, W] of normalised image embeddings [B, D]."""
        return self.linear(image_embeddings * self.input_scale)

    def loss(self, image_embeddings: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy summed over the vocabulary, per positive word, mean over the batch.

        Dividing by the batch's mean number of words per item keeps the term near InfoNCE's scale
        whatever the vocabulary size (a plain mean over thousands of mostly-absent words would
        vanish beside it).
        """
        bce = F.binary_cross_entropy_with_logits(self.logits(image_embeddings), targets, reduction="sum")
        return bce / targets.sum().clamp(min=1.0)
