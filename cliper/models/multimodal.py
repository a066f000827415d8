"""Shared plumbing of the multimodal backbones (VBPR, FREEDOM, BM3): features and fusion.

MMRec feeds each backbone ``v_feat`` (image) and ``t_feat`` (text). Here ``v_feat = features.image``
and ``t_feat`` is the CLIPER fusion of the text views:

* parameter-free fusion (``attention``, ``mean``, ``sum``, ``concat``): ``t_feat`` is computed once in
  the constructor and, where MMRec fine-tunes it (``nn.Embedding.from_pretrained(freeze=False)``),
  becomes a trainable table;
* learnable fusion (``self_attention``, ``mlp``): the views are kept as a fixed buffer and the fusion
  runs in every forward pass on the items that are needed, so it trains with the backbone.

Feature buffers are non-persistent (the features are injected again at load time; ``config.json``
records their content hash so that a mismatch is caught).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from cliper.config import FusionConfig
from cliper.fusion import Fusion, build_fusion, frozen_text_features
from cliper.models.base import Features, InteractionData, Recommender, rows


class MultimodalRecommender(Recommender):
    """A :class:`Recommender` with ``image_features(items)`` and ``text_features(items)``.

    Args:
        trainable_features: MMRec's choice per backbone: fine-tune the raw feature tables
            (FREEDOM, BM3) or keep them fixed (VBPR).
    """

    needs_features = True

    def __init__(
        self,
        data: InteractionData,
        config: dict[str, Any],
        features: Features | None = None,
        fusion: Fusion | None = None,
        trainable_features: bool = True,
    ) -> None:
        if features is not None and fusion is None:
            fusion = build_fusion(FusionConfig(), features.text_views.shape[0], features.text_views.shape[-1])
        super().__init__(data, config, features, fusion)
        assert features is not None and self.fusion is not None  # checked by the base class
        image = features.image.detach().float()
        views = features.text_views.detach().float()
        # Fixed text matrix for structures built once (FREEDOM's kNN graph); see frozen_text_features.
        # A parameter-free fusion is run once for both its output and its weights.
        weights = None
        if self.fusion.learnable:
            static = frozen_text_features(self.fusion, views, image)
        else:
            with torch.no_grad():
                static, weights = self.fusion(views, image)
        self.register_buffer("text_static", static, persistent=False)
        self.image_table = _table(image, trainable_features)
        if self.fusion.learnable:
            self.register_buffer("text_views", views, persistent=False)
            self.register_buffer("image_raw", image, persistent=False)
            self.text_table = None
            self._static_weights = None
        else:
            self.text_table = _table(self.text_static, trainable_features)
            self._static_weights = None if weights is None else weights.cpu().numpy()

    @property
    def image_dim(self) -> int:
        """Width of ``v_feat``."""
        return int(self.image_table.shape[1])

    @property
    def text_dim(self) -> int:
        """Width of ``t_feat`` (the fusion's ``out_dim``)."""
        return int(self.fusion.out_dim)

    def image_features(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """``v_feat`` rows of ``items`` (all items when ``None``)."""
        return self.image_table if items is None else self.image_table.index_select(0, items)

    def text_features(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """``t_feat`` rows of ``items`` (all items when ``None``).

        A learnable fusion runs once per distinct item of ``items`` and its rows are gathered back:
        the fusion is row-wise, so the values are the same, and a batch's positives and negatives
        repeat items (self-attention over the views was most of FREEDOM's step).
        """
        if self.text_table is not None:
            return self.text_table if items is None else self.text_table.index_select(0, items)
        if items is None:
            return self.fusion(self.text_views, self.image_raw)[0]
        distinct, inverse = torch.unique(items, return_inverse=True)
        views, image = self.text_views.index_select(1, distinct), self.image_raw.index_select(0, distinct)
        return rows(self.fusion(views, image)[0], inverse)

    def view_weights(self) -> np.ndarray | None:
        """``[n_items, n_views]`` fusion weights (``None`` for sum/concat/mlp)."""
        if not self.fusion.learnable:
            return self._static_weights
        with torch.no_grad():
            weights = self.fusion(self.text_views, self.image_raw)[1]
        return None if weights is None else weights.cpu().numpy()


def _table(values: torch.Tensor, trainable: bool) -> torch.Tensor:
    """A trainable ``nn.Parameter`` copy, or (fixed) a buffer sharing ``values``: never written, no copy."""
    return nn.Parameter(values.clone()) if trainable else nn.Buffer(values, persistent=False)
