"""The view report's ablation rows over training runs (catalogs x seeds), not one run's.

The evaluate stage's view report rescores one trained model with views left out
(``<evaluate.out_dir>/views/ablation.csv``); its intervals cover the test users only, and another
seed or float path trains another model that can move a row by more than that interval. Here each
row's test gain over its own run's trained model is taken in every run of an arm and summarised:
mean ± sd over the runs, the runs below the trained model, and a t interval over the runs, which
covers training noise (seeds) and the catalogs' draws as well as the test users.

Used by ``benchmarks/demo_experiments.py``: it records every run's rows (:func:`read_ablation`)
and adds :func:`ablation_markdown` and :func:`ablation_plot` to its report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from cliper import plots
from cliper.stages.evaluate import VIEW_REPORT_DIR
from cliper.view_report import ABLATION_FILE

TRAINED_MARK = "trained"  # the ablation table's first row, e.g. "all views (attention, trained)"
RUNS_LEVEL = 0.95  # the t interval over runs
PLOT_FILE = "demo_experiments_ablation.png"
PLOT_ROW_INCHES, PLOT_WIDTH_INCHES = 0.38, 7.5
PLOT_CATALOG_SPREAD = 0.15  # catalogs' dots drawn this far (in rows) above and below their row


def read_ablation(evaluate_dir: Path, metric: str) -> list[list[Any]]:
    """``[[variant, test metric], ...]`` of a run's ablation table in its order, trained model first.

    A list of pairs, not a dict: the benchmark's JSON sorts dict keys. [] without a table (an
    ID-only model writes none).
    """
    path = evaluate_dir / VIEW_REPORT_DIR / ABLATION_FILE
    if not path.exists():
        return []
    table = pd.read_csv(path)
    if metric not in table.columns:
        raise SystemExit(f"{path}: no column {metric!r} (columns: {', '.join(table.columns)}); "
                         "rerun the evaluate stage with this metric's K in evaluate.topk")
    if table.empty or TRAINED_MARK not in str(table["variant"].iloc[0]):
        raise SystemExit(f"{path}: the first row must be the trained model (its variant names "
                         f"{TRAINED_MARK!r}); got {table['variant'].iloc[0] if len(table) else 'no rows'!r}")
    return [[str(v), float(x)] for v, x in zip(table["variant"], table[metric], strict=True)]


def ablation_gains(records: list[dict[str, Any]], arm: str) -> pd.DataFrame:
    """Run x variant: each row's relative gain over the same run's trained model.

    Index ``(catalog, seed)``; the trained row itself is left out. Runs without an ablation table
    of more than one row are skipped; a variant missing from a run is NaN for that run.
    """
    rows: dict[tuple[Any, Any], dict[str, float]] = {}
    for r in records:
        table = r.get("ablation") or []
        if r["arm"] != arm or len(table) < 2:
            continue
        (name, trained), *others = table
        if TRAINED_MARK not in name:
            raise SystemExit(f"{r.get('experiment', r['arm'])}: its ablation rows must start with the "
                             f"trained model (a variant naming {TRAINED_MARK!r}), not {name!r}")
        rows[(r["catalog"], r["seed"])] = {variant: value / trained - 1.0 for variant, value in others}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    if not frame.empty:
        frame.index = pd.MultiIndex.from_tuples(frame.index, names=["catalog", "seed"])
    return frame


def runs_interval(gains: np.ndarray, level: float = RUNS_LEVEL) -> tuple[float, float]:
    """A t interval for the mean gain over runs (each run one draw of seed, catalog and float path)."""
    if len(gains) < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(gains) - 1) * gains.std(ddof=1) / np.sqrt(len(gains))
    return float(gains.mean() - half), float(gains.mean() + half)


def summarise_gains(gains: pd.DataFrame) -> pd.DataFrame:
    """Per variant: mean and sd of the gain per catalog and over every run, runs below, t interval."""
    out: dict[str, dict[str, Any]] = {}
    for variant in gains.columns:
        col = gains[variant].dropna()
        low, high = runs_interval(col.to_numpy())
        row: dict[str, Any] = {f"catalog {c}": float(g.mean())
                               for c, g in col.groupby(level="catalog", sort=False)}
        row |= {"mean": float(col.mean()), "sd": float(col.std(ddof=1)) if len(col) > 1 else float("nan"),
                "runs": len(col), "runs below trained": int((col < 0).sum()), "low": low, "high": high}
        out[variant] = row
    return pd.DataFrame.from_dict(out, orient="index")


def ablation_markdown(records: list[dict[str, Any]], arm: str, metric: str) -> list[str]:
    """Markdown: the arm's ablation rows over its runs, or [] when no run recorded a table."""
    summary = summarise_gains(ablation_gains(records, arm))
    if summary.empty:
        return []
    catalogs = [c for c in summary.columns if c.startswith("catalog ")]
    header = ["variant", *[f"{c}, mean" for c in catalogs], "mean ± sd over runs",
              f"{RUNS_LEVEL:.0%} t interval over runs", "runs below trained"]
    lines = [f"View ablation of {arm} over its runs (test {metric} gain over each run's own trained "
             "model; a run is one catalog x seed, so the spread covers training noise):", "",
             "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for variant, row in summary.iterrows():
        below = f"{int(row['runs below trained'])}/{int(row['runs'])}"
        spread = "" if np.isnan(row["sd"]) else f" ± {row['sd']:.1%}"  # one run: no spread
        interval = "-" if np.isnan(row["low"]) else f"{row['low']:+.1%} to {row['high']:+.1%}"
        cells = [str(variant), *[f"{row[c]:+.1%}" for c in catalogs], f"{row['mean']:+.1%}{spread}", interval,
                 below]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def ablation_plot(records: list[dict[str, Any]], arm: str, metric: str, path: Path) -> Path | None:
    """Dot plot: every run's gain per variant (one colour per catalog), the mean and its t interval.

    None (nothing written) when no run of ``arm`` recorded an ablation table.
    """
    gains = ablation_gains(records, arm)
    if gains.empty:
        return None
    summary = summarise_gains(gains)
    rows = np.arange(len(gains.columns))[::-1]  # the table's first row at the top
    fig = Figure(figsize=(PLOT_WIDTH_INCHES, 1.2 + PLOT_ROW_INCHES * len(rows)))
    ax = fig.subplots()
    catalogs = list(dict.fromkeys(gains.index.get_level_values("catalog")))
    offsets = np.linspace(-PLOT_CATALOG_SPREAD, PLOT_CATALOG_SPREAD, len(catalogs))
    for offset, catalog in zip(offsets, catalogs, strict=True):
        runs = gains.xs(catalog, level="catalog")
        ax.plot(100 * runs.to_numpy().T, np.repeat(rows[:, None] + offset, len(runs), axis=1), "o",
                alpha=0.6, markersize=4, color=f"C{catalogs.index(catalog)}")
        ax.plot([], [], "o", color=f"C{catalogs.index(catalog)}", label=f"catalog {catalog}, one run")
    ax.errorbar(100 * summary["mean"], rows, xerr=100 * np.abs(summary[["low", "high"]].to_numpy().T
                                                             - summary["mean"].to_numpy()),
                fmt="|", color="black", capsize=3, markersize=12, label=f"mean, {RUNS_LEVEL:.0%} t interval")
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_yticks(rows, list(gains.columns))
    ax.set_xlabel(f"test {metric} vs the run's trained model (%)")
    ax.set_title(f"View ablation of {arm} over {len(gains)} runs")
    ax.legend(loc="lower left", fontsize="small")
    return plots.save_png(fig, path)
