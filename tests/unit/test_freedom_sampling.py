"""FREEDOM's degree-sensitive edge pruning (Zhou & Shen, MM 2023, sec. 3.2; MMRec ``pre_epoch_processing``).

Each epoch keeps ``int(E (1 - dropout))`` user-item edges, drawn without replacement with
probability proportional to ``1 / sqrt(d_u d_i)`` (full-graph degrees), and renormalises the kept
graph by its *own* degrees. The expected inclusion frequencies of that draw are computed here
independently (Gumbel top-k, equivalent to successive sampling without replacement) and compared
with the frequencies of many ``pre_epoch`` calls.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cliper.models import Features, InteractionData, build_model

N_USERS, N_ITEMS, DIM, DROPOUT = 8, 10, 4, 0.8
N_EPOCHS = 4000  # pre_epoch draws; the frequency tolerance below is 4.5 binomial sd at this count
N_SIM = 200_000  # independent simulation draws of the expected frequencies
SD_TOL = 4.5


def skewed_graph() -> tuple[np.ndarray, np.ndarray]:
    """A bipartite graph with very unequal degrees (user 0 and item 0 are hubs, others sparse)."""
    edges = {(0, i) for i in range(N_ITEMS)} | {(u, 0) for u in range(N_USERS)}
    edges |= {(1, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 7), (7, 8), (7, 9), (2, 9), (3, 1)}
    pairs = np.asarray(sorted(edges), dtype=np.int64)
    return pairs[:, 0], pairs[:, 1]


@pytest.fixture(scope="module")
def freedom():  # noqa: ANN201 - a FREEDOM model
    users, items = skewed_graph()
    gen = torch.Generator().manual_seed(0)
    features = Features(
        torch.randn(N_ITEMS, DIM, generator=gen), torch.randn(2, N_ITEMS, DIM, generator=gen), ("a", "b")
    )
    config = {"embedding_size": DIM, "feat_embed_dim": DIM, "knn_k": 3, "dropout": DROPOUT}
    return build_model("freedom", InteractionData(N_USERS, N_ITEMS, users, items), config, features=features)


def degree_weights(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    d_u, d_i = np.bincount(users, minlength=N_USERS), np.bincount(items, minlength=N_ITEMS)
    return 1.0 / np.sqrt(d_u[users] * d_i[items])


def expected_inclusion(weights: np.ndarray, n_keep: int, seed: int = 0) -> np.ndarray:
    """Inclusion probability of each edge under weighted sampling without replacement (simulated)."""
    rng = np.random.default_rng(seed)
    keys = np.log(weights)[None, :] + rng.gumbel(size=(N_SIM, len(weights)))
    top = np.argpartition(-keys, n_keep - 1, axis=1)[:, :n_keep]
    return np.bincount(top.ravel(), minlength=len(weights)) / N_SIM


def kept_graph(model) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # noqa: ANN001
    """(users, items, values) of the user->item block of the masked adjacency, checking symmetry."""
    dense = model.masked_adj.to_dense().numpy()
    block = dense[:N_USERS, N_USERS:]
    np.testing.assert_array_equal(block, dense[N_USERS:, :N_USERS].T)
    users, items = np.nonzero(block)
    return users, items, block[users, items]


def test_kept_edge_frequencies_follow_inverse_sqrt_degrees(freedom) -> None:
    users, items = skewed_graph()
    weights = degree_weights(users, items)
    n_keep = int(len(users) * (1.0 - DROPOUT))
    expected = expected_inclusion(weights, n_keep)
    edge_id = {(u, i): k for k, (u, i) in enumerate(zip(users, items, strict=True))}
    counts = np.zeros(len(users))
    torch.manual_seed(0)
    for _ in range(N_EPOCHS):
        freedom.pre_epoch()
        ku, ki, _ = kept_graph(freedom)
        assert len(ku) == n_keep
        counts[[edge_id[(u, i)] for u, i in zip(ku, ki, strict=True)]] += 1
    freq = counts / N_EPOCHS
    tol = SD_TOL * np.sqrt(expected * (1 - expected) / N_EPOCHS) + 3 / np.sqrt(N_SIM)
    uniform = np.full_like(expected, n_keep / len(users))
    assert np.sum(np.abs(expected - uniform) > 2 * tol) >= 5, "graph not skewed enough to tell"
    worst = int(np.argmax(np.abs(freq - expected) / tol))
    assert np.all(np.abs(freq - expected) <= tol), (
        f"edge {worst} kept {freq[worst]:.3f} of epochs, expected {expected[worst]:.3f} (±{tol[worst]:.3f})"
    )
    assert np.corrcoef(freq, weights)[0, 1] > 0.9  # rarer (high-degree) edges are dropped more


def test_kept_values_are_renormalised_by_kept_degrees(freedom) -> None:
    torch.manual_seed(1)
    full_users, full_items = skewed_graph()
    full = dict(
        zip(zip(full_users, full_items, strict=True), degree_weights(full_users, full_items), strict=True)
    )
    for _ in range(20):
        freedom.pre_epoch()
        users, items, values = kept_graph(freedom)
        d_u, d_i = np.bincount(users, minlength=N_USERS), np.bincount(items, minlength=N_ITEMS)
        np.testing.assert_allclose(values, 1.0 / np.sqrt(d_u[users] * d_i[items]), rtol=1e-5)
        stale = np.array([full[(u, i)] for u, i in zip(users, items, strict=True)])
        assert not np.allclose(values, stale)  # full-graph values would be the bug


def test_eval_uses_the_full_graph(freedom) -> None:
    freedom.pre_epoch()
    freedom.eval()
    before = freedom.full_sort_predict(torch.arange(N_USERS))
    freedom.train()
    freedom.pre_epoch()
    freedom.eval()
    torch.testing.assert_close(freedom.full_sort_predict(torch.arange(N_USERS)), before)
    freedom.train()
