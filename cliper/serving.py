"""The served recommender: an MLflow pyfunc that returns the top-K items of a user.

:class:`TopKRecommender` wraps the trained recommender's final embeddings (score =
``user @ item.T``, equal to the model's ``full_sort_predict``), so serving needs numpy and
pandas only, never torch. Its artifacts (written by :func:`write_serving_artifacts`):

* ``embeddings.npz`` – ``user`` ``[U, d]`` and ``item`` ``[I, d]`` float32;
* ``catalog.npz`` – ``asins`` (item id -> ASIN) and ``users`` (user id -> raw user id);
* ``seen.npz`` – the train interactions (``x_label == 0``) as CSR ``indptr``/``indices``;
* ``popularity.npy`` – train interaction count per item (the unknown-user fallback).

Input: a table with ``user_id`` (string; the raw id of ``user_map.csv``, or, when no raw id
matches, the internal integer id ``0..U-1`` written as a string), optional ``k`` (int,
default ``default_k`` of the model config; ``1 <= k <= max_k``, else a per-row error) and
optional ``exclude_seen`` (bool, default true: drop the user's train items). Output: one row
per input row with ``user_id``, ``asins`` and ``scores`` (best first; train interaction
counts for the popularity fallback), ``source`` (``model`` | ``popularity`` | ``error``) and
``error`` (empty unless ``source == "error"``).
An unknown user gets the most popular train items when the model config (or the request
param) ``unknown_user`` is ``popularity`` (the default), or a per-row error when it is ``error``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema

from cliper.csr import build_csr, expand_rows
from cliper.io import write_npy, write_npz

logger = logging.getLogger(__name__)

EMBEDDINGS = "embeddings"
CATALOG = "catalog"
SEEN = "seen"
POPULARITY = "popularity"
ARTIFACT_FILES = {EMBEDDINGS: "embeddings.npz", CATALOG: "catalog.npz", SEEN: "seen.npz",
                  POPULARITY: "popularity.npy"}
UNKNOWN_USER_CHOICES = ("popularity", "error")
DEFAULT_CONFIG = {"default_k": 20, "max_k": 1000, "unknown_user": "popularity"}
TRAIN_LABEL = 0
OUTPUT_COLUMNS = ["user_id", "asins", "scores", "source", "error"]
SCORE_BATCH_ROWS = 1024  # request rows scored at once


# --------------------------------------------------------------------------- artifacts


def write_serving_artifacts(model_dir: Path, ingest_dir: Path, out_dir: Path) -> dict[str, str]:
    """Write the pyfunc's artifacts from the train outputs and the ingested tables.

    Args:
        model_dir: ``models/recommender`` (holds ``embeddings.npz``).
        ingest_dir: ``data/ingested`` (``items.parquet``, ``interactions.parquet``, ``user_map.csv``).
        out_dir: where to write the artifact files.

    Returns:
        Artifact name -> file path, as ``mlflow.pyfunc.log_model(artifacts=...)`` wants it.
    """
    emb = np.load(model_dir / "embeddings.npz")
    user_emb = np.asarray(emb["user"], dtype=np.float32)
    item_emb = np.asarray(emb["item"], dtype=np.float32)
    n_users, n_items = len(user_emb), len(item_emb)
    items = pd.read_parquet(ingest_dir / "items.parquet", columns=["item_id", "asin"]).sort_values("item_id")
    inter = pd.read_parquet(ingest_dir / "interactions.parquet", columns=["user_id", "item_id", "x_label"])
    user_map = pd.read_csv(ingest_dir / "user_map.csv", dtype={"user_raw": str}).sort_values("user_id")
    if len(items) != n_items or len(user_map) != n_users:
        raise ValueError(
            f"embeddings are [{n_users} users, {n_items} items] but {ingest_dir} has {len(user_map)} users "
            f"and {len(items)} items: retrain (dvc repro train) so model and data match"
        )
    train = inter[inter["x_label"] == TRAIN_LABEL]
    u, i = train["user_id"].to_numpy(np.int64), train["item_id"].to_numpy(np.int64)
    indptr, indices = build_csr(n_users, u, i)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / fname for name, fname in ARTIFACT_FILES.items()}
    write_npz(paths[EMBEDDINGS], user=user_emb, item=item_emb)
    write_npz(paths[CATALOG], asins=items["asin"].astype(str).to_numpy(dtype=str),
              users=user_map["user_raw"].astype(str).to_numpy(dtype=str))
    write_npz(paths[SEEN], indptr=indptr, indices=indices)
    write_npy(paths[POPULARITY], np.bincount(i, minlength=n_items).astype(np.int64))
    return {name: str(path) for name, path in paths.items()}


# --------------------------------------------------------------------------- ranking


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` columns per row of ``scores`` (descending; ties go to the lower item id).

    Args:
        scores: ``[B, I]`` float scores; excluded items hold ``-inf`` and sort last.
        k: how many items per row (clamped to ``I``).

    Returns:
        ``(items [B, k], scores [B, k])``.
    """
    k = min(k, scores.shape[1])
    # A stable sort on -score breaks ties by item id, so results are deterministic.
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


