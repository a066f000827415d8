"""BM3: bootstrapped multimodal latent representations, no negative sampling.

Zhou, Zhou, Zhang, Liu, Zhu and Miao, "Bootstrap Latent Representations for Multi-modal
Recommendation", WWW 2023 (arXiv 2207.05969); follows MMRec ``src/models/bm3.py``.

* Encoder: LightGCN over the user-item graph (``n_layers``, layer mean); item = ``h_i + e_i``
  (ID embedding added back); modality encoders ``v̄ = W_v v``, ``t̄ = W_t t``.
* Latent bootstrap: a target view is the online embedding under dropout (stop-gradient; one mask
  per user/item and batch, drawn on the full tables as MMRec does); the online view goes through a
  shared predictor ``f_p``.
* Loss (eqs. of sec. 3.3): ``L_rec = (1 - cos(f_p(h_u), sg(h̃_i))) + (1 - cos(f_p(h_i), sg(h̃_u)))``;
  ``L_align = Σ_m 1 - cos(f_p(m̄_i), sg(h̃_i))``; ``L_mask = Σ_m 1 - cos(f_p(m̄_i), sg(m̃_i))``;
  total ``L_rec + cl_weight (L_align + L_mask) + reg_weight · EmbLoss(h_u^all, h_i^all)``.
* Score ``f_p(h_u)^T f_p(h_i)``. The negatives of a batch are ignored.

CLIPER feeds ``v = features.image`` and ``t = fusion(text views)``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cliper import graphs
from cliper.fusion import Fusion
from cliper.models import register
from cliper.models.base import Features, InteractionData, emb_norm_loss
from cliper.models.multimodal import MultimodalRecommender


def _cos_loss(online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 1.0 - F.cosine_similarity(online, target.detach(), dim=-1).mean()


@register
class BM3(MultimodalRecommender):
    """BM3 with CLIPER features."""

    name = "bm3"

    def __init__(
        self,
        data: InteractionData,
        config: dict[str, Any],
        features: Features | None = None,
        fusion: Fusion | None = None,
    ) -> None:
        super().__init__(data, config, features, fusion, trainable_features=True)
        dim = int(config["embedding_size"])
        self.n_layers = int(config["n_layers"])
        self.reg_weight, self.cl_weight = float(config["reg_weight"]), float(config["cl_weight"])
        self.dropout = float(config["dropout"])
        self.user_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, dim)))
        self.item_id_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, dim)))
        self.predictor = nn.Linear(dim, dim)
        self.image_trs = nn.Linear(self.image_dim, dim)
        self.text_trs = nn.Linear(self.text_dim, dim)
        for layer in (self.predictor, self.image_trs, self.text_trs):
            nn.init.xavier_normal_(layer.weight)
        adj = graphs.normalized_adjacency(data.train_users, data.train_items, self.n_users, self.n_items)
        self.register_buffer("norm_adj", adj, persistent=False)

    def _encode(self) -> tuple[torch.Tensor, torch.Tensor]:
        ego = torch.cat([self.user_embedding, self.item_id_embedding], 0)
        out = graphs.propagate_mean(self.norm_adj, ego, self.n_layers)
        return out[: self.n_users], out[self.n_users :] + self.item_id_embedding

    def compute_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictor outputs of the online user and item embeddings."""
        user, item = self._encode()
        return self.predictor(user), self.predictor(item)

    def calculate_loss(
        self, users: torch.Tensor, pos_items: torch.Tensor, neg_items: torch.Tensor
    ) -> torch.Tensor:
        """Bootstrap loss on (user, positive item) pairs; ``neg_items`` is unused (as in BM3)."""
        user_all, item_all = self._encode()
        with torch.no_grad():  # target views: one dropout mask per node, drawn on the full tables (MMRec)
            u_target = F.dropout(user_all, self.dropout, training=self.training)[users]
            i_target = F.dropout(item_all, self.dropout, training=self.training)[pos_items]
            ones = torch.ones_like(item_all)
            masks = [F.dropout(ones, self.dropout, training=self.training)[pos_items] for _ in range(2)]
        u_ori, i_ori = user_all[users], item_all[pos_items]
        u_online, i_online = self.predictor(u_ori), self.predictor(i_ori)
        loss = _cos_loss(u_online, i_target) + _cos_loss(i_online, u_target)
        modal = 0.0
        feats = (self.text_trs(self.text_features(pos_items)), self.image_trs(self.image_features(pos_items)))
        for feat, mask in zip(feats, masks, strict=True):  # text, then image (MMRec's order)
            online = self.predictor(feat)
            modal = modal + _cos_loss(online, i_target) + _cos_loss(online, feat * mask)
        return loss + self.reg_weight * emb_norm_loss(user_all, item_all) + self.cl_weight * modal
