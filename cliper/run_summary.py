"""One screen on a finished run: ``cliper summary``, the last thing ``make demo`` prints.

Reads what the train and evaluate stages wrote and recomputes nothing: the test metric (the
``evaluate.valid_metric``'s name) with its bootstrap interval over test users, how the grid
point was chosen, and for a multimodal model what the view report says about the views (each
view's mean fusion weight, and the test metric with that view alone against all views, from the
same trained model with its paired interval) and about the retrained fusions. It ends with the
files and the MLflow run to look at next. With ``train.repeat_seeds`` the headline is the test
metric's mean and sd over the train seeds retrained at the chosen point (:mod:`cliper.seed_repeats`),
the figure to compare across machines; the rest is from the trained model (``train.seed``), and
its intervals cover test users, not training seeds.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from cliper import io
from cliper.config import Params
from cliper.errors import CliperError
from cliper.stages.evaluate import METRICS_AT_K_PLOT, METRICS_FILE, MLFLOW_FILE, VIEW_REPORT_DIR
from cliper.stages.train import HISTORY_PLOT, META_FILE
from cliper.stages.train import METRICS_FILE as TRAIN_METRICS_FILE
from cliper.view_report import (
    ABLATION_FILE,
    FUSIONS_FILE,
    GAIN,
    GAIN_HIGH,
    GAIN_LOW,
    HIST_FILE,
    REPORT_FILE,
    WEIGHTS_FILE,
)

RERUN_HINT = "run `dvc repro` (or `cliper run train` and `cliper run evaluate`) first"
# the over-seeds companion of the view report, shown when the project has it (the cliper repository)
BENCHMARK_REPORT = "benchmarks/results/demo_experiments.md"


@dataclasses.dataclass(frozen=True)
class ViewLine:
    """One text view: mean fusion weight (None for a fusion without weights) and the metric alone."""

    view: str
    mean_weight: float | None
    alone: float | None  # test metric of the trained model fed this view only
    gain: float | None  # alone / all views - 1, with its paired interval
    low: float | None
    high: float | None


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """What :func:`summary_lines` prints (``cliper summary --json`` writes it as it is)."""

    backbone: str
    fusion: str | None
    metric: str
    test: float
    interval: tuple[float, float] | None
    level: float | None
    n_test_users: int | None
    valid: float
    best_epoch: int
    point: dict[str, Any]
    grid_size: int
    grid: list[dict[str, Any]]  # per grid point: its params and its best valid metric
    views: list[ViewLine]
    fusions: list[dict[str, Any]]  # retrained fusions: name, test metric, gain, low, high
    files: dict[str, str]  # label -> path, the ones that exist
    mlflow: dict[str, str]
    over_seeds: dict[str, Any] | None = None  # train metrics' over_seeds block (train.repeat_seeds)
    seed: int | None = None  # the trained model's train seed (train_meta.json)


def read_summary(params: Params, root: Path) -> RunSummary:
    """Collect the summary of the run whose outputs lie under ``root`` (paths from ``params``).

    Raises:
        CliperError: an output is missing or lacks a field; the message names the file and the fix.
    """
    evaluate_dir, metric = root / params.evaluate.out_dir, params.evaluate.valid_metric
    metrics = _read_json(evaluate_dir / METRICS_FILE)
    meta_path = root / params.train.out_dir / META_FILE
    meta = _read_json(meta_path)
    grid = grid_valid(meta, metric, meta_path)
    source = evaluate_dir / METRICS_FILE
    ci = metrics.get("test_ci", {})
    bounds, where = ci.get(metric), f"test_ci.{metric}"  # test_ci: recall and ndcg only
    interval = None if bounds is None else (_field(bounds, "low", source, where),
                                            _field(bounds, "high", source, where))
    views_dir = evaluate_dir / VIEW_REPORT_DIR
    train_metrics = root / params.train.reports_dir / TRAIN_METRICS_FILE
    return RunSummary(
        backbone=str(_field(metrics, "backbone", source)),
        fusion=metrics.get("fusion"),
        metric=metric,
        test=float(_field(_field(metrics, "test", source), metric, source, "test")),
        interval=interval,
        level=ci.get("level") if interval else None,
        n_test_users=ci.get("n_users") if interval else None,
        valid=float(_field(_field(metrics, "valid", source), metric, source, "valid")),
        best_epoch=int(_field(metrics, "best_epoch", source)),
        point=dict(meta.get("point", {})),
        grid_size=len(grid) or 1,
        grid=grid,
        views=view_lines(views_dir, metric),
        fusions=fusion_lines(views_dir / FUSIONS_FILE, metric),
        files=_files(root, params),
        mlflow=_read_json(evaluate_dir / MLFLOW_FILE) if (evaluate_dir / MLFLOW_FILE).exists() else {},
        over_seeds=_read_json(train_metrics).get("over_seeds") if train_metrics.exists() else None,
        seed=meta.get("seed"),
    )


def grid_valid(meta: dict[str, Any], metric: str, source: Path) -> list[dict[str, Any]]:
    """Each grid point of ``train_meta.json`` with its best valid ``metric`` (none without a grid)."""
    return [
        {"point": dict(_field(entry, "point", source, "grid")),
         "valid": float(_field(_field(entry, "valid", source, "grid"), metric, source, "grid.valid"))}
        for entry in meta.get("grid", [])
    ]  # fmt: skip


def grid_line(s: RunSummary) -> str | None:
    """How close valid's choice was: every point's valid metric and the runner-up's gap (None: no grid)."""
    if len(s.grid) < 2:
        return None
    names = sorted({k for g in s.grid for k in g["point"]})
    keys = [k for k in names if len({repr(g["point"].get(k)) for g in s.grid}) > 1] or names
    cells, others = [], []
    for g in s.grid:
        chosen = g["point"] == s.point
        name = " ".join(f"{g['point'].get(k)}" for k in keys)
        cells.append(f"{name} {g['valid']:.4f}" + (" (chosen)" if chosen else ""))
        others += [] if chosen else [g["valid"]]
    gap = s.valid - max(others)
    behind = (f"the runner-up is {gap:.4f} ({gap / s.valid:.1%}) behind" if gap > 0 and s.valid
              else "the runner-up ties it")
    return f"  valid {s.metric} per grid point ({', '.join(keys)}): {', '.join(cells)}; {behind}"


