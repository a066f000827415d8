"""LightGCN: linear propagation on the normalised user-item graph, layer mean, BPR loss.

He, Deng, Wang, Li, Zhang and Wang, "LightGCN: Simplifying and Powering Graph Convolution Network
for Recommendation", SIGIR 2020. ``E^(k+1) = (D^-1/2 A D^-1/2) E^(k)`` (eq. 7); final embedding
``E = Σ_k α_k E^(k)`` with ``α_k = 1/(K+1)`` (eq. 8); score ``ŷ_ui = e_u^T e_i`` (eq. 10); loss BPR
plus ``reg_weight ·`` MMRec's ``EmbLoss`` on the layer-0 embeddings of the batch (eq. 15). Follows
MMRec ``src/models/lightgcn.py`` (Xavier-uniform initialisation).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cliper import graphs
from cliper.models import register
from cliper.models.base import Features, InteractionData, Recommender, bpr_loss, emb_norm_loss, rows


@register
class LightGCN(Recommender):
    """LightGCN over the train interactions (features ignored)."""

    name = "lightgcn"
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
        self.n_layers = int(config["n_layers"])
        self.reg_weight = float(config["reg_weight"])
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, dim)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, dim)))
        adj = graphs.normalized_adjacency(data.train_users, data.train_items, self.n_users, self.n_items)
        self.register_buffer("norm_adj", adj, persistent=False)

    def _propagated(self) -> torch.Tensor:
        """Layer mean of the propagated embeddings ``[U + I, d]`` (users first)."""
        ego = torch.cat([self.user_emb, self.item_emb], 0)
        return graphs.propagate_mean(self.norm_adj, ego, self.n_layers)

    def compute_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer mean of the propagated embeddings, split into users and items."""
        out = self._propagated()
        return out[: self.n_users], out[self.n_users :]

    def calculate_loss(
        self, users: torch.Tensor, pos_items: torch.Tensor, neg_items: torch.Tensor
    ) -> torch.Tensor:
        """BPR on propagated embeddings + ``reg_weight`` · EmbLoss on the ego embeddings."""
        out = self._propagated()  # rows gathered from the whole table: no zero-filled slice gradients
        u, p, n = rows(out, users), rows(out, pos_items + self.n_users), rows(out, neg_items + self.n_users)
        loss = bpr_loss((u * p).sum(-1), (u * n).sum(-1))
        ego = (rows(self.user_emb, users), rows(self.item_emb, pos_items), rows(self.item_emb, neg_items))
        reg = emb_norm_loss(*ego)
        return loss + self.reg_weight * reg
