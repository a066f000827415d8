"""Full-ranking top-K evaluation under the MMRec protocol (spec section 5).

What is ranked and what is masked follows MMRec (``src/utils/dataloader.py``
``EvalDataLoader``, ``src/common/trainer.py`` ``Trainer.evaluate``): every user that has at
least one interaction in the evaluated split (valid or test) is scored against **all** items;
the user's **train** items are masked out (score ``-inf``; MMRec writes ``-1e10``) for both the
valid and the test evaluation. Valid items are *not* masked when evaluating test (MMRec builds
both loaders with ``additional_dataset=train_dataset``). Users without items in the evaluated
split are skipped.

Metrics (MMRec ``src/utils/metrics.py``), per user with ``hits[k]`` = the item at rank ``k`` is
one of the user's ``n`` target items, averaged over users:

* ``recall@K = Σ_{k≤K} hits[k] / n``
* ``precision@K = Σ_{k≤K} hits[k] / K``
* ``ndcg@K = Σ_{k≤K} hits[k]/log2(k+1)  /  Σ_{k≤min(n,K)} 1/log2(k+1)``
* ``map@K = Σ_{k≤K} precision@k · hits[k] / min(n, K)``

Unlike MMRec, values are not rounded to 4 decimals.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cliper.csr import build_csr, expand_rows
from cliper.errors import DataError

logger = logging.getLogger(__name__)

METRICS: tuple[str, ...] = ("recall", "ndcg", "precision", "map")
TRAIN, VALID, TEST = 0, 1, 2
SPLIT_NAMES = {TRAIN: "train", VALID: "valid", TEST: "test"}
REQUIRED_COLUMNS = ("user_id", "item_id", "x_label")

ScoreFn = Callable[[torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------- splits


@dataclass(frozen=True)
class Splits:
    """The three splits of ``interactions.parquet`` as int64 id arrays."""

    n_users: int
    n_items: int
    users: dict[str, np.ndarray]
    items: dict[str, np.ndarray]

    @classmethod
    def from_frame(cls, df: pd.DataFrame, source: str = "<frame>") -> Splits:
        """Check and split an interactions frame (``user_id``, ``item_id``, ``x_label``).

        Raises:
            DataError: missing columns, negative ids, unknown labels or an empty split.
        """
        missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
        if missing:
            raise DataError(f"{source}: missing column(s) {missing}; expected {list(REQUIRED_COLUMNS)}")
        users = df["user_id"].to_numpy(dtype=np.int64)
        items = df["item_id"].to_numpy(dtype=np.int64)
        labels = df["x_label"].to_numpy(dtype=np.int64)
        if len(users) == 0:
            raise DataError(f"{source}: no interactions")
        if users.min() < 0 or items.min() < 0:
            raise DataError(f"{source}: user_id and item_id must be >= 0 (0-based ids)")
        bad = ~np.isin(labels, list(SPLIT_NAMES))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{source}: row {row}: x_label {labels[row]}; expected 0 (train), 1 (valid) or 2 (test)"
            )
        out_u, out_i = {}, {}
        for label, name in SPLIT_NAMES.items():
            sel = labels == label
            if not sel.any():
                raise DataError(f"{source}: the {name} split (x_label={label}) is empty")
            order = np.lexsort((items[sel], users[sel]))  # canonical order: results ignore row order
            out_u[name], out_i[name] = users[sel][order], items[sel][order]
        return cls(int(users.max()) + 1, int(items.max()) + 1, out_u, out_i)

    @classmethod
    def read(cls, path: str | Path) -> Splits:
        """Read ``interactions.parquet`` (see docs/architecture.md)."""
        path = Path(path)
        if not path.exists():
            raise DataError(f"{path}: interactions file not found (run the ingest stage first)")
        return cls.from_frame(pd.read_parquet(path, columns=list(REQUIRED_COLUMNS)), source=str(path))

    def target(self, split: str, item_filter: np.ndarray | None = None) -> EvalTarget:
        """The :class:`EvalTarget` of ``split`` ("valid" or "test"), train items masked.

        Args:
            split: which split's items are the targets.
            item_filter: optional bool ``[n_items]``; only target items where it is True count
                (a slice: ranking is still over all items).
        """
        users, items = self.users[split], self.items[split]
        if item_filter is not None:
            keep = item_filter[items]
            users, items = users[keep], items[keep]
        return EvalTarget.build(
            self.n_users, self.n_items, self.users["train"], self.items["train"], users, items
        )


@dataclass(frozen=True)
class EvalTarget:
    """Evaluated users, their target items (CSR) and their train items to mask (CSR over all users)."""

    n_items: int
    users: np.ndarray
    target_indptr: np.ndarray
    target_items: np.ndarray
    mask_indptr: np.ndarray
    mask_items: np.ndarray

    @classmethod
    def build(
        cls,
        n_users: int,
        n_items: int,
        train_users: np.ndarray,
        train_items: np.ndarray,
        eval_users: np.ndarray,
        eval_items: np.ndarray,
    ) -> EvalTarget:
        """Group target pairs by user (users without targets are dropped) and index the train mask."""
        mask_indptr, mask_items = build_csr(
            n_users, np.asarray(train_users, np.int64), np.asarray(train_items, np.int64)
        )
        eval_users = np.asarray(eval_users, np.int64)
        users, inverse = np.unique(eval_users, return_inverse=True)
        t_indptr, t_items = build_csr(len(users), inverse.astype(np.int64), np.asarray(eval_items, np.int64))
        return cls(int(n_items), users, t_indptr, t_items, mask_indptr, mask_items)

    @property
    def n_users(self) -> int:
        """Number of evaluated users (those with at least one target)."""
        return len(self.users)

    @property
    def pos_len(self) -> np.ndarray:
        """Number of targets per evaluated user."""
        return np.diff(self.target_indptr)


# --------------------------------------------------------------------------- metrics


def per_user_metrics(hits: np.ndarray, pos_len: np.ndarray) -> dict[str, np.ndarray]:
    """MMRec's per-user Recall/NDCG/Precision/MAP at every rank: ``{name: [users, max_k]}`` float64.

    Args:
        hits: bool, ``hits[u, r]`` = the item at rank ``r + 1`` is a target of user ``u``.
        pos_len: number of targets per user (> 0).
    """
    hits = np.asarray(hits, dtype=np.float64)
    pos_len = np.asarray(pos_len, dtype=np.float64)[:, None]
    if hits.shape[0] == 0:
        raise ValueError("no users to evaluate (every user has an empty target list)")
    ranks = np.arange(1, hits.shape[1] + 1, dtype=np.float64)
    cum = hits.cumsum(axis=1)
    discount = 1.0 / np.log2(ranks + 1.0)
    ideal = np.minimum(pos_len, ranks).astype(np.int64)  # min(n, k) per user and rank
    idcg = np.cumsum(discount)[ideal - 1]
    precision = cum / ranks
    return {
        "recall": cum / pos_len,
        "ndcg": np.cumsum(hits * discount, axis=1) / idcg,
        "precision": precision,
        "map": np.cumsum(precision * hits, axis=1) / ideal,
    }


def metrics_from_hits(hits: np.ndarray, pos_len: np.ndarray, topk: Sequence[int]) -> dict[str, float]:
    """MMRec's Recall/NDCG/Precision/MAP at each K (the mean over users of :func:`per_user_metrics`).

    Returns:
        ``{"recall@20": ..., "ndcg@20": ..., "precision@20": ..., "map@20": ..., ...}``.
    """
    return mean_metrics(per_user_metrics(hits, pos_len), topk)


def mean_metrics(per_user: dict[str, np.ndarray], topk: Sequence[int]) -> dict[str, float]:
    """:func:`metrics_from_hits` from :func:`per_user_metrics` already computed (a caller that also
    needs the per-user values, e.g. for a paired interval, computes them once)."""
    max_k = per_user["recall"].shape[1]
    out: dict[str, float] = {}
    for k in topk:
        if not 1 <= k <= max_k:
            raise ValueError(f"top-k cut-off {k} outside 1..{max_k}")
        for name in METRICS:
            out[f"{name}@{k}"] = float(per_user[name][:, k - 1].mean())
    return out


@torch.no_grad()
def rank_hits(
    score_fn: ScoreFn,
    target: EvalTarget,
    max_k: int,
    batch_users: int,
    device: torch.device | str = "cpu",
    owns_scores: bool = False,
) -> np.ndarray:
    """Top-``max_k`` hit matrix ``[target.n_users, max_k]`` by full ranking, train items masked.

    Memory: one ``[batch_users, n_items]`` score block at a time (no copy of it with
    ``owns_scores``); hits are looked up per top-``max_k`` entry, not in a dense truth matrix.

    Args:
        score_fn: ``users (LongTensor) -> scores [len(users), n_items]`` (e.g. ``model.full_sort_predict``).
        target: the evaluated users, targets and mask.
        max_k: largest cut-off.
        batch_users: users scored per call.
        device: where the user ids are sent.
        owns_scores: ``score_fn`` returns a fresh tensor, so masking may write into it.
    """
    if target.n_users == 0:
        raise ValueError("nothing to evaluate: no user has a target item in this split/slice")
    if max_k > target.n_items:
        raise DataError(
            f"top-k {max_k} exceeds the number of items ({target.n_items}); lower evaluate.topk and "
            "evaluate.valid_metric to at most that"
        )
    out = np.zeros((target.n_users, max_k), dtype=bool)
    for start in range(0, target.n_users, batch_users):
        stop = min(start + batch_users, target.n_users)
        users = target.users[start:stop]
        scores = score_fn(torch.as_tensor(users, device=device)).float()
        if not owns_scores:
            scores = scores.clone()
        rows, cols = expand_rows(target.mask_indptr, target.mask_items, users)
        dev = scores.device
        scores[torch.as_tensor(rows, device=dev), torch.as_tensor(cols, device=dev)] = -torch.inf
        top = torch.topk(scores, max_k, dim=1).indices
        del scores
        t_rows, t_cols = expand_rows(target.target_indptr, target.target_items, np.arange(start, stop))
        truth = torch.as_tensor(t_rows * target.n_items + t_cols, device=dev)  # (row, item) keys
        keys = torch.arange(stop - start, device=dev)[:, None] * target.n_items + top
        out[start:stop] = torch.isin(keys, truth).cpu().numpy()
    return out


def evaluate(
    score_fn: ScoreFn,
    target: EvalTarget,
    topk: Sequence[int] = (5, 10, 20, 50),
    batch_users: int = 4096,
    device: torch.device | str = "cpu",
    owns_scores: bool = False,
) -> dict[str, float]:
    """Full-ranking metrics of ``score_fn`` on ``target`` (see the module docstring)."""
    hits = rank_hits(score_fn, target, max(topk), batch_users, device, owns_scores)
    return metrics_from_hits(hits, target.pos_len, topk)


def model_hits(model: torch.nn.Module, target: EvalTarget, max_k: int, batch_users: int) -> np.ndarray:
    """:func:`rank_hits` of ``model.full_sort_predict`` in eval mode (restores the mode after)."""
    was_training = model.training
    model.eval()
    try:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        # full_sort_predict returns a fresh product (Recommender.full_sort_predict), masked in place
        return rank_hits(model.full_sort_predict, target, max_k, batch_users, device, owns_scores=True)
    finally:
        model.train(was_training)


def evaluate_model(
    model: torch.nn.Module, target: EvalTarget, topk: Sequence[int], batch_users: int
) -> dict[str, float]:
    """:func:`evaluate` of ``model`` (:func:`model_hits`)."""
    return metrics_from_hits(model_hits(model, target, max(topk), batch_users), target.pos_len, topk)
