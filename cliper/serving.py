"""The served recommender: an MLflow pyfunc that returns the top-K items of a user.

:class:`TopKRecommender` wraps the trained recommender's final embeddings (score =
``user @ item.T``, equal to the model's ``full_sort_predict``), so serving needs numpy and
pandas only, never torch. Its artifacts (written by :func:`write_serving_artifacts`):

* ``embeddings.npz`` – ``user`` ``[U, d]`` and ``item`` ``[I, d]`` float32;
* ``catalog.npz`` – ``asins`` (item id -> ASIN) and ``users`` (user index -> raw user id);
* ``seen.npz`` – the train interactions (``x_label == 0``) as CSR ``indptr``/``indices``;
* ``popularity.npy`` – train interaction count per item (the unknown-user fallback).

Input: a table with ``user_id`` (string: the raw id, column ``user_id`` of ``user_map.csv``;
internal indices are never accepted), optional ``k`` (a whole number, default ``default_k``
of the model config, ``1 <= k <= max_k``) and optional ``exclude_seen`` (boolean, default
true: drop the user's train items). A row that breaks these rules (null, empty or non-string
``user_id``, ``k`` of 2.5 or "5", ``exclude_seen`` of "yes") gets a per-row error when other
rows are usable; a request without ``user_id``, or with no usable row, is a 400. Output: one
row per input row with ``user_id``, ``asins`` and ``scores`` (best first, always finite; train
interaction counts for the popularity fallback), ``source`` (``model`` | ``popularity`` |
``error``) and ``error`` (empty unless ``source == "error"``).
An unknown user gets the most popular train items when the model config (or the request
param) ``unknown_user`` is ``popularity`` (the default), or a per-row error when it is ``error``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types.schema import AnyType, Array, ColSpec, ParamSchema, ParamSpec, Schema

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
USER_MAP = "user_map.csv"  # written by the ingest stage
USER_RAW, USER_INDEX = "user_id", "user_index"  # its columns: the raw id (what requests send), the row
OUTPUT_COLUMNS = ["user_id", "asins", "scores", "source", "error"]
SCORE_BATCH_ROWS = 1024  # request rows scored at once
MAX_ROWS_IN_ERROR = 5  # rows quoted in a 400's message
MAX_USER_ID_CHARS = 256  # raw ids are short (Amazon's: 14); longer is a malformed or hostile request


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
    user_map = pd.read_csv(ingest_dir / USER_MAP, dtype={USER_RAW: str}).sort_values(USER_INDEX)
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
              users=user_map[USER_RAW].astype(str).to_numpy(dtype=str))
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

    def resolve_users(self, raw: pd.Series | np.ndarray) -> np.ndarray:
        """Raw user ids (``user_map.csv`` column ``user_id``) -> internal indices; ``-1`` when unknown.

        Only raw ids are looked up: a numeric string such as ``"0"`` is a raw id like any other,
        never taken as an internal index.
        """
        return self.user_index.get_indexer(pd.Series(raw).astype(str).str.strip()).astype(np.int64)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Rank items for each input row; see the module docstring for input and output columns.

        Raises:
            MlflowException (HTTP 400): no ``user_id`` column, a bad ``unknown_user`` param, or
            no usable row at all. In a request with some usable rows, a malformed row
            (missing/empty/non-string user id, a ``k`` that is not a whole number in
            ``1..max_k``, an ``exclude_seen`` that is not a boolean) gets a per-row error.
        """
        cfg = {**self.config, **(params or {})}
        if cfg["unknown_user"] not in UNKNOWN_USER_CHOICES:
            raise _bad_request(
                f"unknown_user must be one of {UNKNOWN_USER_CHOICES}, got {cfg['unknown_user']!r}")
        df = pd.DataFrame(model_input)
        if "user_id" not in df.columns:
            raise _bad_request(
                "each record needs a 'user_id' (the raw user id, column user_id of user_map.csv)")
        request = parse_request(df, int(cfg["default_k"]), int(cfg["max_k"]))
        if len(df) and (request.error != "").all():  # nothing to answer: the request itself is bad
            raise _bad_request("no usable row: " + "; ".join(
                f"row {i}: {message}" for i, message in enumerate(request.error[:MAX_ROWS_IN_ERROR])))
        users = np.where(request.error == "", self.resolve_users(request.user_id), -1)
        valid = request.error == ""
        known = users >= 0
        n = len(df)
        out = pd.DataFrame({"user_id": request.user_id, "asins": [[] for _ in range(n)],
                            "scores": [[] for _ in range(n)], "source": "model", "error": request.error})
        out.loc[~valid, "source"] = "error"
        self._rank_known(out, users, request.k, request.exclude_seen, known & valid)
        self._rank_unknown(out, request.k, ~known & valid, cfg["unknown_user"])
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
            out.loc[rows, ["source", "error"]] = ["error", "unknown user: not a user_id of user_map.csv "
                                                  "(model unknown_user=error)"]
            return
        for row in rows:
            top = self.popular[: ks[row]]
            out.at[row, "asins"] = self.asins[top].tolist()
            out.at[row, "scores"] = self.popularity[top].astype(float).tolist()  # train interaction counts
            out.at[row, "source"] = "popularity"


