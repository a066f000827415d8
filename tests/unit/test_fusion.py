"""Fusion maths (spec section 3): weights, temperature, image consistency, widths, learning."""

from __future__ import annotations

import pytest
import torch

from cliper.config import FusionConfig
from cliper.fusion import build_fusion, build_fusion_from_spec, frozen_text_features, list_fusions

N_VIEWS, N_ITEMS, DIM = 4, 30, 16


@pytest.fixture
def views_image() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(N_VIEWS, N_ITEMS, DIM, generator=gen), torch.randn(N_ITEMS, DIM, generator=gen)


def fusion(name: str, **kwargs):  # noqa: ANN201 - a Fusion
    return build_fusion(FusionConfig(name=name, **kwargs), N_VIEWS, DIM)


def test_registry_lists_all_and_rejects_unknown() -> None:
    assert set(list_fusions()) == {"attention", "self_attention", "mean", "sum", "concat", "mlp"}
    with pytest.raises(ValueError, match=r"unknown fusion 'nope'; choose one of \['attention'"):
        fusion("nope")
    with pytest.raises(ValueError, match="temperature"):
        fusion("attention", temperature=0.0)


@pytest.mark.parametrize("name", ["attention", "self_attention", "mean"])
def test_weights_are_a_distribution_over_views(name: str, views_image) -> None:
    t, w = fusion(name)(*views_image)
    assert t.shape == (N_ITEMS, DIM) and w.shape == (N_ITEMS, N_VIEWS)
    assert torch.all(w >= 0)
    torch.testing.assert_close(w.sum(-1), torch.ones(N_ITEMS))


def test_default_attention_is_the_spec_formula_over_raw_views(views_image) -> None:
    """Spec section 3: cosine weights, weighted sum of the raw (unnormalised) view embeddings."""
    views, image = views_image
    views = views * torch.tensor([0.5, 1.0, 2.0, 4.0]).view(-1, 1, 1)  # unequal view norms
    t, w = fusion("attention", temperature=0.2)(views, image)
    vn, im = torch.nn.functional.normalize(views, dim=-1), torch.nn.functional.normalize(image, dim=-1)
    expected_w = torch.softmax((vn * im).sum(-1).T / 0.2, dim=-1)
    torch.testing.assert_close(w, expected_w)
    torch.testing.assert_close(t, (expected_w.T.unsqueeze(-1) * views).sum(0))


def test_normalize_option_sums_unit_views(views_image) -> None:
    views, image = views_image
    views = views * torch.tensor([0.5, 1.0, 2.0, 4.0]).view(-1, 1, 1)
    t, w = fusion("attention", temperature=0.2, normalize=True)(views, image)
    vn = torch.nn.functional.normalize(views, dim=-1)
    torch.testing.assert_close(w, fusion("attention", temperature=0.2)(views, image)[1])
    torch.testing.assert_close(t, (w.T.unsqueeze(-1) * vn).sum(0))
    assert not torch.allclose(t, fusion("attention", temperature=0.2)(views, image)[0])


def test_lower_temperature_sharpens(views_image) -> None:
    def entropy(w: torch.Tensor) -> torch.Tensor:
        return -(w * w.log()).sum(-1)

    w_hot = fusion("attention", temperature=1.0)(*views_image)[1]
    w_cold = fusion("attention", temperature=0.05)(*views_image)[1]
    assert torch.all(entropy(w_cold) < entropy(w_hot))
    assert torch.all(w_cold.max(-1).values > w_hot.max(-1).values)


def test_attention_favours_the_image_consistent_view(views_image) -> None:
    views, image = views_image
    views = views.clone()
    views[2] = image + 0.1 * torch.randn_like(image)  # view 2 describes what the image shows
    t, w = fusion("attention")(views, image)
    assert torch.all(w.argmax(-1) == 2)
    assert w[:, 2].min() > 0.5
    cos = torch.nn.functional.cosine_similarity
    mean_t = fusion("mean")(views, image)[0]
    assert cos(t, image).mean() > cos(mean_t, image).mean()


def test_normalize_makes_attention_scale_invariant(views_image) -> None:
    views, image = views_image
    scaled = views * torch.linspace(0.5, 3.0, N_VIEWS).view(-1, 1, 1)
    f = fusion("attention", normalize=True)
    torch.testing.assert_close(f(views, image)[0], f(scaled, image * 7)[0])
    raw = fusion("attention", normalize=False)
    assert not torch.allclose(raw(views, image)[0], raw(scaled, image)[0])


