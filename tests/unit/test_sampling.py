"""Vectorised negative sampling: never a train item of the user, seeded, uniform enough."""

from __future__ import annotations

import numpy as np
import pytest

from cliper.errors import DataError
from cliper.sampling import NegativeSampler


def _train(seed=0, n_users=50, n_items=20, n=400):
    rng = np.random.default_rng(seed)
    pairs = np.unique(np.stack([rng.integers(0, n_users, n), rng.integers(0, n_items, n)], 1), axis=0)
    return pairs[:, 0], pairs[:, 1], n_items


def test_negatives_are_never_train_items():
    users, items, n_items = _train()
    sampler = NegativeSampler(n_items, users, items)
    neg = sampler.sample(np.repeat(users, 20), np.random.default_rng(1))
    assert neg.min() >= 0 and neg.max() < n_items
    train = set(zip(users.tolist(), items.tolist(), strict=True))
    assert not any((u, i) in train for u, i in zip(np.repeat(users, 20).tolist(), neg.tolist(), strict=True))
    assert sampler.contains(users, items).all()


def test_seeded_and_roughly_uniform():
    users, items, n_items = _train()
    sampler = NegativeSampler(n_items, users, items)
    a = sampler.sample(users, np.random.default_rng(7))
    b = sampler.sample(users, np.random.default_rng(7))
    assert np.array_equal(a, b)
    # A user with no train items gets every item about equally often.
    many = sampler.sample(np.full(20000, 10_000), np.random.default_rng(3))
    counts = np.bincount(many, minlength=n_items)
    assert counts.min() > 0.7 * counts.mean()


def test_user_with_every_item_is_rejected():
    with pytest.raises(DataError, match="all 3 items"):
        NegativeSampler(3, np.array([0, 0, 0, 1]), np.array([0, 1, 2, 0]))
