"""Every registered backbone: trains, predicts consistently, saves/loads, rejects bad configs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cliper.config import FusionConfig
from cliper.fusion import build_fusion
from cliper.models import (
    Features,
    InteractionData,
    Recommender,
    build_model,
    default_config,
    get_model_class,
    list_models,
)

N_USERS, N_ITEMS, N_PAIRS, DIM, N_VIEWS = 40, 30, 300, 16, 3
SMALL_DIM = 8


@pytest.fixture(scope="module")
def data() -> InteractionData:
    rng = np.random.default_rng(0)
    return InteractionData(
        N_USERS, N_ITEMS, rng.integers(0, N_USERS, N_PAIRS), rng.integers(0, N_ITEMS, N_PAIRS)
    )


@pytest.fixture(scope="module")
def features() -> Features:
    gen = torch.Generator().manual_seed(0)
    return Features(
        torch.randn(N_ITEMS, DIM, generator=gen),
        torch.randn(N_VIEWS, N_ITEMS, DIM, generator=gen),
        ("title", "brand", "global"),
    )


def sample_negatives(data: InteractionData, seed: int) -> torch.Tensor:
    """Uniform negatives not in the user's train set (vectorised rejection sampling)."""
    gen = np.random.default_rng(seed)
    seen = np.zeros((data.n_users, data.n_items), bool)
    seen[data.train_users, data.train_items] = True
    neg = gen.integers(0, data.n_items, len(data.train_users))
    bad = seen[data.train_users, neg]
    while bad.any():
        neg[bad] = gen.integers(0, data.n_items, bad.sum())
        bad = seen[data.train_users, neg]
    return torch.from_numpy(neg)


def make(name: str, data: InteractionData, features: Features, fusion: str = "attention", **config):
    torch.manual_seed(0)
    fus = build_fusion(FusionConfig(name=fusion), N_VIEWS, DIM)
    small = {key: SMALL_DIM for key in ("embedding_size", "feat_embed_dim") if key in default_config(name)}
    return build_model(name, data, {**small, **config}, features=features, fusion=fus)


def train(model: Recommender, data: InteractionData, steps: int = 25) -> list[float]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    users, items = torch.from_numpy(data.train_users), torch.from_numpy(data.train_items)
    losses = []
    for step in range(steps):
        model.train()
        model.pre_epoch()
        loss = model.calculate_loss(users, items, sample_negatives(data, step))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("name", list_models())
def test_trains_predicts_saves_and_loads(name: str, data, features, tmp_path) -> None:
    model = make(name, data, features)
    losses = train(model, data)
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < np.mean(losses[:5]), losses
    model.eval()
    users = torch.arange(7)
    scores = model.full_sort_predict(users)
    assert scores.shape == (7, N_ITEMS)
    user_e, item_e = model.export_embeddings()
    assert user_e.dtype == np.float32 and user_e.shape[0] == N_USERS and item_e.shape[0] == N_ITEMS
    np.testing.assert_allclose(scores.detach().numpy(), user_e[:7] @ item_e.T, rtol=1e-4, atol=1e-5)

    model.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} >= {"model.pt", "config.json", "embeddings.npz"}
    saved = np.load(tmp_path / "embeddings.npz")
    np.testing.assert_array_equal(saved["user"], user_e)
    loaded = Recommender.load(tmp_path, data, features if model.needs_features else None)
    assert type(loaded) is type(model) and not loaded.training
    torch.testing.assert_close(loaded.full_sort_predict(users), scores, rtol=0, atol=0)
    assert loaded.full_sort_predict(users).shape == (7, N_ITEMS)


@pytest.mark.parametrize("name", [n for n in list_models() if get_model_class(n).needs_features])
@pytest.mark.parametrize("fusion", ["self_attention", "mlp"])
def test_learnable_fusion_trains_with_the_backbone(name: str, fusion: str, data, features, tmp_path) -> None:
    model = make(name, data, features, fusion=fusion)
    before = [p.detach().clone() for p in model.fusion.parameters()]
    train(model, data, steps=3)
    assert all(p.grad is not None for p in model.fusion.parameters())
    assert any(not torch.equal(b, p) for b, p in zip(before, model.fusion.parameters(), strict=True))
    weights = model.view_weights()
    assert (weights is None) == (fusion == "mlp")
    model.save(tmp_path)
    loaded = Recommender.load(tmp_path, data, features)
    users = torch.arange(5)
    model.eval()
    torch.testing.assert_close(
        loaded.full_sort_predict(users), model.full_sort_predict(users), rtol=0, atol=0
    )


