"""Hard-negative batches for contrastive adaptation.

With random batches a CLIP trained from a small catalog stops learning once the cheapest
attributes tell the items of a batch apart: on the demo catalog the image features end up
knowing brand and colour (kNN purity 0.98 / 0.93) and nothing of shape, pattern or material
(at chance), because in a batch of 64 almost no two items share brand and colour. InfoNCE then
has no negative that forces the rest. Hard-negative batches fix the batch, not the loss
(hard-negative mixing, Kalantidis et al. 2020; NegCLIP, Yuksekgonul et al. 2023): each batch
is ``anchors`` drawn at random plus, for a share of them, one of their nearest neighbours in
the model's *current* image embedding space, so every such anchor meets a negative that already
looks like it and the loss can only fall by learning what still differs.

The neighbour table is rebuilt every epoch from the embeddings the training steps computed
anyway (:class:`EmbeddingMemory`), so mining costs no extra forward pass. The number of steps per
epoch stays ``n_train // batch_size``, so an epoch costs what a random one does.

Off by default (``clip.adapt.hard_negatives: 0``): on the demo, with its ViT and 18 epochs, it left
shape, pattern and material at chance; only longer runs with a conv tower moved pattern (0.39 ->
0.45-0.49), past the demo's time budget (``benchmarks/feature_probe.py``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


class EmbeddingMemory:
    """Latest detached, normalised image embedding of every item seen in training (row = item index)."""

    def __init__(self, n_items: int):
        self.table: torch.Tensor | None = None
        self.n_items = n_items

    def update(self, positions: torch.Tensor, embeddings: torch.Tensor) -> None:
        emb = F.normalize(embeddings.detach().float().cpu(), dim=-1)
        if self.table is None:
            self.table = torch.zeros(self.n_items, emb.shape[1])
        self.table[positions] = emb

    @property
    def ready(self) -> bool:
        return self.table is not None


def nearest_neighbours(table: torch.Tensor, k: int, block: int = 4096) -> torch.Tensor:
    """``[n, k]`` positions of each row's ``k`` most cosine-similar other rows (rows normalised)."""
    k = min(k, len(table) - 1)
    out = []
    for start in range(0, len(table), block):
        sim = table[start : start + block] @ table.T
        rows = torch.arange(start, min(start + block, len(table)))
        sim[rows - start, rows] = -float("inf")  # never one's own neighbour
        out.append(sim.topk(k, dim=1).indices)
    return torch.cat(out)


def hard_batches(
    n_train: int,
    batch_size: int,
    neighbours: torch.Tensor | None,
    share: float,
    gen: torch.Generator,
) -> list[torch.Tensor]:
    """One epoch of batches: positions into the training items, no position twice in a batch.

    ``n_hard = round(share * batch_size)`` rows of each batch are mined: the batch holds
    ``batch_size - n_hard`` random anchors, and the first ``n_hard`` of them each bring one
    neighbour drawn at random from their row of ``neighbours`` (so ``share <= 0.5``). A neighbour
    already in the batch is dropped, so a batch may be a few rows short. Without ``neighbours``
    (before the first epoch has filled the memory) or with ``share == 0`` the batches are plain
    random ones; either way the last incomplete batch is dropped.
    """
    n_batches = n_train // batch_size
    perm = torch.randperm(n_train, generator=gen)
    n_hard = 0 if neighbours is None else int(round(share * batch_size))
    n_anchor = batch_size - n_hard
    anchors = perm[: n_batches * n_anchor].view(n_batches, n_anchor)
    if n_hard == 0:
        return list(anchors)
    # the first n_hard anchors of each batch bring one neighbour each
    pick = torch.randint(neighbours.shape[1], (n_batches, n_hard), generator=gen)
    mates = neighbours[anchors[:, :n_hard], pick]
    batches = []
    for row in torch.cat([anchors, mates], dim=1):
        _, first = np.unique(row.numpy(), return_index=True)
        batches.append(row[torch.from_numpy(np.sort(first))])
    return batches
