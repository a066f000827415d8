"""BPR-MF: matrix factorisation trained with the Bayesian Personalised Ranking loss.

Rendle, Freudenthaler, Gantner and Schmidt-Thieme, "BPR: Bayesian Personalized Ranking from
Implicit Feedback", UAI 2009. Score ``x̂_ui = <p_u, q_i>`` (eq. 9 with MF); loss per
(u, i, j) triple ``-ln σ(x̂_ui - x̂_uj)`` (eq. 7) plus ``reg_weight ·`` MMRec's ``EmbLoss``
(sum of the Frobenius norms of the batch's user/positive/negative embeddings over the batch size).
Follows MMRec ``src/models/bpr.py`` (Xavier-normal initialisation, 64-d embeddings).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cliper.models import register
from cliper.models.base import Features, InteractionData, Recommender, bpr_loss, emb_norm_loss


@register
class BPR(Recommender):
    """Plain MF; ignores features."""

    name = "bpr"
    needs_features = False

    def __init__(
        self,
        data: InteractionData,
        config: dict[str, Any],
        features: Features | None = None,
        fusion: Any = None,
    ) -> None:
        super().__init__(data, config, features, fusion)
        dim = int(config["embedding_size"])
        self.reg_weight = float(config["reg_weight"])
        self.user_embedding = nn.Embedding(self.n_users, dim)
        self.item_embedding = nn.Embedding(self.n_items, dim)
        nn.init.xavier_normal_(self.user_embedding.weight)
        nn.init.xavier_normal_(self.item_embedding.weight)

    def compute_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw embedding tables."""
        return self.user_embedding.weight, self.item_embedding.weight

    def calculate_loss(
        self, users: torch.Tensor, pos_items: torch.Tensor, neg_items: torch.Tensor
    ) -> torch.Tensor:
        """BPR loss + ``reg_weight`` · EmbLoss on the batch embeddings."""
        user_e = self.user_embedding(users)
        pos_e, neg_e = self.item_embedding(pos_items), self.item_embedding(neg_items)
        loss = bpr_loss((user_e * pos_e).sum(-1), (user_e * neg_e).sum(-1))
        return loss + self.reg_weight * emb_norm_loss(user_e, pos_e, neg_e)
