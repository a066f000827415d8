"""The view report of the evaluate stage: what each text view contributes (CLIPER's view analysis).

Wu et al. (CLIPER, arXiv 2407.05420) analyse the views by the fusion weights they receive and by
ablations. For a trained multimodal model this module computes:

* **Weight distribution** (``view_weights.csv``, ``plots/view_weights_hist.png``): per view, the
  fusion weights ``a[i, k]`` over items - mean, sd, quartiles, and the share of items for which
  the view gets the largest weight.
* **Inference-time ablation** (``ablation.csv``): the trained model re-scored on test with its text
  feature fused from a subset of views (each view alone; all but one) and, for comparison, with
  the other parameter-free fusions of all views (``mean``, ``sum``, ``attention`` with and without
  ``normalize``). The trained weights stay; only what is derived from the features is rebuilt
  (FREEDOM's frozen item graph, VBPR's text input; a backbone whose scores ignore the text
  feature, like BM3, shows no change). This measures how much the trained ranking depends on
  each view without retraining; the retrained ablation is one experiment per row
  (``dvc exp run -S 'train.views=[title]'``, ``-S train.fusion.name=self_attention``).
  A learnable or ``concat`` fusion is tied to its views and width, so it gets no ablation rows.
  Each row after the first gets its test recall gain over the trained model with a paired
  bootstrap interval over the test users (``evaluate.bootstrap``). The interval covers which test
  users were drawn, not how training went: on the demo a row's gain moves by up to 10 points
  between CPUs' float paths (another trained model), for some rows outside the other path's
  interval, so a per-view effect needs several training seeds before it is read as the view's.
* **Retrained fusions** (``fusions.csv``): with ``train.compare_fusions`` (e.g. ``[mean, concat,
  self_attention]``) the train stage retrains each at the chosen grid point
  (:mod:`cliper.fusion_comparison`); the table puts their best epoch, valid and test metrics
  beside the trained model's, all under the same tuning budget.
* ``view_report.md``: both tables plus the test slices (cold start, missing image) the stage computed.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from cliper import io, plots
from cliper.config import BootstrapConfig, FusionConfig
from cliper.evaluate import EvalTarget, mean_metrics, model_hits, per_user_metrics
from cliper.fusion import Fusion, build_fusion
from cliper.models import Features, InteractionData
from cliper.models.multimodal import MultimodalRecommender

logger = logging.getLogger(__name__)

WEIGHTS_FILE, ABLATION_FILE, REPORT_FILE = "view_weights.csv", "ablation.csv", "view_report.md"
FUSIONS_FILE = "fusions.csv"
# ablation.csv, fusions.csv: a row's test recall gain over the trained model and its paired interval
GAIN, GAIN_LOW, GAIN_HIGH = "recall vs trained", "interval low", "interval high"
GAIN_NOTE = ("The last column is the relative gain over the trained model with a paired bootstrap "
             "interval over the test users: an interval that spans 0 is a difference one run does "
             "not resolve. The interval does not cover training noise (another seed or CPU trains "
             "another model), so read a single row's effect with care: a per-view effect needs several "
             "training seeds (on the demo, `python benchmarks/demo_experiments.py --arms "
             "'freedom+cliper(attention)'` ends with these rows over seeds and catalogs).\n")
HIST_FILE = "view_weights_hist.png"
# Trained tables that hold a copy of the fused text feature: rebuilt from the ablated views.
FEATURE_STATE_KEYS = ("text_table",)
ALT_FUSIONS = ("mean", "sum")  # parameter-free fusions of all views shown beside the trained one


@dataclasses.dataclass(frozen=True)
class Variant:
    """One ablation row: a label, the views fused and the fusion settings."""

    label: str
    views: tuple[str, ...]
    fusion: FusionConfig


def weight_summary(weights: np.ndarray, view_names: tuple[str, ...]) -> pd.DataFrame:
    """Per view: mean, sd, quartiles of ``weights [I, V]`` and the share of items it dominates."""
    top = np.bincount(weights.argmax(1), minlength=weights.shape[1]) / weights.shape[0]
    q = np.quantile(weights, [0.25, 0.5, 0.75], axis=0)
    return pd.DataFrame(
        {
            "view": list(view_names),
            "mean": weights.mean(0),
            "sd": weights.std(0),
            "q25": q[0],
            "median": q[1],
            "q75": q[2],
            "top_share": top,
        }
    )


def variants(view_names: tuple[str, ...], fusion: Fusion) -> list[Variant]:
    """All views as trained; each view alone; all but one; other parameter-free fusions."""
    cfg = fusion.cfg
    rows = [Variant(f"all views ({_describe(cfg)}, trained)", view_names, cfg)]
    if fusion.learnable or fusion.name == "concat":
        return rows
    if len(view_names) > 1:
        rows += [Variant(f"only {v}", (v,), cfg) for v in view_names]
        rows += [Variant(f"without {v}", tuple(w for w in view_names if w != v), cfg) for v in view_names]
    others = [dataclasses.replace(cfg, name=n) for n in ALT_FUSIONS if n != cfg.name]
    others.append(dataclasses.replace(cfg, name="attention", normalize=not cfg.normalize))
    rows += [Variant(f"all views ({_describe(f)})", view_names, f) for f in others if f != cfg]
    return rows


def _describe(cfg: FusionConfig) -> str:
    return cfg.name + (", normalize" if cfg.normalize else "")


def rescored(
    model: MultimodalRecommender, data: InteractionData, features: Features, variant: Variant
) -> MultimodalRecommender:
    """A copy of ``model`` (same trained weights) whose feature-derived parts use ``variant``."""
    idx = [features.view_names.index(v) for v in variant.views]
    sub = Features(features.image, features.text_views[idx], variant.views)
    fusion = build_fusion(variant.fusion, len(idx), features.text_views.shape[2])
    copy = type(model)(data, model.config, features=sub, fusion=fusion)
    state = {k: v for k, v in model.state_dict().items() if k not in FEATURE_STATE_KEYS}
    missing, unexpected = copy.load_state_dict(state, strict=False)
    if unexpected or set(missing) - set(FEATURE_STATE_KEYS):
        raise ValueError(f"view ablation: state mismatch (missing {missing}, unexpected {unexpected})")
    return copy.to(next(model.parameters()).device).eval()


def paired_recall_gain(
    recall: np.ndarray, trained: np.ndarray, bootstrap: BootstrapConfig
) -> dict[str, float]:
    """Relative gain of per-user ``recall`` over the trained model's (the same test users, in the
    same order; one run each) with ``evaluate.bootstrap``'s paired interval: the gain columns of
    the ablation and fusion tables (``gain``, ``low``, ``high``, ``share_positive``)."""
    from cliper.uncertainty import paired_gain_interval

    b = bootstrap
    return paired_gain_interval([recall[None]], [trained[None]], b.n_resamples, b.level, b.seed)


def ablation_table(
    model: MultimodalRecommender,
    data: InteractionData,
    features: Features,
    target: EvalTarget,
    topk: list[int],
    batch_users: int,
    bootstrap: BootstrapConfig | None = None,
    metric_k: int | None = None,
    trained_hits: np.ndarray | None = None,
) -> pd.DataFrame:
    """Test metrics of every :func:`variants` row (the first row is the trained model itself).

    With ``bootstrap``, every later row also gets its recall@``metric_k`` gain over the first
    (``GAIN``, ``GAIN_LOW``, ``GAIN_HIGH``: a paired interval over the same test users).
    ``trained_hits``: the trained model's hits on ``target`` at ``max(topk)``, when the caller has
    ranked it already (the evaluate stage), so the first row does not rank it again.
    """
    k = metric_k if metric_k is not None else max(topk)
    rows: list[dict[str, Any]] = []
    for variant in variants(features.view_names, model.fusion):
        if not rows and trained_hits is not None:
            hits = trained_hits
        else:
            scored = model if not rows else rescored(model, data, features, variant)
            hits = model_hits(scored, target, max(topk), batch_users)
        per_user = per_user_metrics(hits, target.pos_len)
        recall = per_user["recall"][:, k - 1]
        if not rows:  # the trained model: every later row's gain is over it
            trained_recall = recall
        row = {"variant": variant.label, "views": ",".join(variant.views), **mean_metrics(per_user, topk)}
        if bootstrap is not None:
            gain = paired_recall_gain(recall, trained_recall, bootstrap) if rows else {}
            row.update({GAIN: gain.get("gain", np.nan), GAIN_LOW: gain.get("low", np.nan),
                        GAIN_HIGH: gain.get("high", np.nan)})
        rows.append(row)
    return pd.DataFrame(rows)


def _markdown(frame: pd.DataFrame, columns: list[str], digits: int = 4) -> str:
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    cells = frame[columns].to_numpy()
    fmt = [[f"{c:.{digits}f}" if isinstance(c, float) else str(c) for c in row] for row in cells]
    return head + "".join("| " + " | ".join(r) + " |\n" for r in fmt)


def write_report(
    model: MultimodalRecommender,
    data: InteractionData,
    features: Features,
    target: EvalTarget,
    settings: dict[str, Any],
    slices: dict[str, dict[str, float]],
    out_dir: Path,
    plots_dir: Path,
    fusions: dict[str, dict[str, Any]] | None = None,
    trained_hits: np.ndarray | None = None,
) -> dict[str, str]:
    """Write the tables, the histogram and ``view_report.md``; returns the output paths.

    Args:
        settings: ``topk`` (list of K), ``batch_users``, ``metric_k`` (the K shown in the markdown),
            ``valid_metric`` (the selection metric shown for the retrained fusions) and, optionally,
            ``bootstrap`` (a :class:`BootstrapConfig`: the ablation rows' paired intervals).
        fusions: per fusion, ``best_epoch``, ``valid`` and ``test`` metrics and ``trained`` (the
            stage's :func:`cliper.stages.evaluate.score_compared_fusions`); none: no fusion table.
        trained_hits: the trained model's test hits at ``max(settings["topk"])`` if already ranked.
    """
    outputs: dict[str, str] = {}
    lines = [f"# View report: {model.name}, views {', '.join(features.view_names)}\n"]
    k = settings["metric_k"]
    weights = model.view_weights()
    if weights is not None:
        summary = weight_summary(np.asarray(weights, dtype=np.float64), features.view_names)
        outputs["view_weights_summary"] = str(_write_csv(summary, out_dir / WEIGHTS_FILE))
        hist = plots.plot_view_weight_histograms(weights, features.view_names, plots_dir / HIST_FILE)
        outputs["view_weights_hist"] = str(hist)
        lines += ["## Fusion weights over items\n", _markdown(summary, list(summary.columns))]
    else:
        lines.append(f"Fusion '{model.fusion.name}' produces no per-view weights.\n")
    bootstrap = settings.get("bootstrap")
    with torch.no_grad():
        table = ablation_table(model, data, features, target, settings["topk"], settings["batch_users"],
                               bootstrap, k, trained_hits)
    outputs["view_ablation"] = str(_write_csv(table, out_dir / ABLATION_FILE))
    shown = table[["variant", f"recall@{k}", f"ndcg@{k}"]].copy()
    lines.append("## Inference-time ablation (test, trained weights kept)\n")
    if bootstrap is not None:
        shown[_gain_column(k, bootstrap.level)] = table.apply(_gain_cell, axis=1)
        lines += [_markdown(shown, list(shown.columns)), GAIN_NOTE]
    else:
        lines.append(_markdown(shown, list(shown.columns)))
    if fusions:
        frame = fusion_table(fusions, settings["valid_metric"], k)
        outputs["fusions"] = str(_write_csv(frame, out_dir / FUSIONS_FILE))
        level = next((row["vs_trained"]["level"] for row in fusions.values() if "vs_trained" in row), None)
        shown = frame.drop(columns=[GAIN, GAIN_LOW, GAIN_HIGH])
        shown[_gain_column(k, level)] = frame.apply(_gain_cell, axis=1)
        lines += ["## Fusions retrained at the chosen grid point (same epochs, patience, initial ID "
                  "embeddings and random draws as the trained model)\n",
                  _markdown(shown, list(shown.columns)), GAIN_NOTE]
    lines += _slices_section(slices, k)
    outputs["view_report"] = _write_markdown(lines, out_dir)
    return outputs


def fusion_table(fusions: dict[str, dict[str, Any]], valid_metric: str, k: int) -> pd.DataFrame:
    """One row per fusion: best epoch, the valid score it was selected on, test recall/NDCG@k, and
    the test recall gain over the trained model with its paired interval (``vs_trained``; the
    trained row has none)."""
    rows = []
    for name, row in fusions.items():
        gain = row.get("vs_trained") or {}
        rows.append({
            "fusion": name + (" (trained model)" if row.get("trained") else ""),
            "best_epoch": str(row.get("best_epoch")),
            f"valid {valid_metric}": float(row["valid"].get(valid_metric, np.nan)),
            f"test recall@{k}": float(row["test"][f"recall@{k}"]),
            f"test ndcg@{k}": float(row["test"][f"ndcg@{k}"]),
            GAIN: float(gain.get("gain", np.nan)),
            GAIN_LOW: float(gain.get("low", np.nan)),
            GAIN_HIGH: float(gain.get("high", np.nan)),
        })
    return pd.DataFrame(rows)


def _gain_column(k: int, level: float | None) -> str:
    return f"test recall@{k} vs trained" + (f" ({level:.0%} interval)" if level is not None else "")


def _gain_cell(row: pd.Series) -> str:
    """``+1.2% (-3.0% to +5.1%)``, or ``-`` for the trained model."""
    if np.isnan(row[GAIN]):
        return "-"
    return f"{row[GAIN]:+.1%} ({row[GAIN_LOW]:+.1%} to {row[GAIN_HIGH]:+.1%})"


def _write_csv(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with io.atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path


def write_id_only_report(
    backbone: str, slices: dict[str, dict[str, float]], metric_k: int, out_dir: Path
) -> str:
    """``view_report.md`` of an ID-only backbone: no views to weigh or ablate, the slices only.

    The evaluate stage always writes ``views/`` (a DVC output), whatever the backbone.
    """
    lines = [
        f"# View report: {backbone}\n",
        f"{backbone} is an ID-only backbone: it reads no item features, so there are no view weights "
        "and no view ablation. Train a multimodal backbone (vbpr, freedom, bm3) to get them.\n",
    ]
    return _write_markdown(lines + _slices_section(slices, metric_k), out_dir)


def _slices_section(slices: dict[str, dict[str, float]], k: int) -> list[str]:
    """The test-slice table (cold start, missing image) of the report; none without slices."""
    if not slices:
        return []
    frame = pd.DataFrame([{"slice": n, **m} for n, m in slices.items()])
    cols = ["slice", "n_users", "n_targets", f"recall@{k}", f"ndcg@{k}"]
    return ["## Test slices\n", _markdown(frame, cols)]


def _write_markdown(lines: list[str], out_dir: Path) -> str:
    """``<out_dir>/view_report.md``, written atomically; returns its path."""
    with io.atomic_path(out_dir / REPORT_FILE) as tmp:
        Path(tmp).write_text("\n".join(lines), encoding="utf-8")
    return str(out_dir / REPORT_FILE)
