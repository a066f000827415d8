"""Full-ranking metrics: MMRec definitions against hand-computed cases, and train-item masking."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from cliper.errors import DataError
from cliper.evaluate import EvalTarget, Splits, evaluate, metrics_from_hits


def test_metrics_hand_computed_single_user():
    # 3 targets; hits at ranks 1 and 3 of the top 4.
    hits = np.array([[True, False, True, False]])
    m = metrics_from_hits(hits, np.array([3]), topk=[1, 2, 3, 4])
    assert m["recall@1"] == pytest.approx(1 / 3)
    assert m["recall@3"] == pytest.approx(2 / 3)
    assert m["precision@2"] == pytest.approx(1 / 2)
    assert m["precision@4"] == pytest.approx(2 / 4)
    dcg3 = 1 + 1 / math.log2(4)
    idcg3 = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["ndcg@3"] == pytest.approx(dcg3 / idcg3)
    assert m["ndcg@4"] == pytest.approx(dcg3 / idcg3)  # idcg over min(|test|=3, k=4)
    # MAP: (P@1*1 + P@3*1) / min(3, k)
    assert m["map@2"] == pytest.approx(1.0 / 2)
    assert m["map@4"] == pytest.approx((1 + 2 / 3) / 3)


def test_metrics_average_over_users_and_short_lists():
    hits = np.array([[False, True], [True, False]])
    m = metrics_from_hits(hits, np.array([1, 5]), topk=[1, 2])
    assert m["recall@2"] == pytest.approx((1 / 1 + 1 / 5) / 2)
    # user 0: one target found at rank 2: ndcg = (1/log2 3) / 1
    assert m["ndcg@2"] == pytest.approx(((1 / math.log2(3)) / 1 + 1 / (1 + 1 / math.log2(3))) / 2)
    assert m["map@1"] == pytest.approx((0 + 1) / 2)


def _target(train, evalp, n_users=3, n_items=6):
    tu, ti = (np.array(x, dtype=np.int64) for x in zip(*train, strict=True))
    eu, ei = (np.array(x, dtype=np.int64) for x in zip(*evalp, strict=True))
    return EvalTarget.build(n_users, n_items, tu, ti, eu, ei)


def test_train_items_are_masked_and_users_without_targets_skipped():
    # Scores prefer low item ids; user 0 trained on items 0 and 1, so its ranking starts at item 2.
    scores = torch.tensor([[6.0, 5, 4, 3, 2, 1]] * 3)
    target = _target(train=[(0, 0), (0, 1), (1, 5), (2, 0)], evalp=[(0, 2), (1, 0)])
    assert list(target.users) == [0, 1]  # user 2 has no target: skipped
    m = evaluate(lambda u: scores[u], target, topk=[1], batch_users=1)
    assert m["recall@1"] == pytest.approx(1.0)  # both users hit at rank 1 thanks to the mask
    unmasked = _target(train=[(1, 5), (2, 0), (2, 1)], evalp=[(0, 2), (1, 0)])
    m2 = evaluate(lambda u: scores[u], unmasked, topk=[1], batch_users=2)
    assert m2["recall@1"] == pytest.approx(0.5)


def test_batching_does_not_change_results():
    rng = np.random.default_rng(0)
    n_users, n_items = 40, 30
    tu, ti = rng.integers(0, n_users, 200), rng.integers(0, n_items, 200)
    eu, ei = rng.integers(0, n_users, 60), rng.integers(0, n_items, 60)
    target = EvalTarget.build(n_users, n_items, tu, ti, eu, ei)
    scores = torch.as_tensor(rng.normal(size=(n_users, n_items)), dtype=torch.float32)
    a = evaluate(lambda u: scores[u], target, topk=[5, 10], batch_users=7)
    b = evaluate(lambda u: scores[u], target, topk=[5, 10], batch_users=1000)
    assert a == b


def test_slice_filter_keeps_only_selected_targets():
    df = pd.DataFrame(
        {"user_id": [0, 0, 0, 1, 1, 1, 0], "item_id": [0, 1, 2, 1, 2, 3, 3], "x_label": [0, 1, 2, 0, 1, 2, 2]}
    )
    splits = Splits.from_frame(df)
    sl = splits.target("test", item_filter=np.array([False, False, True, False]))
    assert list(sl.users) == [0] and list(sl.target_items) == [2]


def test_empty_valid_split_is_a_clear_error():
    df = pd.DataFrame({"user_id": [0, 0], "item_id": [0, 1], "x_label": [0, 2]})
    with pytest.raises(DataError, match="valid split"):
        Splits.from_frame(df, source="interactions.parquet")


def _reference(hits: np.ndarray, pos_len: np.ndarray, k: int) -> dict[str, float]:
    """Per-user loops written straight from MMRec's metric definitions (slow, obvious)."""
    out = {"recall": [], "ndcg": [], "precision": [], "map": []}
    for row, n in zip(hits, pos_len, strict=True):
        top = row[:k]
        found = top.sum()
        out["recall"].append(found / n)
        out["precision"].append(found / k)
        dcg = sum(1 / math.log2(r + 2) for r in range(k) if top[r])
        idcg = sum(1 / math.log2(r + 2) for r in range(min(n, k)))
        out["ndcg"].append(dcg / idcg)
        ap = sum(top[: r + 1].sum() / (r + 1) for r in range(k) if top[r])
        out["map"].append(ap / min(n, k))
    return {name: float(np.mean(v)) for name, v in out.items()}


def test_vectorised_metrics_match_a_loop_reference():
    rng = np.random.default_rng(4)
    hits = rng.random((200, 50)) < 0.05
    pos_len = rng.integers(1, 60, size=200)
    got = metrics_from_hits(hits, pos_len, topk=[5, 10, 20, 50])
    for k in (5, 10, 20, 50):
        ref = _reference(hits, pos_len, k)
        for name, value in ref.items():
            assert got[f"{name}@{k}"] == pytest.approx(value, rel=1e-12), (name, k)
