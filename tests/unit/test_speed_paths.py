"""The fast paths of issue 15 compute what the plain formulas compute."""

from __future__ import annotations

import numpy as np
import torch

from cliper import graphs
from cliper.evaluate import EvalTarget, evaluate
from cliper.models import Features, InteractionData, build_model
from cliper.models.base import bpr_loss
from cliper.models.freedom import _modality_bpr

N_USERS, N_ITEMS, DIM = 6, 9, 8


def _data() -> InteractionData:
    users = np.array([0, 0, 1, 2, 2, 3, 4, 5, 5, 1])
    items = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 0])
    return InteractionData(N_USERS, N_ITEMS, users, items)


def _features() -> Features:
    gen = torch.Generator().manual_seed(3)
    views = torch.randn(2, N_ITEMS, DIM, generator=gen)
    return Features(torch.randn(N_ITEMS, DIM, generator=gen), views, ("a", "b"))


def test_evaluate_leaves_a_cached_score_table_untouched() -> None:
    """Masking writes into the score block only when the score function owns it."""
    table = torch.randn(N_USERS, N_ITEMS, generator=torch.Generator().manual_seed(0))
    before = table.clone()
    data = _data()
    target = EvalTarget.build(N_USERS, N_ITEMS, data.train_users, data.train_items, [0, 1, 2], [4, 5, 6])

    def cached(users: torch.Tensor) -> torch.Tensor:  # a view of the table, as a cache would return
        return table[int(users[0]) : int(users[-1]) + 1]

    first = evaluate(cached, target, topk=(2,), batch_users=8)
    assert torch.equal(table, before)
    assert evaluate(cached, target, topk=(2,), batch_users=8) == first


def test_vbpr_batch_factors_equal_the_full_table_rows() -> None:
    model = build_model("vbpr", _data(), features=_features())
    items = torch.tensor([3, 1, 3, 8, 1, 0])
    torch.testing.assert_close(model.item_factors(items), model.item_factors()[items])


def test_freedom_modality_term_equals_two_projections() -> None:
    gen = torch.Generator().manual_seed(1)
    u, pos, neg = (torch.randn(5, 4, generator=gen) for _ in range(3))
    trs = torch.nn.Linear(4, 4)
    plain = bpr_loss((u * trs(pos)).sum(-1), (u * trs(neg)).sum(-1))
    torch.testing.assert_close(_modality_bpr(u, trs, pos, neg), plain)


def test_csr_indices_are_int32_and_products_unchanged() -> None:
    dense = torch.randn(7, 7) * (torch.rand(7, 7, generator=torch.Generator().manual_seed(2)) > 0.5)
    csr = graphs.to_csr(dense.to_sparse())
    assert csr.crow_indices().dtype == csr.col_indices().dtype == torch.int32
    x = torch.randn(7, 3)
    torch.testing.assert_close(torch.sparse.mm(csr, x), dense @ x)
