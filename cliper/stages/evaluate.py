"""Stage ``evaluate``: the saved recommender -> full-ranking metrics, slices and plots.

Loads ``train.out_dir`` (with the features when the backbone is multimodal), evaluates valid
and test at every K of ``evaluate.topk`` (protocol: :mod:`cliper.evaluate`) and two test slices:

* ``cold_start``: only test targets whose item has at most ``evaluate.cold_start_max_train``
  train interactions count (users without such a target are skipped);
* ``missing_image``: only test targets whose item is listed in
  ``<preprocess.out_dir>/missing_images.csv`` (when that file exists and lists any item).

Writes ``<evaluate.out_dir>/metrics.json`` and ``<evaluate.out_dir>/plots/metrics_at_k.png``; for
a multimodal model also the view report (:mod:`cliper.view_report`): ``<evaluate.out_dir>/views/``
(``view_report.md``, ``view_weights.csv``, ``ablation.csv``) and ``plots/view_weights_hist.png``.
``test_ci`` is a bootstrap interval over test users of recall and NDCG at the valid metric's
K (``evaluate.bootstrap``; :mod:`cliper.uncertainty`), from the per-user values it also writes
(``per_user_test.csv``: user id, targets, recall and NDCG at that K) for paired comparisons.
Fusions the train stage retrained for comparison (``train.fusions_dir``) are scored on test
too: ``metrics.json`` ``fusions`` and the report's fusion table (``fusions.csv``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cliper import io, plots
from cliper.config import Params
from cliper.errors import DataError
from cliper.evaluate import (
    EvalTarget,
    Splits,
    evaluate_model,
    mean_metrics,
    metrics_from_hits,
    model_hits,
    per_user_metrics,
)
from cliper.models import Features, InteractionData, Recommender, get_model_class
from cliper.stages import StageResult
from cliper.train import resolve_device

logger = logging.getLogger(__name__)

MISSING_IMAGES_FILE = "missing_images.csv"
VIEW_REPORT_DIR = "views"
METRICS_FILE, MLFLOW_FILE = "metrics.json", "mlflow.json"  # read back by cliper summary and the flow
METRICS_AT_K_PLOT = "plots/metrics_at_k.png"
PER_USER_FILE = "per_user_test.csv"  # per test user: recall/ndcg at the valid metric's K


def _train_data(splits: Splits) -> InteractionData:
    """The train interactions the model was fitted on (what it and its fusions are rebuilt with)."""
    return InteractionData(splits.n_users, splits.n_items, splits.users["train"], splits.items["train"])


def load_trained(params: Params, root: Path) -> tuple[Recommender, Splits, dict[str, Any], Features | None]:
    """(model in eval mode, splits, train_meta.json, features or None) of the trained recommender."""
    from cliper.features import load_features

    model_dir = root / params.train.out_dir
    if not (model_dir / "train_meta.json").exists():
        raise DataError(f"{model_dir}: no trained model (train_meta.json missing); run the train stage first")
    meta = io.read_json(model_dir / "train_meta.json")
    splits = Splits.read(root / params.ingest.out_dir / "interactions.parquet")
    data = _train_data(splits)
    features = None
    if get_model_class(meta["backbone"]).needs_features:
        # the views the model was trained on (train.views), in its order
        features, _ = load_features(root / params.clip.extract.out_dir, splits.n_items, meta.get("views"))
    try:
        model = Recommender.load(model_dir, data, features)
    except ValueError as exc:
        raise DataError(str(exc)) from exc
    return model.to(resolve_device(params.train.device)), splits, meta, features


def slice_filters(params: Params, root: Path, splits: Splits) -> dict[str, np.ndarray]:
    """Item masks of the test slices (empty slices are left out)."""
    counts = np.bincount(splits.items["train"], minlength=splits.n_items)
    filters = {"cold_start": counts <= params.evaluate.cold_start_max_train}
    missing_path = root / params.preprocess.out_dir / MISSING_IMAGES_FILE
    if missing_path.exists():
        missing = pd.read_csv(missing_path)
        if "item_id" not in missing.columns:
            raise DataError(f"{missing_path}: expected an 'item_id' column, got {list(missing.columns)}")
        mask = np.zeros(splits.n_items, dtype=bool)
        ids = missing["item_id"].to_numpy(dtype=np.int64)
        mask[ids[(ids >= 0) & (ids < splits.n_items)]] = True
        filters["missing_image"] = mask
    return {name: m for name, m in filters.items() if m.any()}


def _metric_k(params: Params) -> int:
    """The K of ``evaluate.valid_metric`` (``recall@20`` -> 20): the cut-off the view report shows."""
    return int(params.evaluate.valid_metric.split("@")[1])


def score_compared_fusions(
    params: Params, root: Path, model: Recommender, meta: dict[str, Any], splits: Splits, features: Features,
    trained_hits: np.ndarray,
) -> dict[str, dict[str, Any]]:
    """Per fusion (the trained one first): best epoch, valid and test metrics (``train.fusions_dir``).

    ``trained_hits`` are the trained model's test hits the stage already ranked (not ranked again).

    Each compared fusion also gets ``vs_trained``: its relative gain in test recall at the valid
    metric's K over the trained model, with a paired bootstrap interval over the test users
    (``evaluate.bootstrap``), so that a reader sees which differences one run can resolve.
    """
    from cliper.fusion_comparison import load_compared
    from cliper.view_report import paired_recall_gain

    e = params.evaluate
    data = _train_data(splits)
    try:
        compared = load_compared(root / params.train.fusions_dir, data, features)
    except ValueError as exc:
        raise DataError(str(exc)) from exc
    if not compared:
        return {}
    device = next(model.parameters()).device
    target, topk = splits.target("test"), sorted(e.topk)
    trained = meta.get("fusion") or model.fusion.name
    rows = {trained: (model, meta)} | {name: (m.to(device), rec) for name, (m, rec) in compared.items()}
    k, b = _metric_k(params), e.bootstrap
    out: dict[str, dict[str, Any]] = {}
    recalls: dict[str, np.ndarray] = {}
    for name, (m, record) in rows.items():
        hits = trained_hits if name == trained else model_hits(m, target, max(topk), e.batch_users)
        per_user = per_user_metrics(hits, target.pos_len)
        recalls[name] = per_user["recall"][:, k - 1]
        out[name] = {"trained": name == trained, "best_epoch": record.get("best_epoch"),
                     "valid": record.get("valid", {}), "test": mean_metrics(per_user, topk)}
        if name != trained:
            gain = paired_recall_gain(recalls[name], recalls[trained], b)
            out[name]["vs_trained"] = {"metric": f"recall@{k}", "level": b.level, **gain}
    return out


def _view_report(
    params: Params, model: Recommender, splits: Splits, features: Features, slices: dict,
    fusions: dict[str, dict[str, Any]], out: Path, test_hits: np.ndarray,
) -> dict[str, str]:
    """Weights per view, view ablation, retrained fusions and slices (:mod:`cliper.view_report`);
    ``test_hits``: the trained model's, which the stage ranked (the ablation's first row)."""
    from cliper import view_report

    e = params.evaluate
    data = _train_data(splits)
    settings = {
        "topk": sorted(e.topk),
        "batch_users": e.batch_users,
        "metric_k": _metric_k(params),
        "valid_metric": e.valid_metric,
        "bootstrap": e.bootstrap,
    }
    target = splits.target("test")
    return view_report.write_report(
        model, data, features, target, settings, slices, out / VIEW_REPORT_DIR, out / "plots", fusions,
        test_hits,
    )


def per_user_frame(params: Params, hits: np.ndarray, target: EvalTarget) -> pd.DataFrame:
    """Per test user: id, targets, recall and NDCG at the valid metric's K (``per_user_test.csv``).

    What a paired comparison of two models on the same users needs (:mod:`cliper.uncertainty`).
    """
    k = _metric_k(params)
    per_user = per_user_metrics(hits[:, :k], target.pos_len)
    return pd.DataFrame({"user_id": target.users, "n_targets": target.pos_len,
                         f"recall@{k}": per_user["recall"][:, k - 1],
                         f"ndcg@{k}": per_user["ndcg"][:, k - 1]})


def headline_interval(params: Params, per_user: pd.DataFrame) -> dict[str, Any]:
    """Bootstrap interval over test users of recall and NDCG at the valid metric's K (``test_ci``)."""
    from cliper.uncertainty import bootstrap_interval

    b, k = params.evaluate.bootstrap, _metric_k(params)
    out: dict[str, Any] = {"level": b.level, "n_resamples": b.n_resamples, "n_users": len(per_user)}
    for name in ("recall", "ndcg"):
        col = f"{name}@{k}"
        out[col] = bootstrap_interval(per_user[col].to_numpy(), b.n_resamples, b.level, b.seed)
    r = out[f"recall@{k}"]
    logger.info("test recall@%d %.4f, %d%% interval %.4f-%.4f (bootstrap sd %.1f%% over %d test users)",
                k, r["mean"], round(100 * b.level), r["low"], r["high"], 100 * r["rel_sd"], len(per_user))
    return out


