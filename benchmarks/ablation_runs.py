"""The view report's ablation rows over training runs (catalogs x seeds), not one run's.

The evaluate stage's view report rescores one trained model with views left out
(``<evaluate.out_dir>/views/ablation.csv``); its intervals cover the test users only, and another
seed or float path trains another model that can move a row by more than that interval. Here each
row's test gain over its own run's trained model is taken in every run of an arm and summarised:
mean ± sd over the runs, the runs below the trained model, and a t interval over the runs, which
covers training noise (seeds) and the catalogs' draws as well as the test users.

Used by ``benchmarks/demo_experiments.py``: it records every run's rows (:func:`read_ablation`)
and adds :func:`ablation_markdown` to its report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from cliper.stages.evaluate import VIEW_REPORT_DIR
from cliper.view_report import ABLATION_FILE

TRAINED_MARK = "trained"  # the ablation table's first row, e.g. "all views (attention, trained)"
RUNS_LEVEL = 0.95  # the t interval over runs


def read_ablation(evaluate_dir: Path, metric: str) -> list[list[Any]]:
    """``[[variant, test metric], ...]`` of a run's ablation table in its order, trained model first.

    A list of pairs, not a dict: the benchmark's JSON sorts dict keys. [] without a table (an
    ID-only model writes none; a one-view model's has its trained row only).
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
        cells = [str(variant), *[f"{row[c]:+.1%}" for c in catalogs], f"{row['mean']:+.1%} ± {row['sd']:.1%}",
                 f"{row['low']:+.1%} to {row['high']:+.1%}", below]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]