def view_lines(views_dir: Path, metric: str) -> list[ViewLine]:
    """Per view: its mean weight (``view_weights.csv``) and its row alone in ``ablation.csv``.

    The ablation's first row is the trained model (all its views); an "alone" row is any later
    row fed exactly one view. An ID-only run has neither file: no lines.
    """
    ablation_path, weights_path = views_dir / ABLATION_FILE, views_dir / WEIGHTS_FILE
    if not ablation_path.exists():
        return []
    ablation = _read_csv(ablation_path, ("variant", "views", metric, GAIN, GAIN_LOW, GAIN_HIGH))
    trained_views = str(ablation["views"].iloc[0]).split(",")
    alone = {row["views"]: row for _, row in ablation.iloc[1:].iterrows() if "," not in str(row["views"])}
    weights: dict[str, float] = {}
    if weights_path.exists():
        table = _read_csv(weights_path, ("view", "mean"))
        weights = dict(zip(table["view"], table["mean"].astype(float), strict=True))
    lines = []
    for view in trained_views:
        row = alone.get(view)
        lines.append(ViewLine(
            view, weights.get(view),
            *(None,) * 4 if row is None else (_num(row[metric]), _num(row[GAIN]), _num(row[GAIN_LOW]),
                                              _num(row[GAIN_HIGH])),
        ))  # fmt: skip
    return lines


def fusion_lines(path: Path, metric: str) -> list[dict[str, Any]]:
    """The retrained fusions of ``fusions.csv`` (the first row is the trained model, left out)."""
    if not path.exists():
        return []
    column = f"test {metric}"
    table = _read_csv(path, ("fusion", column, GAIN, GAIN_LOW, GAIN_HIGH))
    return [
        {"fusion": row["fusion"], "test": _num(row[column]), "gain": _num(row[GAIN]),
         "low": _num(row[GAIN_LOW]), "high": _num(row[GAIN_HIGH])}
        for _, row in table.iloc[1:].iterrows()
    ]  # fmt: skip


