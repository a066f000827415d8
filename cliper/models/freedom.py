"""FREEDOM: frozen item-item kNN graph + denoised (edge-pruned) user-item graph.

Zhou and Shen, "A Tale of Two Graphs: Freezing and Denoising Graph Structures for Multimodal
Recommendation", ACM MM 2023 (arXiv 2211.06924); follows MMRec ``src/models/freedom.py``.

* Frozen item graph: per modality ``m`` a top-``k`` cosine kNN graph ``S^m`` of the raw features,
  normalised ``D^-1/2 S^m D^-1/2``; mixed ``S = w S^v + (1 - w) S^t`` (``w = mm_image_weight``).
  Built once and cached by the content hash of the features (:mod:`cliper.graphs`).
  ``text_graph`` (not in MMRec): ``fused`` builds ``S^t`` from the fused text vector (MMRec, CLIPER);
  ``views`` averages one kNN graph per text view, ``attention_views`` weights item ``i``'s rows of
  them by its attention weights, so that an attribute only one view states (the description's
  material) keeps its neighbours (``benchmarks/results/grid_probe_xeon_text_graph.md``).
* Item-graph convolution ``h̃ = S^L h`` of the item ID embeddings (``L = n_mm_layers``).
* Denoised user-item graph: every epoch keep ``(1 - dropout)`` of the edges, sampled without
  replacement with probability ``∝ 1 / sqrt(d_u d_i)`` (degree-sensitive pruning), renormalise,
  and run LightGCN (``n_ui_layers``, layer mean). Evaluation uses the full graph.
* Item embedding ``ĥ_i + h̃_i``; score ``e_u^T e_i``.
* Loss ``L_BPR(e_u, e_i) + reg_weight · (L_BPR(e_u, W_v v_i) + L_BPR(e_u, W_t t_i))``.

CLIPER (arXiv 2407.05420) feeds ``v = features.image`` and ``t = fusion(text views)``. With a learnable
fusion the frozen text graph is built from the parameter-free ``attention`` fusion of the same
views (:func:`cliper.fusion.frozen_text_features`) and the learnable fusion feeds ``W_t`` only.
MMRec also reads ``lambda_coeff``, ``weight_size``, ``degree_ratio`` and ``cf_model`` but never uses
them in FREEDOM's computation, so they are not config keys here.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cliper import graphs
from cliper.fusion import Fusion, attention_weights
from cliper.models import register
from cliper.models.base import Features, InteractionData, bpr_loss, rows
from cliper.models.multimodal import MultimodalRecommender

# config text_graph: one kNN graph of the fused text (MMRec); one per view, averaged ("views") or
# each item's rows weighted by its CLIPER attention weights over the views ("attention_views")
TEXT_GRAPHS = ("fused", "views", "attention_views")


@register
class FREEDOM(MultimodalRecommender):
    """FREEDOM with CLIPER features."""

    name = "freedom"

    def __init__(
        self,
        data: InteractionData,
        config: dict[str, Any],
        features: Features | None = None,
        fusion: Fusion | None = None,
    ) -> None:
        super().__init__(data, config, features, fusion, trainable_features=True)
        dim, feat_dim = int(config["embedding_size"]), int(config["feat_embed_dim"])
        if dim != feat_dim:  # the modality BPR terms score user embeddings against projected features
            raise ValueError(
                f"model 'freedom': feat_embed_dim ({feat_dim}) must equal embedding_size ({dim})"
            )
        self.n_mm_layers, self.n_ui_layers = int(config["n_mm_layers"]), int(config["n_ui_layers"])
        self.reg_weight, self.dropout = float(config["reg_weight"]), float(config["dropout"])
        self.user_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, dim)))
        self.item_id_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, dim)))
        self.image_trs = nn.Linear(self.image_dim, feat_dim)
        self.text_trs = nn.Linear(self.text_dim, feat_dim)

        users, items = graphs.unique_edges(data.train_users, data.train_items)
        values = graphs.bipartite_edge_values(users, items, self.n_users, self.n_items)
        self.register_buffer("edge_users", users, persistent=False)
        self.register_buffer("edge_items", items, persistent=False)
        self.register_buffer("edge_values", values, persistent=False)
        self.register_buffer(
            "norm_adj",
            graphs.bipartite_adjacency(users, items, values, self.n_users, self.n_items),
            persistent=False,
        )
        self.text_graph = str(config["text_graph"])
        if self.text_graph not in TEXT_GRAPHS:
            raise ValueError(
                f"model 'freedom': text_graph '{self.text_graph}' is not one of {list(TEXT_GRAPHS)}"
            )
        assert features is not None  # the base class raised otherwise
        mm_adj = self._item_graph(config, features.text_views.detach().float())
        self.register_buffer("mm_adj", graphs.to_csr(mm_adj), persistent=False)
        self.register_buffer("mm_adj_t", graphs.to_csr(mm_adj.t()), persistent=False)
        self.masked_adj: torch.Tensor | None = None

    def _item_graph(self, config: dict[str, Any], views: torch.Tensor) -> torch.Tensor:
        """The frozen mixed kNN graph (text: the fused vector's, or one per view), from the cache."""
        k, weight = int(config["knn_k"]), float(config["mm_image_weight"])
        image = self.image_features().detach()
        params = {"knn_k": k, "mm_image_weight": weight}
        if self.text_graph != "fused":
            weights = None
            if self.text_graph == "attention_views":
                weights = attention_weights(views, image, self.fusion.cfg.temperature)
                params["temperature"] = self.fusion.cfg.temperature
            return graphs.default_cache().get_or_build(
                f"freedom_mm_adj_{self.text_graph}", (image, views), params,
                lambda: graphs.mixed_views_knn_graph(image, views, k, weight, weights),
            )
        text = self.text_static
        return graphs.default_cache().get_or_build(
            "freedom_mm_adj", (image, text), params, lambda: graphs.mixed_knn_graph(image, text, k, weight)
        )

    def pre_epoch(self) -> None:
        """Degree-sensitive edge pruning: resample the kept edges (vectorised ``torch.multinomial``)."""
        if self.dropout <= 0.0:
            self.masked_adj = self.norm_adj
            return
        keep = int(self.edge_values.numel() * (1.0 - self.dropout))
        idx = torch.multinomial(self.edge_values, keep, replacement=False)
        self.mask_edges(self.edge_users[idx], self.edge_items[idx])

    def mask_edges(self, users: torch.Tensor, items: torch.Tensor) -> None:
        """Train on the kept edges ``(users, items)``, renormalised by their own degrees."""
        values = graphs.bipartite_edge_values(users, items, self.n_users, self.n_items)
        self.masked_adj = graphs.bipartite_adjacency(users, items, values, self.n_users, self.n_items)

    def _propagate(self, adj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.item_id_embedding
        for _ in range(self.n_mm_layers):
            h = graphs.spmm(self.mm_adj, h, self.mm_adj_t)
        ego = torch.cat([self.user_embedding, self.item_id_embedding], 0)
        out = graphs.propagate_mean(adj, ego, self.n_ui_layers)
        return out[: self.n_users], out[self.n_users :] + h

    def compute_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Pruned graph while training (resampled by :meth:`pre_epoch`), full graph in eval."""
        if not self.training:
            return self._propagate(self.norm_adj)
        if self.masked_adj is None or self.masked_adj.device != self.norm_adj.device:
            self.pre_epoch()
        return self._propagate(self.masked_adj)

    def calculate_loss(
        self, users: torch.Tensor, pos_items: torch.Tensor, neg_items: torch.Tensor
    ) -> torch.Tensor:
        """BPR on the graph embeddings + ``reg_weight`` · modality BPR terms."""
        user_all, item_all = self.compute_embeddings()
        u = rows(user_all, users)
        loss = bpr_loss((u * rows(item_all, pos_items)).sum(-1), (u * rows(item_all, neg_items)).sum(-1))
        # one text_features call for both: a learnable fusion fuses each distinct item once
        text = self.text_features(torch.cat([pos_items, neg_items])).split([len(pos_items), len(neg_items)])
        image = self.image_features(pos_items), self.image_features(neg_items)
        mf_t = _modality_bpr(u, self.text_trs, *text)
        mf_v = _modality_bpr(u, self.image_trs, *image)
        return loss + self.reg_weight * (mf_t + mf_v)


def _modality_bpr(u: torch.Tensor, trs: nn.Linear, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """``L_BPR(u, W p + b, W n + b)`` computed as ``-mean log σ(u · W (p - n))``.

    The same loss and gradients (the bias cancels in the score difference, so its gradient is 0
    either way); one projection of the batch's differences instead of two of its items halves the
    projection's cost, the largest matrix product of the FREEDOM step.
    """
    return bpr_loss((u * F.linear(pos - neg, trs.weight)).sum(-1), torch.zeros((), device=u.device))
