"""Retrained fusions beside the trained one: the fusion rows of the view report.

The inference-time ablation of :mod:`cliper.view_report` swaps parameter-free fusions into a
trained model; a learnable fusion (``self_attention``) or one that changes the feature width
(``concat``) cannot be swapped in, so comparing them needs training. With
``train.compare_fusions: [mean, concat, self_attention]`` the train stage, after its grid, trains
each listed fusion at the **chosen** grid point with the same epochs, patience, seed and valid
selection (``train.fusion`` with only ``name`` changed), and saves each under
``<train.fusions_dir>/<name>/`` with ``comparison.json``. The evaluate stage then scores them on
test (:func:`load_compared`), so the table compares fusions under one tuning budget, and test is
never used to choose anything. An empty list writes ``comparison.json`` listing nothing.

The comparison is **paired** (common random numbers): each compared model is trained on the
trained model's random stream. Its build starts from the same seed (so the ID embeddings are the
trained model's; :func:`cliper.fusion.build_fusion` keeps a learnable fusion's weights off that
stream), and training then continues from the random state that the *trained* model's build left,
so FREEDOM's edge pruning and BM3's dropout masks draw the same values even when the fusion changes
the width of a layer (``concat``). A row then differs from the trained model by its fusion, not by
a shifted stream, which alone had moved single demo runs by up to 14%.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cliper import io
from cliper.config import FusionConfig, TrainConfig, to_dict
from cliper.evaluate import EvalTarget
from cliper.fusion import build_fusion, fusion_cache_key, list_fusions
from cliper.grid import grid_search
from cliper.models import Features, InteractionData, Recommender, build_model
from cliper.train import TrainSettings, rng_state, set_rng_state

logger = logging.getLogger(__name__)

COMPARISON_FILE = "comparison.json"


def compared_fusions(train: TrainConfig) -> list[FusionConfig]:
    """``train.fusion`` with each name of ``train.compare_fusions`` (checked; the trained one left out).

    Raises:
        ValueError: an unknown fusion name, or a name listed twice.
    """
    names = list(train.compare_fusions)
    unknown = [n for n in names if n not in list_fusions()]
    if unknown:
        raise ValueError(f"train.compare_fusions: unknown fusion(s) {unknown}; choose from {list_fusions()}")
    if len(set(names)) != len(names):
        raise ValueError(f"train.compare_fusions: {names} lists a fusion twice")
    return [dataclasses.replace(train.fusion, name=n) for n in names if n != train.fusion.name]


@dataclasses.dataclass(frozen=True)
class TrainData:
    """What the train stage already loaded: interactions, features and the valid/test targets."""

    data: InteractionData
    features: Features
    valid: EvalTarget
    test: EvalTarget


def train_compared(
    fusions: list[FusionConfig],
    reference: FusionConfig,
    point: dict[str, Any],
    backbone: str,
    inputs: TrainData,
    settings: TrainSettings,
    cache: tuple[Path, dict[str, Any]],
) -> dict[str, tuple[Recommender, dict[str, Any]]]:
    """Train ``backbone`` at ``point`` once per fusion; ``{name: (model, record)}``.

    Args:
        reference: the trained model's fusion (``train.fusion``), whose random stream each
            compared model trains on (module docstring).
        cache: (checkpoint folder, cache key of the main grid); the key's ``fusion`` is replaced
            per fusion, so a killed run resumes each one from its own checkpoints.
    """
    cache_dir, key = cache
    d = inputs.data
    out: dict[str, tuple[Recommender, dict[str, Any]]] = {}
    for cfg in fusions:
        logger.info("fusion comparison: %s at the chosen point %s", cfg.name, point)
        build = _builder(backbone, inputs, cfg, reference)
        result = grid_search([point], build, d.train_users, d.train_items, d.n_items, inputs.valid,
                             inputs.test, settings, cache_dir=cache_dir,
                             cache_key={**key, "fusion": fusion_cache_key(cfg),
                                        "paired_with": fusion_cache_key(reference)})
        record = {k: result.points[0][k] for k in ("point", "best_epoch", "n_epochs", "valid")}
        out[cfg.name] = (result.model, {**record, "fusion_config": to_dict(cfg)})
    return out


def _builder(
    backbone: str, inputs: TrainData, cfg: FusionConfig, reference: FusionConfig
) -> Callable[[dict[str, Any]], Recommender]:
    """``model overrides -> fresh model`` with fusion ``cfg`` (what :func:`grid_search` calls, right
    after seeding), left on the random state that building the ``reference`` model leaves."""
    n_views, _, dim = inputs.features.text_views.shape

    def make(fusion: FusionConfig, config: dict[str, Any]) -> Recommender:
        return build_model(backbone, data=inputs.data, config=config, features=inputs.features,
                           fusion=build_fusion(fusion, n_views, dim))

    def build(config: dict[str, Any]) -> Recommender:
        seeded = rng_state()
        make(reference, config)  # built only for the random state it leaves (the trained model's)
        trained_stream = rng_state()
        set_rng_state(seeded)
        model = make(cfg, config)
        set_rng_state(trained_stream)
        return model

    return build


def save_compared(compared: dict[str, tuple[Recommender, dict[str, Any]]], out_dir: Path) -> Path:
    """``<out_dir>/<name>/`` per model and ``comparison.json``, replaced whole (atomically)."""
    with io.atomic_dir(out_dir) as tmp:
        for name, (model, _) in compared.items():
            model.cpu().save(tmp / name)
        listing = [{"name": n, **rec} for n, (_, rec) in compared.items()]  # a list keeps the order
        io.write_json(tmp / COMPARISON_FILE, {"fusions": listing})
    return out_dir


def load_compared(
    out_dir: Path, data: InteractionData, features: Features
) -> dict[str, tuple[Recommender, dict[str, Any]]]:
    """The models :func:`save_compared` wrote (none when the folder or its list is empty).

    Raises:
        ValueError: a listed model is missing or does not match ``data``/``features``.
    """
    listing = out_dir / COMPARISON_FILE
    if not listing.exists():
        return {}
    out = {}
    for entry in io.read_json(listing)["fusions"]:
        name, record = entry["name"], {k: v for k, v in entry.items() if k != "name"}
        if not (out_dir / name).is_dir():
            raise ValueError(f"{out_dir / name}: listed in {listing} but missing; rerun the train stage")
        out[name] = (Recommender.load(out_dir / name, data, features).eval(), record)
    return out