def run(params: Params, root: Path) -> StageResult:
    """Evaluate the trained model and write metrics + plot."""
    e = params.evaluate
    model, splits, meta, features = load_trained(params, root)
    topk = sorted(e.topk)
    test = splits.target("test")
    test_hits = model_hits(model, test, max(topk), e.batch_users)
    results: dict[str, Any] = {
        "valid": evaluate_model(model, splits.target("valid"), topk, e.batch_users),
        "test": metrics_from_hits(test_hits, test.pos_len, topk),
    }
    slices: dict[str, Any] = {}
    for name, mask in slice_filters(params, root, splits).items():
        target = splits.target("test", item_filter=mask)
        if target.n_users:
            slices[name] = {
                **evaluate_model(model, target, topk, e.batch_users),
                "n_users": target.n_users,
                "n_targets": int(target.pos_len.sum()),
            }
    per_user = per_user_frame(params, test_hits, test)
    fusions = {}
    if features is not None:
        fusions = score_compared_fusions(params, root, model, meta, splits, features, test_hits)
    metrics = {
        "backbone": meta["backbone"],
        "fusion": meta.get("fusion"),
        "best_epoch": meta.get("best_epoch"),
        **results,
        "slices": slices,
        "fusions": fusions,
        "test_ci": headline_interval(params, per_user),
    }
    out = root / e.out_dir
    outputs = {"metrics": str(io.write_json(out / METRICS_FILE, metrics))}
    with io.atomic_path(out / PER_USER_FILE) as tmp:
        per_user.to_csv(tmp, index=False, float_format="%.6g")
    outputs["per_user"] = str(out / PER_USER_FILE)
    groups = {
        "valid": results["valid"],
        "test": results["test"],
        **{f"test/{k}": v for k, v in slices.items()},
    }
    outputs["plot"] = str(plots.plot_metrics_at_k(groups, out / METRICS_AT_K_PLOT))
    if features is not None:
        outputs.update(_view_report(params, model, splits, features, slices, fusions, out, test_hits))
    else:  # views/ is a DVC output of the stage: an ID-only backbone says why it has no view analysis
        from cliper.view_report import write_id_only_report

        k = _metric_k(params)
        outputs["view_report"] = write_id_only_report(meta["backbone"], slices, k, out / VIEW_REPORT_DIR)
    flat = {f"test_{k}": v for k, v in results["test"].items()}
    flat.update({f"valid_{e.valid_metric}": results["valid"][e.valid_metric]})
    for name, ci in metrics["test_ci"].items():  # the headline's interval in the stage's metrics table
        if isinstance(ci, dict):
            flat.update({f"test_{name}_ci_low": ci["low"], f"test_{name}_ci_high": ci["high"]})
    if params.tracking.enabled:  # MLflow run + registered model (challenger); link for the flow
        from cliper import tracking

        logged = tracking.log_and_register(params, root, metrics)
        outputs["mlflow"] = str(io.write_json(out / MLFLOW_FILE, logged))
    return StageResult(stage="evaluate", outputs=outputs, metrics=flat)
