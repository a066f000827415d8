"""PNG plots of training and evaluation (matplotlib, no display needed).

Figures are built with :class:`matplotlib.figure.Figure` directly (no ``pyplot`` global state,
no backend selection at import) and written atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cliper import io

DPI = 110
HIST_BINS = 20  # bins of the view-weight histograms over [0, 1]


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at :data:`DPI`, atomically (a killed run leaves the former file)."""
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    return Path(path)


def plot_history(
    history: Sequence[Mapping[str, Any]], path: str | Path, valid_key: str = "valid_recall@20"
) -> Path:
    """Train loss and valid metric per epoch, two panels side by side."""
    fig = Figure(figsize=(9, 3.2))
    ax_loss, ax_valid = fig.subplots(1, 2)
    epochs = [h["epoch"] for h in history]
    ax_loss.plot(epochs, [h["loss"] for h in history], color="tab:blue")
    ax_loss.set(xlabel="epoch", ylabel="mean batch loss", title="train loss")
    evaluated = [h for h in history if valid_key in h]
    ax_valid.plot(
        [h["epoch"] for h in evaluated], [h[valid_key] for h in evaluated], color="tab:green", marker="."
    )
    if evaluated:
        best = max(evaluated, key=lambda h: h[valid_key])
        ax_valid.axvline(best["epoch"], color="grey", linestyle="--", linewidth=1)
    ax_valid.set(xlabel="epoch", ylabel=valid_key.removeprefix("valid_"), title="valid (best epoch dashed)")
    return save_png(fig, path)


def plot_view_weights(weights: pd.DataFrame, path: str | Path) -> Path:
    """Box plot over items of the fusion weight per view (``weights``: item_id, view, weight)."""
    fig = Figure(figsize=(7, 3.2))
    ax = fig.subplots()
    views = list(dict.fromkeys(weights["view"]))
    data = [weights.loc[weights["view"] == v, "weight"].to_numpy() for v in views]
    ax.boxplot(data, tick_labels=views, showfliers=False)
    ax.set(ylabel="fusion weight a[i, k]", title="view weights over items")
    return save_png(fig, path)


def plot_metrics_at_k(
    metrics: Mapping[str, Mapping[str, float]],
    path: str | Path,
    names: Sequence[str] = ("recall", "ndcg", "precision", "map"),
) -> Path:
    """One panel per metric: value vs K for each group (e.g. valid, test, slices)."""
    fig = Figure(figsize=(3.2 * len(names), 3.0))
    axes = np.atleast_1d(fig.subplots(1, len(names)))
    for ax, name in zip(axes, names, strict=True):
        for group, values in metrics.items():
            ks = sorted(int(k.split("@")[1]) for k in values if k.startswith(f"{name}@"))
            if ks:
                ax.plot(ks, [values[f"{name}@{k}"] for k in ks], marker="o", label=group)
        ax.set(xlabel="K", title=f"{name}@K")
    axes[0].legend(fontsize="small")
    return save_png(fig, path)


def plot_view_weight_histograms(weights: np.ndarray, view_names: Sequence[str], path: str | Path) -> Path:
    """One histogram per view of the fusion weights ``weights [I, V]`` over items (shared axes)."""
    n = len(view_names)
    fig = Figure(figsize=(2.6 * n, 2.6))
    axes = np.atleast_1d(fig.subplots(1, n, sharex=True, sharey=True))
    bins = np.linspace(0.0, 1.0, HIST_BINS + 1)
    for k, (ax, name) in enumerate(zip(axes, view_names, strict=True)):
        ax.hist(np.asarray(weights)[:, k], bins=bins, color="tab:blue")
        ax.axvline(1.0 / n, color="grey", linestyle="--", linewidth=1)
        ax.set(title=name, xlabel="weight a[i, k]")
    axes[0].set_ylabel("items (dashed: uniform 1/V)")
    return save_png(fig, path)