@pytest.mark.parametrize("name", [n for n in list_models() if get_model_class(n).needs_features])
def test_learnable_fusion_runs_once_per_distinct_item(name: str, data, features, monkeypatch) -> None:
    """A batch repeats items: the fusion sees each once, and loss and gradients are the per-row ones."""
    model = make(name, data, features, fusion="self_attention")
    model.train()
    model.pre_epoch()
    users, pos = torch.from_numpy(data.train_users), torch.from_numpy(data.train_items)
    neg = sample_negatives(data, 0)

    def loss_and_grads() -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        torch.manual_seed(1)  # BM3's target dropout
        loss = model.calculate_loss(users, pos, neg)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    fused_rows: list[int] = []
    forward = type(model.fusion).forward

    def counting(self, views, image):
        fused_rows.append(image.shape[0])
        return forward(self, views, image)

    monkeypatch.setattr(type(model.fusion), "forward", counting)
    loss, grads = loss_and_grads()
    distinct = len(torch.unique(torch.cat([pos, neg])))
    assert 0 < sum(fused_rows) <= distinct < len(pos) + len(neg)

    def per_row(self, items=None):  # the fusion run on every requested row, repeats included
        if items is None:
            return self.fusion(self.text_views, self.image_raw)[0]
        return self.fusion(self.text_views[:, items], self.image_raw[items])[0]

    monkeypatch.setattr(type(model), "text_features", per_row)
    reference, reference_grads = loss_and_grads()
    torch.testing.assert_close(loss, reference, rtol=1e-6, atol=1e-7)
    assert len(grads) == len(reference_grads)
    for grad, ref in zip(grads, reference_grads, strict=True):
        torch.testing.assert_close(grad, ref, rtol=1e-5, atol=1e-7)


def test_view_weights_of_attention(data, features) -> None:
    weights = make("freedom", data, features).view_weights()
    assert weights.shape == (N_ITEMS, N_VIEWS)
    np.testing.assert_allclose(weights.sum(1), 1.0, rtol=1e-5)
    assert make("bpr", data, features).view_weights() is None


def test_concat_fusion_widens_the_text_input(data, features) -> None:
    model = make("vbpr", data, features, fusion="concat")
    assert model.item_linear.in_features == N_VIEWS * DIM + DIM


def test_freedom_edge_dropout_resamples(data, features) -> None:
    model = make("freedom", data, features, dropout=0.8)
    n_edges = model.edge_values.numel()
    model.pre_epoch()
    first = model.masked_adj.to_dense()
    model.pre_epoch()
    second = model.masked_adj.to_dense()
    assert (first > 0).sum() == 2 * int(n_edges * 0.2)  # both directions of the kept edges
    assert not torch.equal(first, second)


def test_errors_are_clear(data, features, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"unknown model 'nope'; choose one of \['bm3', 'bpr'"):
        build_model("nope", data)
    with pytest.raises(ValueError, match=r"model 'lightgcn': unknown config key 'n_layer'; valid keys: \["):
        build_model("lightgcn", data, {"n_layer": 3})
    with pytest.raises(ValueError, match="expand grids"):
        build_model("bpr", data, {"reg_weight": [1e-3, 1e-4]})
    with pytest.raises(ValueError, match="needs item features"):
        build_model("freedom", data)
    with pytest.raises(ValueError, match=r"feat_embed_dim \(16\) must equal embedding_size \(8\)"):
        make("freedom", data, features, feat_embed_dim=16)
    model = make("vbpr", data, features)
    model.save(tmp_path)
    other = Features(features.image + 1, features.text_views, features.view_names)
    with pytest.raises(ValueError, match="re-extracted features"):
        Recommender.load(tmp_path, data, other)
    with pytest.raises(ValueError, match="holds model 'vbpr'"):
        get_model_class("bpr").load(tmp_path, data, features)
