"""The small contract every recommender backbone follows (MMRec's ``GeneralRecommender``, slimmed).

A backbone receives the train interactions (:class:`InteractionData`), its config dict and, when
it is multimodal, the item :class:`Features` plus a :class:`cliper.fusion.Fusion`. It never reads
files. The trainer calls :meth:`Recommender.pre_epoch` once per epoch and
:meth:`Recommender.calculate_loss` per batch; the evaluator calls
:meth:`Recommender.full_sort_predict`. Most backbones score ``user_e @ item_e.T`` after some
propagation, so they only implement :meth:`Recommender.compute_embeddings`; the base class then
provides prediction, embedding export (cached in eval mode) and save/load.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cliper import io

if TYPE_CHECKING:
    from cliper.fusion import Fusion

logger = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"
EMBEDDINGS_FILE = "embeddings.npz"


@dataclass(frozen=True)
class InteractionData:
    """The train split as id pairs (ids are 0-based, as in ``interactions.parquet``)."""

    n_users: int
    n_items: int
    train_users: np.ndarray
    train_items: np.ndarray

    def __post_init__(self) -> None:
        if len(self.train_users) != len(self.train_items):
            raise ValueError(
                f"train_users ({len(self.train_users)}) and train_items "
                f"({len(self.train_items)}) differ in length"
            )
        if len(self.train_users) and (
            self.train_users.max() >= self.n_users or self.train_items.max() >= self.n_items
        ):
            raise ValueError(f"train ids exceed n_users={self.n_users} / n_items={self.n_items}")


@dataclass(frozen=True)
class Features:
    """Multimodal item inputs (float32): image ``[n_items, d_v]``, text views ``[n_views, n_items, d_t]``."""

    image: torch.Tensor
    text_views: torch.Tensor
    view_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.text_views.dim() != 3 or self.image.dim() != 2:
            raise ValueError(
                f"features: expected image [I, D] and text_views [V, I, D], got {tuple(self.image.shape)} "
                f"and {tuple(self.text_views.shape)}"
            )
        if self.text_views.shape[1] != self.image.shape[0]:
            raise ValueError(
                f"features: image has {self.image.shape[0]} items, text_views {self.text_views.shape[1]}"
            )
        if len(self.view_names) != self.text_views.shape[0]:
            raise ValueError(
                f"features: {len(self.view_names)} view names for {self.text_views.shape[0]} views"
            )

    @property
    def n_items(self) -> int:
        """Number of items."""
        return int(self.image.shape[0])

    @functools.cached_property
    def content_hash(self) -> str:
        """SHA-256 of both arrays and the view names (computed once per object)."""
        return io.sha256_array(
            self.image.detach().cpu().float().numpy(),
            self.text_views.detach().cpu().float().numpy(),
            extra={"views": list(self.view_names)},
        )


def rows(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``table[ids]`` for a 1-d id tensor, as ``index_select``: the same rows and gradient, but the
    backward is an ``index_add`` (advanced indexing's ``index_put`` accumulates serially on CPU and
    was a third of the FREEDOM epoch)."""
    return table.index_select(0, ids)


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """BPR loss -mean(log sigmoid(pos - neg)) (Rendle et al., UAI 2009, eq. 7)."""
    return -F.logsigmoid(pos_scores - neg_scores).mean()


def emb_norm_loss(*embeddings: torch.Tensor) -> torch.Tensor:
    """MMRec's ``EmbLoss``: sum of the Frobenius norms divided by the batch size."""
    total = sum(torch.linalg.norm(e) for e in embeddings)
    return total / embeddings[-1].shape[0]


def l2_loss(*embeddings: torch.Tensor) -> torch.Tensor:
    """MMRec's ``L2Loss``: half the sum of squares."""
    return sum((e**2).sum() for e in embeddings) * 0.5