@dataclass(frozen=True)
class ParsedRequest:
    """The request rows, checked: ``error`` is ``""`` for a usable row, else why it is not."""

    user_id: np.ndarray  # str, "" where missing
    k: np.ndarray  # int64
    exclude_seen: np.ndarray  # bool
    error: np.ndarray  # str


def _bad_request(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)  # the scoring server answers 400


def _is_missing(values: pd.Series) -> np.ndarray:
    return values.map(lambda v: v is None or (isinstance(v, float) and math.isnan(v))).to_numpy(bool)


def parse_request(df: pd.DataFrame, default_k: int, max_k: int) -> ParsedRequest:
    """Check every row of a request table (see :meth:`TopKRecommender.predict`)."""
    n = len(df)
    error = np.full(n, "", dtype=object)

    def flag(mask: np.ndarray, message: str) -> None:
        error[mask & (error == "")] = message  # the first problem of a row is the one reported

    uid = df["user_id"].astype(object)
    uid_missing = _is_missing(uid)
    uid_str = uid.map(lambda v: isinstance(v, str)).to_numpy(bool)
    text = np.where(uid_str, uid.map(lambda v: v.strip() if isinstance(v, str) else ""), "")
    flag(uid_missing, "user_id is missing (null): send the raw user id as a string")
    flag(~uid_missing & ~uid_str, "user_id must be a string (the raw user id, as in user_map.csv)")
    flag(uid_str & (text == ""), "user_id is empty: send the raw user id as a string")
    too_long = uid_str & (np.char.str_len(text.astype(str)) > MAX_USER_ID_CHARS)
    flag(too_long, f"user_id is longer than {MAX_USER_ID_CHARS} characters: not a user id of this catalog")

    ks = np.full(n, default_k, dtype=np.int64)
    if "k" in df.columns:
        col = df["k"].astype(object)
        given = ~_is_missing(col)
        number = col.map(lambda v: isinstance(v, int | float | np.integer | np.floating)
                         and not isinstance(v, bool | np.bool_)).to_numpy(bool)
        value = pd.to_numeric(col.where(given & number), errors="coerce").to_numpy(float)
        whole = number & np.isfinite(value) & (np.mod(np.nan_to_num(value), 1) == 0)
        flag(given & ~whole, f"k must be a whole number between 1 and {max_k}")
        ks[given & whole] = value[given & whole].astype(np.int64)
    flag((ks < 1) | (ks > max_k), f"k must be between 1 and {max_k}")

    exclude = np.ones(n, dtype=bool)
    if "exclude_seen" in df.columns:
        col = df["exclude_seen"].astype(object)
        given = ~_is_missing(col)
        is_bool = col.map(lambda v: isinstance(v, bool | np.bool_)).to_numpy(bool)
        flag(given & ~is_bool, "exclude_seen must be true or false")
        exclude[given & is_bool] = col[given & is_bool].astype(bool).to_numpy()
    user_text = np.where(uid_str, text, np.where(uid_missing, "", uid.astype(str).to_numpy()))
    user_text = np.where(too_long, "", user_text)  # not echoed back
    return ParsedRequest(user_text.astype(str), ks, exclude, error.astype(str))


# --------------------------------------------------------------------------- signature


def input_example(users: list[str], k: int) -> pd.DataFrame:
    """A small request table for ``log_model(input_example=...)``."""
    return pd.DataFrame({"user_id": users, "k": [k] * len(users), "exclude_seen": [True] * len(users)})


def signature(config: dict[str, Any]) -> ModelSignature:
    """Input/output schema and the ``unknown_user`` request param (default from ``config``)."""
    # k and exclude_seen are AnyType: a typed column would let MLflow's schema enforcement
    # truncate k 2.5 to 2 (long) or refuse ints (double) before predict sees them; parse_request
    # checks each row and reports the bad ones.
    inputs = Schema([ColSpec("string", "user_id"), ColSpec(AnyType(), "k", required=False),
                     ColSpec(AnyType(), "exclude_seen", required=False)])
    outputs = Schema([ColSpec("string", "user_id"), ColSpec(Array("string"), "asins"),
                      ColSpec(Array("double"), "scores"), ColSpec("string", "source"),
                      ColSpec("string", "error")])
    params = ParamSchema([ParamSpec("unknown_user", "string", config["unknown_user"])])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)
