"""MMRec per-user split: the count rule and equality with a naive per-user reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cliper.data.split import split_counts, split_frame, split_labels


def reference_counts(n: int) -> tuple[int, int, int]:
    if n < 10:
        return n - 2, 1, 1
    vt = int(0.2 * n)
    return n - vt, vt // 2, vt - vt // 2


def naive_split(df: pd.DataFrame, seed: int) -> pd.Series:
    """Reference: users ascending, items sorted, one rng.permutation(n) per user."""
    rng = np.random.default_rng(seed)
    labels = pd.Series(-1, index=df.index, dtype=np.int64)
    for _, group in sorted(df.groupby("user_id"), key=lambda kv: kv[0]):
        group = group.sort_values("item_id")
        shuffled = group.index.to_numpy()[rng.permutation(len(group))]
        n_train, n_valid, _ = reference_counts(len(group))
        labels[shuffled[:n_train]] = 0
        labels[shuffled[n_train : n_train + n_valid]] = 1
        labels[shuffled[n_train + n_valid :]] = 2
    return labels


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (3, (1, 1, 1)),
        (5, (3, 1, 1)),
        (9, (7, 1, 1)),
        (10, (8, 1, 1)),
        (14, (12, 1, 1)),
        (15, (12, 1, 2)),
        (23, (19, 2, 2)),
        (35, (28, 3, 4)),
        (100, (80, 10, 10)),
    ],
)
def test_split_counts_rule(n, expected):
    train, valid, test = split_counts(np.array([n]))
    assert (int(train[0]), int(valid[0]), int(test[0])) == expected == reference_counts(n)


def test_split_counts_vectorised_matches_scalar_rule():
    n = np.arange(3, 400)
    train, valid, test = split_counts(n)
    assert list(zip(train, valid, test, strict=True)) == [reference_counts(int(v)) for v in n]


def test_split_counts_tiny_users_stay_in_train():
    train, valid, test = split_counts(np.array([1, 2]))
    assert train.tolist() == [1, 2] and valid.tolist() == [0, 0] and test.tolist() == [0, 0]


def _random_interactions(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for u in rng.permutation(60):  # users not in order, and some ids absent
        if u % 7 == 3:
            continue
        n = int(rng.integers(3, 40))
        rows += [(int(u), int(i)) for i in rng.choice(200, size=n, replace=False)]
    df = pd.DataFrame(rows, columns=["user_id", "item_id"])
    return df.sample(frac=1.0, random_state=1).reset_index(drop=True)  # shuffled row order


def test_split_equals_naive_reference():
    df = _random_interactions(0)
    for seed in (0, 20240501):
        assert (split_frame(df, seed).to_numpy() == naive_split(df, seed).to_numpy()).all()


def test_split_counts_per_user_and_seed_dependence():
    df = _random_interactions(1)
    labels = split_labels(df["user_id"].to_numpy(), df["item_id"].to_numpy(), seed=5)
    got = pd.crosstab(df["user_id"], labels)
    n = got.sum(axis=1).to_numpy()
    train, valid, test = split_counts(n)
    assert (got[0].to_numpy() == train).all() and (got[1].to_numpy() == valid).all()
    assert (got[2].to_numpy() == test).all()
    assert (labels == split_labels(df["user_id"].to_numpy(), df["item_id"].to_numpy(), seed=5)).all()
    assert (labels != split_labels(df["user_id"].to_numpy(), df["item_id"].to_numpy(), seed=6)).any()
