"""Train seeds repeated at the chosen grid point: how far one run's test figure moves with its seed.

On the demo one training run's test Recall@20 moves more with its train seed (sd 4.6% of the mean
over six seeds, ``benchmarks/results/selection_noise.md``) than with the machine it runs on, so a
single run's figure is a poor thing to compare across machines. With ``train.repeat_seeds`` the
train stage, after its grid, trains the **chosen** point again once per listed seed (same data,
features, fusion, epochs, patience and valid selection; only ``train.seed`` differs) and reports
each run's test metrics at its best valid epoch. :func:`over_seeds` gives the mean and sample sd of
the test metric over ``train.seed`` and these seeds: the figure to compare with another machine's.

Nothing is chosen with the repeats: the grid point was chosen with ``train.seed``, and the model of
``train.seed`` stays the one saved, evaluated, registered and served. The repeats' checkpoints sit
in ``train.cache_dir`` beside the grid's (the seed is part of each folder's hash), so a killed run
resumes them; their records go to ``<train.reports_dir>/seeds.json``.
"""

from __future__ import annotations

import statistics
from typing import Any

from cliper.config import TrainConfig

SEEDS_FILE = "seeds.json"  # under train.reports_dir: one record per seed, train.seed first


def repeat_seeds(train: TrainConfig) -> list[int]:
    """``train.repeat_seeds``, checked.

    Raises:
        ValueError: a seed listed twice, or ``train.seed`` itself listed (its run is the grid's).
    """
    seeds = [int(s) for s in train.repeat_seeds]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"train.repeat_seeds: {seeds} lists a seed twice")
    if train.seed in seeds:
        raise ValueError(
            f"train.repeat_seeds: {seeds} lists train.seed ({train.seed}), whose run is the grid's own; "
            "list only the other seeds"
        )
    return seeds


def seed_record(seed: int, record: dict[str, Any]) -> dict[str, Any]:
    """One row of ``seeds.json``: the seed and its run's point, best epoch, epochs run, valid and test."""
    return {"seed": seed, **{k: record[k] for k in ("point", "best_epoch", "n_epochs", "valid", "test")}}


def over_seeds(records: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """The test ``metric`` per seed, its mean and its sample sd (None with one seed) over ``records``.

    Args:
        records: rows of :func:`seed_record`, ``train.seed``'s first.
    """
    values = [float(r["test"][metric]) for r in records]
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else None
    return {
        "metric": metric,
        "n_seeds": len(values),
        "test": {str(r["seed"]): v for r, v in zip(records, values, strict=True)},
        "mean": mean,
        "sd": sd,
    }
