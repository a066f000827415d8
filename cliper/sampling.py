"""Uniform negative sampling for BPR-style training, vectorised.

MMRec (``TrainDataLoader._sample_neg_ids``) draws, per positive pair, one item uniformly at
random and redraws while it is in the user's train set, in a Python loop. Here the train pairs
are kept as a sorted array of keys ``user * n_items + item``; a whole epoch of negatives is drawn
at once, collisions are found with ``np.searchsorted`` and only the colliding draws are redrawn.
The draws come from a caller-supplied :class:`numpy.random.Generator`, so an epoch is
reproducible from the generator's state (which the trainer checkpoints).
"""

from __future__ import annotations

import numpy as np

from cliper.errors import DataError

MAX_ROUNDS = 1000  # redraw rounds before giving up (each round shrinks the collisions geometrically)


class NegativeSampler:
    """One uniform negative per positive, never an item of the user's train set.

    Args:
        n_items: number of items (negatives are drawn from ``0..n_items-1``).
        train_users: user id of every train pair.
        train_items: item id of every train pair.

    Raises:
        DataError: a user has interacted with every item (no negative exists).
    """

    def __init__(self, n_items: int, train_users: np.ndarray, train_items: np.ndarray) -> None:
        self.n_items = int(n_items)
        users = np.asarray(train_users, dtype=np.int64)
        items = np.asarray(train_items, dtype=np.int64)
        self._keys = np.unique(users * self.n_items + items)
        per_user = np.bincount(self._keys // self.n_items)
        if per_user.size and per_user.max() >= self.n_items:
            user = int(np.argmax(per_user))
            raise DataError(
                f"user {user} has interacted with all {self.n_items} items; no negative can be sampled"
            )

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Bool mask: is (user, item) a train pair?"""
        keys = np.asarray(users, dtype=np.int64) * self.n_items + np.asarray(items, dtype=np.int64)
        pos = np.searchsorted(self._keys, keys)
        pos[pos == len(self._keys)] = 0
        return self._keys[pos] == keys if len(self._keys) else np.zeros(len(keys), dtype=bool)

    def sample(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One negative item per entry of ``users`` (int64 array of the same length)."""
        users = np.asarray(users, dtype=np.int64)
        negatives = rng.integers(0, self.n_items, size=len(users), dtype=np.int64)
        todo = np.flatnonzero(self.contains(users, negatives))
        for _ in range(MAX_ROUNDS):
            if todo.size == 0:
                return negatives
            negatives[todo] = rng.integers(0, self.n_items, size=todo.size, dtype=np.int64)
            todo = todo[self.contains(users[todo], negatives[todo])]
        raise RuntimeError(f"negative sampling did not converge after {MAX_ROUNDS} rounds")