class Recommender(nn.Module):
    """Base class: subclasses set ``name``/``needs_features`` and implement the abstract methods."""

    name: ClassVar[str] = "base"
    needs_features: ClassVar[bool] = False

    def __init__(
        self,
        data: InteractionData,
        config: dict[str, Any],
        features: Features | None = None,
        fusion: Fusion | None = None,
    ) -> None:
        super().__init__()
        if self.needs_features and features is None:
            raise ValueError(f"model '{self.name}' needs item features (image + text views); got none")
        if features is not None and features.n_items != data.n_items:
            raise ValueError(f"features have {features.n_items} items, interactions {data.n_items}")
        self.n_users = int(data.n_users)
        self.n_items = int(data.n_items)
        self.config = dict(config)
        self._features = features  # hashed only when the model is saved (the hash reads every byte)
        self.fusion = fusion if self.needs_features else None
        self._eval_cache: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def feature_hash(self) -> str | None:
        """Content hash of the features the model was built with (``None`` for ID-only models)."""
        return None if self._features is None else self._features.content_hash

    # ------------------------------------------------------------------ to implement
    def compute_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final (user ``[U, d]``, item ``[I, d]``) embeddings; scores are ``user @ item.T``."""
        raise NotImplementedError

    def calculate_loss(
        self, users: torch.Tensor, pos_items: torch.Tensor, neg_items: torch.Tensor
    ) -> torch.Tensor:
        """Scalar training loss of one batch of (user, positive, negative) ids."""
        raise NotImplementedError

    def pre_epoch(self) -> None:
        """Hook before each training epoch (e.g. FREEDOM's edge dropout); no-op by default."""

    # ------------------------------------------------------------------ shared behaviour
    def _final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings for scoring; cached while in eval mode (dropped by ``train()``/``load_state_dict``)."""
        if self.training:
            return self.compute_embeddings()
        if self._eval_cache is None:
            with torch.no_grad():
                self._eval_cache = self.compute_embeddings()
        return self._eval_cache

    def train(self, mode: bool = True) -> Recommender:  # noqa: D102 - nn.Module API
        self._eval_cache = None
        return super().train(mode)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:  # noqa: D102
        self._eval_cache = None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def full_sort_predict(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of every item for ``users``: ``[len(users), n_items]``."""
        user_e, item_e = self._final_embeddings()
        return user_e[users] @ item_e.T

    def export_embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """(user ``[U, d]``, item ``[I, d]``) float32 with eval-mode scores ``== user @ item.T``."""
        was_training = self.training
        self.eval()
        try:
            user_e, item_e = self._final_embeddings()
            return (user_e.detach().cpu().float().numpy(), item_e.detach().cpu().float().numpy())
        finally:
            self.train(was_training)

    def view_weights(self) -> np.ndarray | None:
        """``[n_items, n_views]`` fusion weights when the fusion produces any, else ``None``."""
        return None

    def extra_state(self) -> dict[str, Any]:
        """JSON-able constructor extras saved in ``config.json`` (e.g. the fusion spec)."""
        return {"fusion": self.fusion.spec if self.fusion is not None else None}

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> None:
        """Write ``model.pt`` (state_dict), ``config.json`` and ``embeddings.npz`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        io.write_torch(directory / MODEL_FILE, state)
        meta = {
            "name": self.name,
            "config": self.config,
            "n_users": self.n_users,
            "n_items": self.n_items,
            "feature_hash": self.feature_hash,
            **self.extra_state(),
        }
        io.write_json(directory / CONFIG_FILE, meta)
        user, item = self.export_embeddings()
        io.write_npz(directory / EMBEDDINGS_FILE, user=user, item=item)

    @classmethod
    def load(
        cls, directory: str | Path, data: InteractionData, features: Features | None = None
    ) -> Recommender:
        """Rebuild a saved model (any registered backbone when called on the base class).

        Raises:
            ValueError: the saved model does not match ``data``/``features`` or ``cls``.
        """
        from cliper.models import get_model_class  # late: the registry imports this module

        directory = Path(directory)
        meta = io.read_json(directory / CONFIG_FILE)
        model_cls = get_model_class(meta["name"])
        if cls is not Recommender and model_cls is not cls:
            raise ValueError(f"{directory}: holds model '{meta['name']}', not '{cls.name}'")
        if (meta["n_users"], meta["n_items"]) != (data.n_users, data.n_items):
            raise ValueError(
                f"{directory}: saved for {meta['n_users']} users x {meta['n_items']} items, "
                f"data has {data.n_users} x {data.n_items}"
            )
        if features is not None and meta.get("feature_hash") not in (None, features.content_hash):
            raise ValueError(
                f"{directory}: saved with features {meta['feature_hash'][:12]}…, given "
                f"{features.content_hash[:12]}… (re-extracted features need retraining)"
            )
        fusion = None
        if model_cls.needs_features and meta.get("fusion") and features is not None:
            from cliper.fusion import build_fusion_from_spec

            fusion = build_fusion_from_spec(meta["fusion"], features)
        model = model_cls(data, meta["config"], features=features, fusion=fusion)
        try:
            state = torch.load(directory / MODEL_FILE, map_location="cpu", weights_only=True)
        except (RuntimeError, OSError, EOFError) as exc:  # truncated / corrupt file
            raise ValueError(
                f"{directory / MODEL_FILE}: cannot read the saved weights ({exc}); rerun the train stage"
            ) from exc
        model.load_state_dict(state)
        model.eval()
        return model
