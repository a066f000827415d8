"""Stage ``train``: interactions + features -> trained recommender, metrics, history, plots.

Reads ``<ingest.out_dir>/interactions.parquet`` and (multimodal backbones) the features in
``clip.extract.out_dir``; checks every input and name before the first epoch; trains every
point of the grid in ``train.backbones.<backbone>`` (list values) and keeps the one with the
best valid score; writes ``train.out_dir`` (``model.pt``, ``config.json``, ``embeddings.npz``,
``train_meta.json``) and ``train.reports_dir`` (``metrics.json``, ``history.json``,
``view_weights.csv``, PNG plots; and ``timing.json``, the wall-clock seconds, which DVC does not
track so that equal training leaves ``dvc.lock`` as it was). With ``train.compare_fusions`` it
then retrains each listed fusion at the chosen point into ``train.fusions_dir``
(:mod:`cliper.fusion_comparison`; written, possibly empty, for every backbone), and with
``train.repeat_seeds`` it retrains the chosen point once per listed seed and writes each seed's
metrics to ``seeds.json`` and their mean and sd to ``metrics.json`` (:mod:`cliper.seed_repeats`).
Checkpoints live under
``train.cache_dir/<hash of data + features + config>/`` so a killed run resumes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cliper import distributed, io, plots
from cliper.config import FusionConfig, Params, TrainConfig, to_dict
from cliper.errors import CliperError
from cliper.evaluate import EvalTarget, Splits
from cliper.features import load_features
from cliper.fusion import build_fusion, fusion_cache_key, list_fusions
from cliper.fusion_comparison import TrainData, compared_fusions, save_compared, train_compared
from cliper.graphs import configure_cache
from cliper.grid import TRAINER_GRID_KEYS, GridResult, expand_grid, grid_search, split_point
from cliper.models import Features, InteractionData, build_model, get_model_class, resolve_config
from cliper.seed_repeats import SEEDS_FILE, over_seeds, repeat_seeds, seed_record
from cliper.stages import StageResult, train_workers
from cliper.train import TrainSettings

logger = logging.getLogger(__name__)
# wall-clock timings, read by cliper.tracking; not a DVC out (they differ on every run):
# {"seconds_per_epoch", "grid": [{"point", "seconds_per_epoch"}], "history_sha256",
#  "epochs": [{"epoch", "seconds", "end_time"}]}
TIMING_FILE = "timing.json"
TIMING_KEYS = ("seconds_per_epoch",)  # of each grid record: written to TIMING_FILE, not train_meta.json

META_FILE = "train_meta.json"
METRICS_FILE = "metrics.json"  # under train.reports_dir (a DVC metric)
HISTORY_PLOT = "plots/history.png"  # under train.reports_dir


@dataclass(frozen=True)
class TrainInputs:
    """Everything checked before training starts."""

    splits: Splits
    data: InteractionData
    features: Features | None
    feature_hash: str | None
    data_hash: str
    points: list[dict[str, Any]]


def settings_from(params: Params) -> TrainSettings:
    """The trainer settings from the ``train`` and ``evaluate`` sections."""
    t, e = params.train, params.evaluate
    return TrainSettings(
        epochs=t.epochs,
        patience=t.patience,
        eval_every=t.eval_every,
        batch_size=t.batch_size,
        batches_per_epoch=t.batches_per_epoch,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        valid_decimals=t.valid_metric_decimals,
        seed=t.seed,
        device=t.device,
        topk=tuple(e.topk),
        valid_metric=e.valid_metric,
        batch_users=e.batch_users,
        progress=t.progress,
        distributed=t.distributed,
        world_size=distributed.world_size(t.distributed),
        checkpoint_every_s=t.checkpoint_every_s,
    )


def _check_point_types(name: str, point: dict[str, Any], train: TrainConfig) -> dict[str, Any]:
    """Resolve one grid point; a key or type neither the model config nor the trainer has is a CliperError."""
    try:
        defaults, resolved = resolve_config(name), resolve_config(name, split_point(point)[0])
    except ValueError as exc:
        raise CliperError(
            f"params.yaml train.backbones.{name}: {exc} (or a trainer key: {sorted(TRAINER_GRID_KEYS)})"
        ) from exc
    defaults.update({key: getattr(train, key) for key in TRAINER_GRID_KEYS})
    for key, value in point.items():
        want = type(defaults[key])
        ok = isinstance(value, want) and not (isinstance(value, bool) and want is not bool)
        ok = ok or (want is float and isinstance(value, int) and not isinstance(value, bool))
        if not ok and defaults[key] is not None:
            raise CliperError(
                f"params.yaml train.backbones.{name}.{key}: expected {want.__name__} "
                f"(default {defaults[key]!r}), got {value!r}"
            )
        if key in TRAINER_GRID_KEYS:
            floor = ">= 0" if key == "weight_decay" else "> 0"
            if not (value >= 0 if key == "weight_decay" else value > 0):
                raise CliperError(f"params.yaml train.backbones.{name}.{key}: must be {floor}, got {value!r}")
    return resolved


def check_names(params: Params, n_views: int | None, dim: int | None) -> type:
    """Backbone and fusion names (and fusion buildability) before anything heavy runs."""
    t = params.train
    try:
        cls = get_model_class(t.backbone)
    except ValueError as exc:
        raise CliperError(f"params.yaml train.backbone: {exc}") from exc
    if t.fusion.name not in list_fusions():
        raise CliperError(
            f"params.yaml train.fusion.name: unknown fusion '{t.fusion.name}'; choose one of {list_fusions()}"
        )
    try:
        compared = compared_fusions(t)
        repeat_seeds(t)
    except ValueError as exc:
        raise CliperError(f"params.yaml {exc}") from exc
    if n_views is not None and dim is not None:
        for key, cfg in [("train.fusion", t.fusion)] + [("train.compare_fusions", c) for c in compared]:
            try:
                build_fusion(cfg, n_views, dim)
            except ValueError as exc:
                raise CliperError(f"params.yaml {key} ({cfg.name}): {exc}") from exc
    return cls


def load_inputs(params: Params, root: Path) -> TrainInputs:
    """Read and check interactions, features, names and the grid (raises before training)."""
    name = params.train.backbone
    splits = Splits.read(root / params.ingest.out_dir / "interactions.parquet")
    data = InteractionData(splits.n_users, splits.n_items, splits.users["train"], splits.items["train"])
    cls = check_names(params, None, None)
    features = feature_hash = None
    if cls.needs_features:
        features, feature_hash = load_features(
            root / params.clip.extract.out_dir, splits.n_items, params.train.views
        )
        check_names(params, features.text_views.shape[0], features.text_views.shape[2])
    points = expand_grid(dict(params.train.backbones.get(name, {})))
    for point in points:
        _check_point_types(name, point, params.train)
    data_hash = io.sha256_array(
        *(np.concatenate([splits.users[s], splits.items[s]]) for s in ("train", "valid", "test"))
    )
    return TrainInputs(splits, data, features, feature_hash, data_hash, points)


def _build_fn(params: Params, inputs: TrainInputs):
    t = params.train

    def build(point: dict[str, Any]):
        fusion = None
        if inputs.features is not None:
            tv = inputs.features.text_views
            fusion = build_fusion(t.fusion, tv.shape[0], tv.shape[2])
        return build_model(
            t.backbone, data=inputs.data, config=point, features=inputs.features, fusion=fusion
        )

    return build


def _write_reports(
    reports: Path,
    metrics: dict[str, Any],
    timing: dict[str, Any],
    history: list[dict],
    model: Any,
    view_names: tuple[str, ...] | None,
    valid_key: str,
) -> dict[str, str]:
    outputs = {"metrics": str(io.write_json(reports / METRICS_FILE, metrics))}
    keep = ("epoch", "loss", "valid_recall@20", "valid_ndcg@20")
    outputs["history"] = str(
        io.write_json(reports / "history.json", [{k: h[k] for k in keep if k in h} for h in history])
    )
    # kept out of history.json and metrics.json, which stay byte-stable for equal training
    epochs = [{k: h[k] for k in ("epoch", "seconds", "end_time") if k in h}
              for h in history if "end_time" in h]
    # history_sha256 ties the timings to this history.json: after a `dvc checkout` of another
    # model the file is stale, and cliper.tracking ignores it
    timing = {**timing, "history_sha256": io.sha256_file(outputs["history"]), "epochs": epochs}
    outputs["timing"] = str(io.write_json(reports / TIMING_FILE, timing))
    outputs["history_plot"] = str(plots.plot_history(history, reports / HISTORY_PLOT, valid_key))
    weights = model.view_weights()
    df = pd.DataFrame(
        {
            "item_id": pd.Series(dtype="int64"),
            "view": pd.Series(dtype="str"),
            "weight": pd.Series(dtype="float64"),
        }
    )  # header only when the fusion has no weights
    if weights is not None and view_names is not None:
        n_items, n_views = weights.shape
        df = pd.DataFrame(
            {
                "item_id": np.repeat(np.arange(n_items), n_views),
                "view": np.tile(np.asarray(view_names, dtype=object), n_items),
                "weight": np.asarray(weights, dtype=np.float64).ravel(),
            }
        )
        outputs["view_weights_plot"] = str(
            plots.plot_view_weights(df, reports / "plots" / "view_weights.png")
        )
    with io.atomic_path(reports / "view_weights.csv") as tmp:
        df.to_csv(tmp, index=False)
    outputs["view_weights"] = str(reports / "view_weights.csv")
    return outputs


def run(params: Params, root: Path) -> StageResult:
    """Train the configured backbone (grid chosen on valid) and write model + reports.

    Under ``torchrun`` every rank trains (:mod:`cliper.distributed`) and only rank 0 writes.
    """
    try:
        return _run(params, root)
    finally:
        distributed.finish()


@dataclass(frozen=True)
class GridContext:
    """The checked inputs, trainer settings and checkpoint cache of one train-stage run."""

    inputs: TrainInputs
    settings: TrainSettings
    valid: EvalTarget
    test: EvalTarget
    cache_dir: Path
    cache_key: dict[str, Any]  # part of every checkpoint folder's hash (cliper.grid.checkpoint_dir)


def grid_context(params: Params, root: Path) -> GridContext:
    """Load and check the inputs; point the kNN-graph cache at ``train.cache_dir``."""
    t = params.train
    configure_cache(root / t.cache_dir / "graphs")  # item kNN graphs keyed by feature+param hash
    inputs = load_inputs(params, root)
    key = {
        "data": inputs.data_hash,
        "features": inputs.feature_hash,
        "backbone": t.backbone,
        "fusion": fusion_cache_key(t.fusion) if inputs.features is not None else None,
    }
    valid, test = inputs.splits.target("valid"), inputs.splits.target("test")
    return GridContext(inputs, settings_from(params), valid, test, root / t.cache_dir, key)


def search_grid(params: Params, ctx: GridContext, points: list[dict[str, Any]]) -> GridResult:
    """:func:`cliper.grid.grid_search` over ``points`` with the run's checkpoint cache."""
    d = ctx.inputs.data
    return grid_search(points, _build_fn(params, ctx.inputs), d.train_users, d.train_items, d.n_items,
                       ctx.valid, ctx.test, ctx.settings, cache_dir=ctx.cache_dir, cache_key=ctx.cache_key)


