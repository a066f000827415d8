"""MMRec's seeded per-user train/valid/test split (the ``x_label`` column).

Rule (MMRec; see ``data/amazon/README.md``): per user, sort the user's items by item id and
shuffle them with one ``rng.permutation(n)`` call, users in ascending id order, all from one
``numpy.random.default_rng(seed)``. The first ``n_train`` shuffled items are train (0), the
next ``n_valid`` valid (1), the rest test (2), where

* ``n < 10``: ``n_train = n - 2``, ``n_valid = 1``, ``n_test = 1``;
* ``n >= 10``: ``vt = int(0.2 * n)``, ``n_valid = vt // 2``, ``n_test = vt - n_valid``.

Users with fewer than :data:`MIN_SPLIT_ITEMS` items (impossible after a k-core with k >= 3)
keep every item in train. The counts are computed vectorised; the RNG stream needs one
``permutation`` call per user in order, the only per-user loop, because it defines the split.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

TRAIN, VALID, TEST = 0, 1, 2
SMALL_USER_ITEMS = 10  # below this: n-2 / 1 / 1
HOLDOUT_SHARE = 0.2  # valid + test share for users with >= SMALL_USER_ITEMS items
MIN_SPLIT_ITEMS = 3  # fewer items than this: all train


def split_counts(n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-user ``(n_train, n_valid, n_test)`` for item counts ``n`` (int array)."""
    n = np.asarray(n, dtype=np.int64)
    vt = (HOLDOUT_SHARE * n).astype(np.int64)  # same float op as MMRec's int(0.2 * n)
    n_valid = np.where(n < SMALL_USER_ITEMS, 1, vt // 2)
    n_test = np.where(n < SMALL_USER_ITEMS, 1, vt - vt // 2)
    tiny = n < MIN_SPLIT_ITEMS
    n_valid = np.where(tiny, 0, n_valid)
    n_test = np.where(tiny, 0, n_test)
    return n - n_valid - n_test, n_valid, n_test


def split_labels(user_ids: np.ndarray, item_ids: np.ndarray, seed: int) -> np.ndarray:
    """``x_label`` (int8) for interactions ``(user_ids, item_ids)``, aligned with the input order.

    Args:
        user_ids: int array of user ids (any order; pairs must be unique).
        item_ids: int array of item ids, same length.
        seed: seed of ``numpy.random.default_rng``.
    """
    user_ids = np.asarray(user_ids)
    item_ids = np.asarray(item_ids)
    order = np.lexsort((item_ids, user_ids))  # by user, then item
    users_sorted = user_ids[order]
    _, counts = np.unique(users_sorted, return_counts=True)
    tiny = int((counts < MIN_SPLIT_ITEMS).sum())
    if tiny:
        logger.warning(
            "%d users have fewer than %d items; all their items go to train", tiny, MIN_SPLIT_ITEMS
        )
    rng = np.random.default_rng(seed)
    # rank[j] = position of the j-th (item-sorted) item in the user's shuffled order.
    ranks = (
        np.concatenate([np.argsort(rng.permutation(int(n))) for n in counts]) if len(counts) else np.empty(0)
    )
    n_train, n_valid, _ = split_counts(counts)
    train_end = np.repeat(n_train, counts)
    valid_end = np.repeat(n_train + n_valid, counts)
    labels_sorted = np.where(ranks < train_end, TRAIN, np.where(ranks < valid_end, VALID, TEST)).astype(
        np.int8
    )
    labels = np.empty(len(order), dtype=np.int8)
    labels[order] = labels_sorted
    return labels


def split_frame(df: pd.DataFrame, seed: int) -> pd.Series:
    """``x_label`` Series for a frame with ``user_id`` and ``item_id`` columns."""
    return pd.Series(
        split_labels(df["user_id"].to_numpy(), df["item_id"].to_numpy(), seed), index=df.index, name="x_label"
    )