def test_mean_sum_concat(views_image) -> None:
    views, image = views_image
    f = fusion("mean", normalize=False)
    t, w = f(views, image)
    torch.testing.assert_close(t, views[:3].mean(0))
    assert torch.all(w[:, 3:] == 0)
    torch.testing.assert_close(fusion("sum", normalize=False)(views, image)[0], views.sum(0))
    concat = fusion("concat", normalize=False)
    t, w = concat(views, image)
    assert concat.out_dim == N_VIEWS * DIM and t.shape == (N_ITEMS, N_VIEWS * DIM) and w is None
    torch.testing.assert_close(t[:, DIM : 2 * DIM], views[1])


@pytest.mark.parametrize("name", ["attention", "mean", "sum", "concat"])
def test_parameter_free_fusions_have_no_parameters(name: str) -> None:
    f = fusion(name)
    assert not f.learnable and not list(f.parameters())


@pytest.mark.parametrize("name", ["self_attention", "mlp"])
def test_learnable_fusions_get_gradients_and_learn(name: str, views_image) -> None:
    views, image = views_image
    torch.manual_seed(0)
    f = fusion(name)
    assert f.learnable and f.out_dim == DIM
    target = torch.nn.functional.normalize(views[1] - views[0], dim=-1)  # not reachable by pooling alone
    before = [p.detach().clone() for p in f.parameters()]
    opt = torch.optim.Adam(f.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = ((f(views, image)[0] - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(p.grad is not None for p in f.parameters())
    assert losses[-1] < 0.5 * losses[0]
    assert any(not torch.equal(b, p) for b, p in zip(before, f.parameters(), strict=True))


@pytest.mark.parametrize("name", ["self_attention", "mlp"])
def test_learnable_fusions_leave_the_torch_stream_where_it_was(name: str) -> None:
    """A learnable fusion's initial weights come from a stream of their own: building one does not
    advance the global stream (the backbone built next starts where it would without the fusion),
    and the same seed still gives the same weights."""
    torch.manual_seed(5)
    state = torch.get_rng_state()
    first = [p.detach().clone() for p in fusion(name).parameters()]
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(5)
    again = list(fusion(name).parameters())
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    torch.manual_seed(6)
    assert not torch.equal(first[0], next(fusion(name).parameters()))


def test_self_attention_computes_multihead_attention_pooling(views_image) -> None:
    """``fuse`` projects the query into view space instead of projecting every view: the output,
    the weights and every gradient must still be ``nn.MultiheadAttention``'s (image query, views as
    keys and values) plus the head-averaged pooling of the views."""
    views, image = (x.double() for x in views_image)
    torch.manual_seed(1)
    f = fusion("self_attention").double()
    with torch.no_grad():  # a trained state: non-zero output projection and biases
        for p in f.parameters():
            p.normal_(0.0, 0.3)
    tokens = views.transpose(0, 1)
    out, weights = f.attn(image.unsqueeze(1), tokens, tokens, need_weights=True, average_attn_weights=True)
    weights = weights.squeeze(1)
    expected = torch.einsum("iv,ivd->id", weights, tokens) + out.squeeze(1)
    grads = torch.autograd.grad((expected * image).sum(), list(f.parameters()))
    fused, fused_weights = f(views, image)
    torch.testing.assert_close(fused_weights, weights, rtol=0, atol=1e-12)
    torch.testing.assert_close(fused, expected, rtol=0, atol=1e-12)
    got = torch.autograd.grad((fused * image).sum(), list(f.parameters()))
    for name, g, e in zip([n for n, _ in f.named_parameters()], got, grads, strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-10, msg=name)


def test_cache_keys_carry_a_fusions_revision_only_once_revised() -> None:
    from cliper.config import to_dict
    from cliper.fusion import SelfAttentionFusion, fusion_cache_key

    attention = FusionConfig(name="attention")
    assert fusion_cache_key(attention) == to_dict(attention)  # checkpoints of unrevised fusions stay valid
    revised = FusionConfig(name="self_attention")
    assert fusion_cache_key(revised) == {**to_dict(revised), "revision": SelfAttentionFusion.revision}
    assert SelfAttentionFusion.revision >= 1


def test_self_attention_rejects_bad_head_count() -> None:
    with pytest.raises(ValueError, match="not divisible by n_heads 5"):
        fusion("self_attention", n_heads=5)


def test_spec_round_trip_and_frozen_features(views_image) -> None:
    views, image = views_image
    f = fusion("self_attention", temperature=0.1)
    g = build_fusion_from_spec(f.spec)
    assert type(g) is type(f) and g.cfg == f.cfg
    # A learnable fusion's frozen text matrix is the parameter-free attention fusion of the views.
    expected = fusion("attention", temperature=0.1)(views, image)[0]
    torch.testing.assert_close(frozen_text_features(f, views, image), expected)
    concat = fusion("concat")
    torch.testing.assert_close(frozen_text_features(concat, views, image), concat(views, image)[0])