def repeat_point(params: Params, ctx: GridContext, point: dict[str, Any], seed: int) -> dict[str, Any]:
    """The record of ``point`` trained with train seed ``seed`` (:mod:`cliper.seed_repeats`)."""
    seeded = replace(ctx, settings=replace(ctx.settings, seed=seed))
    return search_grid(params, seeded, [point]).points[0]


def compare_fusions(
    params: Params, ctx: GridContext, point: dict[str, Any], fusions: list[FusionConfig]
) -> dict[str, tuple[Any, dict[str, Any]]]:
    """:func:`cliper.fusion_comparison.train_compared` of ``fusions`` at ``point``."""
    assert ctx.inputs.features is not None
    data = TrainData(ctx.inputs.data, ctx.inputs.features, ctx.valid, ctx.test)
    return train_compared(fusions, params.train.fusion, point, params.train.backbone, data, ctx.settings,
                          (ctx.cache_dir, ctx.cache_key))


def _run(params: Params, root: Path) -> StageResult:
    t = params.train
    ctx = grid_context(params, root)
    inputs, settings = ctx.inputs, ctx.settings
    fusions = compared_fusions(t) if inputs.features is not None else []
    seeds = repeat_seeds(t)
    with train_workers.pool(params, root, ctx, max(len(inputs.points), len(fusions) + len(seeds))) as workers:
        workers.train_points(inputs.points)  # t.workers > 1: every point in parallel; then resumed below
        result = search_grid(params, ctx, inputs.points)
        chosen = result.points[result.best_index]
        workers.train_retrains(chosen["point"], fusions, seeds)
    compared = compare_fusions(params, ctx, chosen["point"], fusions) if fusions else {}
    runs = [seed_record(t.seed, chosen)]
    runs += [seed_record(s, repeat_point(params, ctx, chosen["point"], s)) for s in seeds]
    if not distributed.is_main():
        return StageResult(stage="train", outputs={}, metrics={})
    state = result.trainer.state
    metrics = {
        "backbone": t.backbone,
        "fusion": t.fusion.name if inputs.features is not None else None,
        "best_epoch": chosen["best_epoch"],
        "n_epochs": chosen["n_epochs"],
        "valid": chosen["valid"],
        "test": chosen["test"],
        "grid_size": len(result.points),
    }
    if seeds:
        metrics["over_seeds"] = over_seeds(runs, settings.valid_metric)
    meta = {
        **metrics,
        "point": chosen["point"],
        "model_config": resolve_config(t.backbone, split_point(chosen["point"])[0]),
        "data_hash": inputs.data_hash,
        "feature_hash": inputs.feature_hash,
        "grid": [{k: v for k, v in rec.items() if k not in TIMING_KEYS} for rec in result.points],
        "valid_metric": settings.valid_metric,
        "fusion_config": to_dict(t.fusion),
        "views": list(inputs.features.view_names) if inputs.features is not None else None,
        "seed": t.seed,
    }
    out_dir = root / t.out_dir
    with io.atomic_dir(out_dir) as tmp:
        result.model.cpu().save(tmp)
        io.write_json(tmp / META_FILE, meta)
    view_names = inputs.features.view_names if inputs.features is not None else None
    outputs = _write_reports(
        root / t.reports_dir,
        metrics,
        {
            **{k: chosen[k] for k in TIMING_KEYS},
            "grid": [{"point": r["point"], **{k: r[k] for k in TIMING_KEYS}} for r in result.points],
        },
        state.history,
        result.model,
        view_names,
        f"valid_{settings.valid_metric}",
    )
    outputs["seeds"] = str(io.write_json(root / t.reports_dir / SEEDS_FILE, {"seeds": runs}))
    outputs["model"] = str(out_dir)
    outputs["fusions"] = str(save_compared(compared, root / t.fusions_dir))
    flat = {
        "best_epoch": metrics["best_epoch"],
        **{f"valid_{k}": v for k, v in chosen["valid"].items()},
        **{f"test_{k}": v for k, v in chosen["test"].items()},
        **({f"test_{settings.valid_metric}_seed_mean": metrics["over_seeds"]["mean"]} if seeds else {}),
    }
    return StageResult(stage="train", outputs=outputs, metrics=flat)
