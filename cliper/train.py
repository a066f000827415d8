"""The trainer: BPR-style epochs, early stopping on valid, checkpoint/resume (grids: :mod:`cliper.grid`).

MMRec protocol (``src/common/trainer.py``): Adam, batches of (user, positive, one uniform
negative) over the shuffled train pairs, ``pre_epoch`` hook per epoch, full-ranking evaluation
on **valid** every ``eval_every`` epochs; the best valid ``valid_metric`` (strictly greater
counts as better) is kept, and training stops once ``patience`` evaluations in a row did not
improve it (MMRec's ``early_stopping``: stop when the counter exceeds ``stopping_step``).
Test is evaluated once, with the weights of the best valid epoch — equal to MMRec's
"test at best valid" without evaluating test every epoch.

MMRec compares the valid metric rounded to 4 decimals (its evaluator rounds every metric);
``valid_decimals`` does the same for parity (``None``: unrounded, so a tiny gain still counts).
Adam gets ``weight_decay`` (MMRec's ``weight_decay``, 0 by default).

Fixes over MMRec: a hyper-parameter grid is chosen by valid, never by test (:func:`cliper.grid.grid_search`);
epochs end with an atomic checkpoint (model, optimiser, all RNG states, epoch, best so far,
history; at most every ``checkpoint_every_s`` seconds, and always at the end), so a killed run
restarted with the same inputs resumes and ends with the same metrics as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from cliper import distributed, io
from cliper.config_scale import DistributedConfig
from cliper.errors import CliperError
from cliper.evaluate import EvalTarget, evaluate_model
from cliper.sampling import NegativeSampler

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
# Part of every checkpoint folder's hash: bump it when a change alters training numerics, so old
# checkpoints are not resumed by new code (2: fused Adam; 3: a learnable fusion's initial weights
# from a stream of their own, compared fusions on the trained model's random stream).
TRAINER_VERSION = 3
# What rank 0 decides after each evaluation and broadcasts to the other ranks.
DECISION_FIELDS = ("best_score", "best_epoch", "best_valid", "bad_evals", "finished")


@dataclass(frozen=True)
class TrainSettings:
    """What the trainer needs from ``params.yaml`` (``train`` + ``evaluate`` sections)."""

    epochs: int = 1000
    patience: int = 20
    eval_every: int = 1
    batch_size: int = 2048
    # None: batches of batch_size (MMRec). A number: this many batches per epoch, whatever the data size
    # (batch = ceil(pairs / n)), so an epoch's full-graph propagations stay n and its cost linear.
    batches_per_epoch: int | None = None
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    valid_decimals: int | None = None  # round the valid metric before comparing (MMRec: 4)
    seed: int = 999
    device: str = "auto"
    topk: tuple[int, ...] = (5, 10, 20, 50)
    valid_metric: str = "recall@20"
    batch_users: int = 4096
    progress: bool = True
    # torchrun / DDP (cliper.distributed); world_size is part of the checkpoint hash
    distributed: DistributedConfig = DistributedConfig()
    world_size: int = 1
    # Seconds between checkpoints (0: after every epoch). The last epoch and a stop_after return
    # always write one; a kill loses at most this much training, and resuming replays it exactly.
    checkpoint_every_s: float = 0.0


@dataclass
class TrainState:
    """Everything that changes during training (checkpointed after every epoch)."""

    epoch: int = 0  # next epoch to run
    best_score: float = -math.inf
    best_epoch: int = -1
    best_valid: dict[str, float] = field(default_factory=dict)
    bad_evals: int = 0
    finished: bool = False
    history: list[dict[str, float]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CliperError("train.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    return torch.device(name)


def epoch_batch_size(settings: TrainSettings, n_pairs: int) -> int:
    """``batch_size``, or the epoch of ``n_pairs`` cut into ``batches_per_epoch`` batches."""
    if settings.batches_per_epoch is None:
        return settings.batch_size
    return max(1, math.ceil(n_pairs / settings.batches_per_epoch))


def config_hash(*parts: Any) -> str:
    """Short stable hash of JSON-able parts (names the checkpoint folder)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _adam(model: torch.nn.Module, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam (MMRec's learner); the fused kernel when the parameters allow it (about 4x faster on CPU)."""
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):  # e.g. a dtype/device without a fused kernel
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def rng_state() -> dict[str, Any]:
    """The Python, numpy, torch (and CUDA) generator states, for :func:`set_rng_state`."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    """Trains one model on the train split with early stopping on ``valid``.

    Args:
        model: a :class:`cliper.models.base.Recommender` (or anything with ``calculate_loss``,
            ``full_sort_predict`` and ``pre_epoch``), built right after :func:`seed_everything`.
        train_users: user id per train pair.
        train_items: item id per train pair.
        n_items: number of items.
        valid: the valid :class:`EvalTarget` (train items masked).
        settings: epochs, patience, batch size, learning rate, seed, device, metrics.
        checkpoint_dir: where ``checkpoint.pt`` lives; ``None`` disables checkpointing.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        train_users: np.ndarray,
        train_items: np.ndarray,
        n_items: int,
        valid: EvalTarget,
        settings: TrainSettings,
        checkpoint_dir: str | Path | None = None,
    ) -> None:
        if valid.n_users == 0:
            raise CliperError("the valid split has no users with items: early stopping needs a valid split")
        self.settings = settings
        self.dist, self.device = distributed.setup(settings.distributed, resolve_device(settings.device))
        self.model = model.to(self.device)
        self.loss_fn = distributed.loss_function(self.model, self.dist, self.device)
        self.users = np.asarray(train_users, dtype=np.int64)
        self.items = np.asarray(train_items, dtype=np.int64)
        self.sampler = NegativeSampler(n_items, self.users, self.items)
        self.valid = valid
        self.optimizer = _adam(self.model, settings.learning_rate, settings.weight_decay)
        self.rng = np.random.default_rng(settings.seed)
        self.state = TrainState()
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.checkpoint = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir else None

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> None:
        """Write the full training state atomically (temp file + rename)."""
        if self.checkpoint is None or not self.dist.is_main:  # rank 0 writes, every rank reads
            return
        payload = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "sampler_rng": self.rng.bit_generator.state,
            "rng": rng_state(),
            "state": self.state.__dict__,
            "best_weights": self.best_weights,
        }
        with io.atomic_path(self.checkpoint) as tmp:
            torch.save(payload, tmp)

    def load_checkpoint(self) -> bool:
        """Restore from ``checkpoint.pt`` if it exists; returns whether it did."""
        if self.checkpoint is None or not self.checkpoint.exists():
            return False
        payload = torch.load(self.checkpoint, map_location=self.device, weights_only=False)
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.rng.bit_generator.state = payload["sampler_rng"]
        set_rng_state(payload["rng"])
        self.state = TrainState(**payload["state"])
        self.best_weights = payload["best_weights"]
        logger.info("resumed from %s at epoch %d", self.checkpoint, self.state.epoch)
        return True

    # ------------------------------------------------------------------ training
    def train_epoch(self) -> float:
        """One pass over the shuffled train pairs; returns the mean batch loss."""
        self.model.train()
        self.model.pre_epoch()
        order = self.rng.permutation(len(self.users))
        users, pos = self.users[order], self.items[order]
        neg = self.sampler.sample(users, self.rng)
        tensors = [torch.as_tensor(a, device=self.device) for a in (users, pos, neg)]
        total, n_batches = 0.0, 0
        for part in distributed.batch_slices(len(users), self.batch_size(len(users)), self.dist):
            batch = [t[part] for t in tensors]
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss_fn(*batch)
            if not torch.isfinite(loss):
                raise CliperError(
                    f"training loss became {loss.item()} at epoch {self.state.epoch}, batch {n_batches}; "
                    "lower train.learning_rate or check the features for extreme values"
                )
            loss.backward()
            self.optimizer.step()
            total += float(loss.detach())
            n_batches += 1
        return distributed.mean_over_ranks(total, n_batches, self.dist)

    def batch_size(self, n_pairs: int) -> int:
        """Pairs per optimiser step for an epoch of ``n_pairs`` (:func:`epoch_batch_size`)."""
        return epoch_batch_size(self.settings, n_pairs)

    def evaluate(self, target: EvalTarget) -> dict[str, float]:
        """Full-ranking metrics on ``target`` with the current weights (rank 0 computes, all receive)."""
        s = self.settings
        metrics = evaluate_model(self.model, target, s.topk, s.batch_users) if self.dist.is_main else None
        return distributed.broadcast(metrics, self.dist)

    def _after_eval(self, epoch: int, valid: dict[str, float]) -> None:
        score = valid[self.settings.valid_metric]
        if self.settings.valid_decimals is not None:
            score = round(score, self.settings.valid_decimals)
        if score > self.state.best_score:
            self.state.best_score, self.state.best_epoch = score, epoch
            self.state.best_valid, self.state.bad_evals = valid, 0
            self.best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            self.state.bad_evals += 1
            if self.state.bad_evals > self.settings.patience:
                self.state.finished = True

    def fit(
        self, stop_after: int | None = None, on_epoch_end: Callable[[int], None] | None = None
    ) -> TrainState:
        """Train until early stopping or ``settings.epochs`` (resuming from a checkpoint if any).

        Args:
            stop_after: return (without finishing) after this many epochs in this call; used to
                simulate an interrupted run.
            on_epoch_end: called with the epoch number after each epoch's checkpoint.

        Returns:
            The final :class:`TrainState`; the model holds the best valid weights when finished.
        """
        s = self.settings
        if s.valid_metric not in {f"{m}@{k}" for m in ("recall", "ndcg", "precision", "map") for k in s.topk}:
            raise CliperError(
                f"evaluate.valid_metric '{s.valid_metric}' is not computed for topk {list(s.topk)}"
            )
        self.load_checkpoint()
        done_here, saved_at = 0, time.monotonic()
        bar = tqdm(
            total=s.epochs, initial=self.state.epoch, desc="train", unit="epoch", disable=not s.progress
        )
        while not self.state.finished and self.state.epoch < s.epochs:
            if stop_after is not None and done_here >= stop_after:
                bar.close()
                self.save_checkpoint()
                return self.state
            epoch, started = self.state.epoch, time.perf_counter()
            loss = self.train_epoch()
            record: dict[str, float] = {
                "epoch": epoch,
                "loss": loss,
                "seconds": time.perf_counter() - started,
                "end_time": time.time(),  # wall clock (s): MLflow plots the epochs on their real time axis
            }
            if (epoch + 1) % s.eval_every == 0 or epoch + 1 == s.epochs:
                valid = self.evaluate(self.valid)
                record.update({f"valid_{k}": v for k, v in valid.items()})
                if self.dist.is_main:  # early stopping decided once, on rank 0, then broadcast
                    self._after_eval(epoch, valid)
                distributed.broadcast_fields(self.state, DECISION_FIELDS, self.dist)
            self.state.history.append(record)
            self.state.epoch = epoch + 1
            self.state.finished = self.state.finished or self.state.epoch >= s.epochs
            if self.state.finished or time.monotonic() - saved_at >= s.checkpoint_every_s:
                self.save_checkpoint()
                saved_at = time.monotonic()
            done_here += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", best=f"{self.state.best_score:.4f}")
            logger.log(  # the bar already shows it; full lines when there is no bar
                logging.DEBUG if s.progress else logging.INFO,
                "epoch %d loss %.4f %s %.4f (best %.4f @ %d)",
                epoch,
                loss,
                s.valid_metric,
                record.get(f"valid_{s.valid_metric}", float("nan")),
                self.state.best_score,
                self.state.best_epoch,
            )
            if on_epoch_end is not None:
                on_epoch_end(epoch)
        bar.close()
        if self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)
        return self.state