class TopKRecommender(mlflow.pyfunc.PythonModel):
    """Top-K recommendations from the recommender's embeddings (see the module docstring)."""

    def load_context(self, context: Any) -> None:
        """Load the artifacts and the model config (``default_k``, ``max_k``, ``unknown_user``)."""
        art = context.artifacts
        emb = np.load(art[EMBEDDINGS])
        self.user_emb, self.item_emb = emb["user"], emb["item"]
        cat = np.load(art[CATALOG])
        self.asins = cat["asins"]
        self.user_index = pd.Index(cat["users"])
        seen = np.load(art[SEEN])
        self.indptr, self.indices = seen["indptr"], seen["indices"]
        self.popularity = np.load(art[POPULARITY])
        self.popular = np.argsort(-self.popularity, kind="stable")
        self.config = {**DEFAULT_CONFIG, **(getattr(context, "model_config", None) or {})}

    def resolve_users(self, raw: pd.Series) -> np.ndarray:
        """Raw ids (or internal int ids as strings) -> internal ids; ``-1`` for unknown users."""
        raw = raw.astype(str).str.strip()
        ids = self.user_index.get_indexer(raw)
        as_int = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        fallback = (ids < 0) & np.isfinite(as_int) & (as_int == np.round(as_int))
        fallback &= (as_int >= 0) & (as_int < len(self.user_emb))
        ids[fallback] = as_int[fallback].astype(np.int64)
        return ids.astype(np.int64)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Rank items for each input row; see the module docstring for input and output columns."""
        cfg = {**self.config, **(params or {})}
        if cfg["unknown_user"] not in UNKNOWN_USER_CHOICES:
            raise ValueError(
                f"unknown_user must be one of {UNKNOWN_USER_CHOICES}, got {cfg['unknown_user']!r}"
            )
        df = pd.DataFrame(model_input)
        if "user_id" not in df.columns:
            raise ValueError("input needs a 'user_id' column (raw user id of user_map.csv, or internal id)")
        n = len(df)
        ks = _column(df, "k", int(cfg["default_k"]), n).astype(np.int64)
        exclude = _column(df, "exclude_seen", True, n).astype(bool)
        users = self.resolve_users(df["user_id"])
        known = users >= 0
        out = pd.DataFrame({"user_id": df["user_id"].astype(str).to_numpy(), "asins": [[] for _ in range(n)],
                            "scores": [[] for _ in range(n)], "source": "model", "error": ""})
        bad_k = (ks < 1) | (ks > int(cfg["max_k"]))
        out.loc[bad_k, ["source", "error"]] = ["error", f"k must be between 1 and {cfg['max_k']}"]
        self._rank_known(out, users, ks, exclude, known & ~bad_k)
        self._rank_unknown(out, ks, ~known & ~bad_k, cfg["unknown_user"])
        return out[OUTPUT_COLUMNS]

    def _rank_known(self, out: pd.DataFrame, users: np.ndarray, ks: np.ndarray, exclude: np.ndarray,
                    mask: np.ndarray) -> None:
        rows_all = np.flatnonzero(mask)
        for start in range(0, len(rows_all), SCORE_BATCH_ROWS):  # bounds the [rows, items] score matrix
            rows = rows_all[start : start + SCORE_BATCH_ROWS]
            scores = self.user_emb[users[rows]] @ self.item_emb.T
            sub = np.flatnonzero(exclude[rows])
            seen_pos, seen_items = expand_rows(self.indptr, self.indices, users[rows[sub]])
            scores[sub[seen_pos], seen_items] = -np.inf  # the user's train items
            items, vals = top_k(scores, int(ks[rows].max()))
            for pos, row in enumerate(rows):  # one list per request row (the output format)
                keep = np.isfinite(vals[pos, : ks[row]])
                out.at[row, "asins"] = self.asins[items[pos, : ks[row]][keep]].tolist()
                out.at[row, "scores"] = vals[pos, : ks[row]][keep].astype(float).tolist()

    def _rank_unknown(self, out: pd.DataFrame, ks: np.ndarray, mask: np.ndarray, policy: str) -> None:
        rows = np.flatnonzero(mask)
        if policy == "error":
            out.loc[rows, ["source", "error"]] = ["error", "unknown user: not in user_map.csv and not an "
                                                  "internal id 0..U-1 (model unknown_user=error)"]
            return
        for row in rows:
            top = self.popular[: ks[row]]
            out.at[row, "asins"] = self.asins[top].tolist()
            out.at[row, "scores"] = self.popularity[top].astype(float).tolist()  # train interaction counts
            out.at[row, "source"] = "popularity"


def _column(df: pd.DataFrame, name: str, default: Any, n: int) -> np.ndarray:
    if name not in df.columns:
        return np.full(n, default)
    return df[name].astype(object).where(df[name].notna(), default).to_numpy()


# --------------------------------------------------------------------------- signature


def input_example(users: list[str], k: int) -> pd.DataFrame:
    """A small request table for ``log_model(input_example=...)``."""
    return pd.DataFrame({"user_id": users, "k": [k] * len(users), "exclude_seen": [True] * len(users)})


def signature(config: dict[str, Any]) -> ModelSignature:
    """Input/output schema and the ``unknown_user`` request param (default from ``config``)."""
    inputs = Schema([ColSpec("string", "user_id"), ColSpec("long", "k", required=False),
                     ColSpec("boolean", "exclude_seen", required=False)])
    outputs = Schema([ColSpec("string", "user_id"), ColSpec(Array("string"), "asins"),
                      ColSpec(Array("double"), "scores"), ColSpec("string", "source"),
                      ColSpec("string", "error")])
    params = ParamSchema([ParamSpec("unknown_user", "string", config["unknown_user"])])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)
