"""VBPR: BPR-MF with a visual (here: visual + CLIPER text) item factor.

He and McAuley, "VBPR: Visual Bayesian Personalized Ranking from Implicit Feedback", AAAI 2016.
Eq. 2 scores ``x̂_ui = α + β_u + β_i + γ_u^T γ_i + θ_u^T (E f_i)``; MMRec's "recommended version"
(``src/models/vbpr.py``), followed here, drops the biases and concatenates the factors:
user ``[γ_u ; θ_u]`` (width 2d), item ``[γ_i ; E f_i]`` with ``f_i = [t_feat_i ; v_feat_i]`` and ``E``
a linear projection to d. Loss: BPR (eq. 4) + ``reg_weight ·`` EmbLoss on the batch factors.
Raw features stay fixed (as MMRec); a learnable CLIPER fusion trains with the model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cliper.fusion import Fusion
from cliper.models import register
from cliper.models.base import Features, InteractionData, bpr_loss, emb_norm_loss, rows
from cliper.models.multimodal import MultimodalRecommender


@register
class VBPR(MultimodalRecommender):
    """VBPR with ``f_i = [t_feat ; v_feat]``."""

    name = "vbpr"

    def __init__(
        self,
        data: InteractionData,
        config: dict[str, Any],
        features: Features | None = None,
        fusion: Fusion | None = None,
    ) -> None:
        super().__init__(data, config, features, fusion, trainable_features=False)
        dim = int(config["embedding_size"])
        self.reg_weight = float(config["reg_weight"])
        self.u_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, 2 * dim)))
        self.i_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, dim)))
        self.item_linear = nn.Linear(self.text_dim + self.image_dim, dim)
        nn.init.xavier_normal_(self.item_linear.weight)
        nn.init.zeros_(self.item_linear.bias)
        # f_i = [t_i ; v_i] once, when both are fixed (parameter-free fusion), as MMRec's item_raw_features
        raw = None if self.text_table is None else torch.cat([self.text_table, self.image_table], -1)
        self.register_buffer("raw_static", raw, persistent=False)

    def raw_features(self, items: torch.Tensor) -> torch.Tensor:
        """``f_i = [t_i ; v_i]`` rows of ``items``."""
        if self.raw_static is not None:
            return rows(self.raw_static, items)
        return torch.cat([self.text_features(items), self.image_features(items)], -1)

    def item_factors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """``[γ_i ; E f_i]`` for ``items`` (all when ``None``).

        ``E f_i`` is row-wise, so it is computed once per distinct item of the batch and gathered
        back (a batch's positives and negatives repeat items): the same values, fewer products.
        """
        if items is None:
            all_items = torch.arange(self.n_items, device=self.i_embedding.device)
            return torch.cat([self.i_embedding, self.item_linear(self.raw_features(all_items))], -1)
        distinct, inverse = torch.unique(items, return_inverse=True)
        projected = rows(self.item_linear(self.raw_features(distinct)), inverse)
        return torch.cat([rows(self.i_embedding, items), projected], -1)

    def compute_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """User factors and all item factors."""
        return self.u_embedding, self.item_factors()

    def calculate_loss(
        self, users: torch.Tensor, pos_items: torch.Tensor, neg_items: torch.Tensor
    ) -> torch.Tensor:
        """BPR + ``reg_weight`` · EmbLoss (item factors computed for the batch items only)."""
        items = torch.cat([pos_items, neg_items])
        factors = self.item_factors(items)
        user_e = rows(self.u_embedding, users)
        pos_e, neg_e = factors[: len(pos_items)], factors[len(pos_items) :]
        loss = bpr_loss((user_e * pos_e).sum(-1), (user_e * neg_e).sum(-1))
        return loss + self.reg_weight * emb_norm_loss(user_e, pos_e, neg_e)
