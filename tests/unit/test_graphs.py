"""Graphs: normalised adjacency, batched kNN, sparse products and the content-hash cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cliper import graphs
from cliper.fusion import attention_weights
from cliper.models import Features, InteractionData, build_model


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch) -> graphs.GraphCache:
    """A disk-backed process cache in a temporary folder (restored afterwards)."""
    cache = graphs.GraphCache(tmp_path / "graphs")
    monkeypatch.setattr(graphs, "_DEFAULT_CACHE", cache)
    return cache


def test_normalized_adjacency_matches_dense_formula() -> None:
    users = np.array([0, 0, 1, 2, 2, 2, 0])  # last pair duplicates the first: counted once
    items = np.array([0, 1, 1, 0, 1, 2, 0])
    n_users, n_items = 3, 4  # item 3 has no interaction
    adj = graphs.normalized_adjacency(users, items, n_users, n_items).to_dense()
    a = np.zeros((n_users + n_items,) * 2)
    a[users, items + n_users] = a[items + n_users, users] = 1.0
    d = a.sum(1) + graphs.DEGREE_EPS
    expected = a / np.sqrt(d)[:, None] / np.sqrt(d)[None, :]
    np.testing.assert_allclose(adj.numpy(), expected, rtol=1e-6, atol=1e-7)


def test_knn_is_chunk_independent_and_matches_brute_force() -> None:
    x = torch.randn(23, 8, generator=torch.Generator().manual_seed(1))
    full = graphs.knn_indices(x, 4, chunk_rows=1000)
    chunked = graphs.knn_indices(x, 4, chunk_rows=5)
    assert torch.equal(full, chunked)
    xn = torch.nn.functional.normalize(x, dim=-1)
    expected = torch.topk(xn @ xn.T, 4, dim=-1).indices
    assert torch.equal(full, expected)
    assert torch.all(full[:, 0] == torch.arange(23))  # each item is its own nearest neighbour


def test_knn_graph_values_and_mixing() -> None:
    x, y = torch.randn(12, 5), torch.randn(12, 5)
    g = graphs.knn_graph(x, 3)
    assert g._nnz() == 36
    torch.testing.assert_close(g.values(), torch.full((36,), 1 / 3), rtol=1e-5, atol=1e-6)
    mixed = graphs.mixed_knn_graph(x, y, 3, 0.25).to_dense()
    torch.testing.assert_close(mixed, 0.25 * g.to_dense() + 0.75 * graphs.knn_graph(y, 3).to_dense())


def test_spmm_backward_matches_dense() -> None:
    dense = torch.randn(6, 6) * (torch.rand(6, 6) > 0.5)
    csr, csr_t = graphs.to_csr(dense.to_sparse()), graphs.to_csr(dense.T.to_sparse())
    x = torch.randn(6, 3, requires_grad=True)
    (graphs.spmm(csr, x, csr_t) ** 2).sum().backward()
    x2 = x.detach().clone().requires_grad_(True)
    ((dense @ x2) ** 2).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)


def test_cache_hits_and_invalidation(fresh_cache: graphs.GraphCache) -> None:
    x = torch.randn(15, 4)
    build = lambda feats: lambda: graphs.knn_graph(feats, 3)  # noqa: E731
    first = fresh_cache.get_or_build("knn", (x,), {"k": 3}, build(x))
    again = fresh_cache.get_or_build("knn", (x,), {"k": 3}, build(x))
    assert fresh_cache.builds == 1 and again is first
    fresh_cache.get_or_build("knn", (x,), {"k": 4}, lambda: graphs.knn_graph(x, 4))
    assert fresh_cache.builds == 2  # a parameter change is a new graph
    changed = x.clone()
    changed[0, 0] += 1e-3
    fresh_cache.get_or_build("knn", (changed,), {"k": 3}, build(changed))
    assert fresh_cache.builds == 3  # a feature change is a new graph
    assert len(list(fresh_cache.directory.glob("knn-*.pt"))) == 3
    reopened = graphs.GraphCache(fresh_cache.directory)  # a new process: served from disk
    from_disk = reopened.get_or_build("knn", (x,), {"k": 3}, build(x))
    assert reopened.builds == 0
    assert torch.equal(from_disk.to_dense(), first.to_dense())


def test_freedom_never_reuses_a_graph_built_from_other_features(fresh_cache: graphs.GraphCache) -> None:
    rng = np.random.default_rng(0)
    data = InteractionData(10, 12, rng.integers(0, 10, 60), rng.integers(0, 12, 60))
    gen = torch.Generator().manual_seed(0)
    feats = Features(torch.randn(12, 8, generator=gen), torch.randn(2, 12, 8, generator=gen), ("a", "b"))
    config = {"knn_k": 3, "mm_image_weight": 0.5}
    model = build_model("freedom", data, config, features=feats)
    build_model("freedom", data, config, features=feats)
    assert fresh_cache.builds == 1
    other = Features(torch.randn(12, 8, generator=gen), feats.text_views, feats.view_names)
    model2 = build_model("freedom", data, config, features=other)
    assert fresh_cache.builds == 2
    expected = graphs.mixed_knn_graph(other.image, model2.text_static, 3, 0.5).to_dense()
    torch.testing.assert_close(model2.mm_adj.to_dense(), expected)
    assert not torch.equal(model.mm_adj.to_dense(), model2.mm_adj.to_dense())


def test_views_graph_is_the_mean_of_one_knn_graph_per_view() -> None:
    gen = torch.Generator().manual_seed(3)
    image, views = torch.randn(14, 6, generator=gen), torch.randn(3, 14, 6, generator=gen)
    per_view = torch.stack([graphs.knn_graph(v, 4).to_dense() for v in views])
    torch.testing.assert_close(graphs.views_knn_graph(views, 4).to_dense(), per_view.mean(0))
    mixed = graphs.mixed_views_knn_graph(image, views, 4, 0.3).to_dense()
    torch.testing.assert_close(mixed, 0.3 * graphs.knn_graph(image, 4).to_dense() + 0.7 * per_view.mean(0))
    assert torch.allclose(mixed.sum(1), torch.ones(14))  # rows of 1/k values stay stochastic


def test_freedom_text_graph_views_builds_one_graph_per_view(fresh_cache: graphs.GraphCache) -> None:
    rng = np.random.default_rng(1)
    data = InteractionData(10, 12, rng.integers(0, 10, 60), rng.integers(0, 12, 60))
    gen = torch.Generator().manual_seed(1)
    feats = Features(torch.randn(12, 8, generator=gen), torch.randn(3, 12, 8, generator=gen), ("a", "b", "c"))
    fused = build_model("freedom", data, {"knn_k": 3, "mm_image_weight": 0.5}, features=feats)
    views = build_model("freedom", data, {"knn_k": 3, "mm_image_weight": 0.5, "text_graph": "views"},
                        features=feats)
    expected = graphs.mixed_views_knn_graph(feats.image, feats.text_views, 3, 0.5).to_dense()
    torch.testing.assert_close(views.mm_adj.to_dense(), expected)
    assert not torch.equal(views.mm_adj.to_dense(), fused.mm_adj.to_dense())
    assert fresh_cache.builds == 2  # the two text graphs never share a cache entry
    single = Features(feats.image, feats.text_views[:1], ("a",))  # one view: the fused graph itself
    one = build_model("freedom", data, {"knn_k": 3, "mm_image_weight": 0.5, "text_graph": "views"},
                      features=single)
    same = build_model("freedom", data, {"knn_k": 3, "mm_image_weight": 0.5}, features=single)
    torch.testing.assert_close(one.mm_adj.to_dense(), same.mm_adj.to_dense())
    with pytest.raises(ValueError, match="text_graph 'per_item' is not one of"):
        build_model("freedom", data, {"knn_k": 3, "text_graph": "per_item"}, features=feats)


def test_views_graph_weights_each_items_rows_by_its_view_weights() -> None:
    gen = torch.Generator().manual_seed(4)
    views = torch.randn(3, 10, 5, generator=gen)
    weights = torch.softmax(torch.randn(10, 3, generator=gen), -1)
    per_view = torch.stack([graphs.knn_graph(v, 3).to_dense() for v in views])  # [V, I, I]
    expected = torch.einsum("iv,vij->ij", weights, per_view)
    torch.testing.assert_close(graphs.views_knn_graph(views, 3, weights).to_dense(), expected)
    assert not torch.allclose(expected, per_view.mean(0))


def test_freedom_attention_views_graph_uses_the_cliper_attention_weights(
    fresh_cache: graphs.GraphCache,
) -> None:

    rng = np.random.default_rng(2)
    data = InteractionData(10, 12, rng.integers(0, 10, 60), rng.integers(0, 12, 60))
    gen = torch.Generator().manual_seed(2)
    feats = Features(torch.randn(12, 8, generator=gen), torch.randn(3, 12, 8, generator=gen), ("a", "b", "c"))
    config = {"knn_k": 3, "mm_image_weight": 0.4, "text_graph": "attention_views"}
    model = build_model("freedom", data, config, features=feats)
    weights = attention_weights(feats.text_views, feats.image, model.fusion.cfg.temperature)
    expected = graphs.mixed_views_knn_graph(feats.image, feats.text_views, 3, 0.4, weights).to_dense()
    torch.testing.assert_close(model.mm_adj.to_dense(), expected)