def summary_lines(s: RunSummary) -> list[str]:
    """The summary as plain text lines (``cliper summary``)."""
    model = s.backbone + (f" + {s.fusion} fusion of {len(s.views)} text views" if s.views else "")
    headline = f"test {s.metric} {s.test:.4f}"
    if s.interval is not None:
        users = "test users" if s.n_test_users is None else f"{s.n_test_users} test users"
        level = "" if s.level is None else f"{s.level:.0%} "
        headline += f" ({level}interval {s.interval[0]:.4f} to {s.interval[1]:.4f}, bootstrap over {users})"
    seeds = seeds_line(s)
    lines = [f"{model}: {seeds}", f"  the trained model (train seed {s.seed}): {headline}"] if seeds \
        else [f"{model}: {headline}"]
    point = ", ".join(f"{k}={v}" for k, v in sorted(s.point.items())) or "the defaults"
    lines += [f"  chosen on valid ({s.metric} {s.valid:.4f} at epoch {s.best_epoch}) "
              f"among {s.grid_size} grid point(s): {point}"]
    lines += [line for line in (grid_line(s),) if line]
    if s.views:
        width = max(len(v.view) for v in s.views + [ViewLine("view", None, None, None, None, None)])
        change = f"its test {_gain_metric(s.metric)}" if _gain_metric(s.metric) != s.metric else "its"
        lines += ["", f"Views: mean fusion weight; test {s.metric} of the trained model fed that view "
                      f"alone, and {change} change against all views:",
                  f"  {'view':<{width}}  weight   alone   vs all views"]
        for v in s.views:
            weight = "     -" if v.mean_weight is None else f"{v.mean_weight:6.3f}"
            alone = "" if v.alone is None else f"  {v.alone:.4f}  {_gain(v.gain, v.low, v.high)}"
            lines.append(f"  {v.view:<{width}}  {weight}{alone}")
    if s.fusions:
        cells = [f"{f['fusion']} {_gain(f['gain'], f['low'], f['high'])}" for f in s.fusions]
        lines += ["", f"Fusions retrained at the chosen point, test {_gain_metric(s.metric)} against the "
                      "trained model:",
                  "  " + "; ".join(cells)]
    lines += ["", "Mean ± sd: over train seeds at the chosen point; the rest: the trained model, its "
                  "intervals over test users." if seeds else
              "One training seed: the intervals cover test users, not training seeds."]
    if "over seeds" in s.files:
        lines[-1] += f" Over seeds and catalogs: {s.files['over seeds']}"
    lines += ["", "Look next:"] + [f"  {label:<14} {path}" for label, path in s.files.items()
                                   if label != "over seeds"]
    if s.mlflow:
        run, ui = s.mlflow.get("run_url", ""), s.mlflow.get("ui_command", "")
        lines.append(f"  {'MLflow run':<14} {run}  (UI: {ui})")
        if "model_uri" in s.mlflow:
            lines.append(f"  {'registered':<14} {s.mlflow['model_uri']}, as the challenger "
                         "(`cliper promote --dry-run` compares it with the champion)")
    return lines


def summary_json(s: RunSummary) -> str:
    """The summary as JSON (NaN and missing values as null)."""
    return json.dumps(dataclasses.asdict(s), indent=2, default=str)


def seeds_line(s: RunSummary) -> str | None:
    """``test <metric> mean ± sd over N train seeds (seed value, ...)``; None without repeated seeds."""
    block = s.over_seeds
    if not block or block.get("metric") != s.metric or block.get("sd") is None:
        return None
    per_seed = ", ".join(f"{seed} {value:.4f}" for seed, value in  # JSON keys come back sorted as text
                         sorted(block["test"].items(), key=lambda kv: int(kv[0])))
    return (f"test {s.metric} {block['mean']:.4f} ± {block['sd']:.4f}, mean ± sd over "
            f"{len(block['test'])} train seeds ({per_seed})")


def _gain_metric(metric: str) -> str:
    """The metric of the view report's gain columns: recall at the valid metric's K."""
    return f"recall@{metric.rsplit('@', 1)[-1]}"


def _gain(gain: float | None, low: float | None, high: float | None) -> str:
    if gain is None:
        return "-"
    interval = "" if low is None or high is None else f" ({low:+.1%} to {high:+.1%})"
    return f"{gain:+.1%}{interval}"


def _files(root: Path, params: Params) -> dict[str, str]:
    evaluate_dir, train_reports = root / params.evaluate.out_dir, root / params.train.reports_dir
    candidates = {
        "view report": evaluate_dir / VIEW_REPORT_DIR / REPORT_FILE,
        "view weights": evaluate_dir / "plots" / HIST_FILE,
        "metrics at K": evaluate_dir / METRICS_AT_K_PLOT,
        "training curve": train_reports / HISTORY_PLOT,
        "metrics": evaluate_dir / METRICS_FILE,
        "over seeds": root / BENCHMARK_REPORT,
    }
    return {label: str(path) for label, path in candidates.items() if path.exists()}


def _num(value: Any) -> float | None:
    number = float(value)
    return None if math.isnan(number) else number


def _field(mapping: dict[str, Any], key: str, source: Path, within: str | None = None) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        where = f"'{within}.{key}'" if within else f"'{key}'"
        raise CliperError(f"{source}: no {where} field; it was written by another version or cut short: "
                          f"{RERUN_HINT}")
    return mapping[key]


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise CliperError(f"{path} not found: this project has no finished run yet; {RERUN_HINT}")
    data = io.read_json(path)  # names the file when it is not valid JSON
    if not isinstance(data, dict):
        raise CliperError(f"{path}: expected a JSON object, got {type(data).__name__}; {RERUN_HINT}")
    return data


def _read_csv(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    table = pd.read_csv(path)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise CliperError(f"{path}: missing column(s) {missing}; expected {list(columns)}; {RERUN_HINT}")
    return table
