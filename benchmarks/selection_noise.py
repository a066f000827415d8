"""How much of one demo run's test figure is selection noise? Per-epoch valid and test curves.

``make demo``'s figure moves by a few percent between CPUs and between train seeds
(``benchmarks/results/demo_float_paths.md``). Part of that move is *selection*: the train stage
keeps the epoch with the best valid Recall@20 of each grid point, then the point with the best
such figure, and valid's points and epochs lie within a few thousandths of each other. This
benchmark trains every grid point of a project whose features exist (``--root``, after
``dvc repro extract``) for several train seeds, exactly as the train stage does (same builds,
seeds and early stopping, one process), and also scores **test** after every epoch. Test is
recorded only to be analysed here: no rule below looks at it to choose.

``analyse`` then replays selection rules on the recorded curves and reports, per rule, the mean
and sd over seeds of the figure that rule would have reported:

* ``best epoch`` (the train stage's rule): each point's best valid epoch, the best point;
* ``smoothed w``: valid averaged over the last ``w`` evaluations (a trailing window, so a trainer
  can apply it as it goes); each point's best smoothed epoch, the point with the best smoothed
  valid. The weights reported are that epoch's;
* ``test window w`` (a diagnostic, not a rule a trainer can apply): the mean test figure over the
  ``w`` epochs ending at the ``best epoch`` rule's epoch, i.e. the figure without the epoch-to-epoch
  jitter of one set of weights;
* ``point ...`` (a diagnostic): one grid point's figure at its best valid epoch, every seed, i.e.
  the figure without the choice between points.

The report ends with each rule's spread pooled over the catalogs (root mean square of sd/mean).

Usage::

    python benchmarks/selection_noise.py run --root . --seeds 999 1000 1001 --out runs_c2024.json
    python benchmarks/selection_noise.py analyse runs_c2024.json runs_c7.json \
        --out benchmarks/results/selection_noise
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from demo_experiments import cpu_model, head_commit  # noqa: E402

from cliper import io  # noqa: E402
from cliper.config import load_params  # noqa: E402
from cliper.grid import grid_search  # noqa: E402
from cliper.stages.train import _build_fn, grid_context  # noqa: E402
from cliper.train import Trainer  # noqa: E402

WINDOWS = (5, 10, 20, 40)  # evaluations averaged by the smoothed rules and the diagnostic


def record_seed(params: Any, ctx: Any, seed: int, metric: str) -> list[dict[str, Any]]:
    """Per grid point: valid and test ``metric`` after every epoch, and the best valid epoch.

    The points train with train seed ``seed`` in the train stage's own grid search
    (:func:`cliper.grid.grid_search`, without its checkpoint cache); test is only recorded.
    """
    valid: list[list[float]] = [[] for _ in ctx.inputs.points]
    test: list[list[float]] = [[] for _ in ctx.inputs.points]

    def score(index: int, trainer: Trainer) -> None:
        valid[index].append(trainer.state.history[-1][f"valid_{metric}"])
        test[index].append(trainer.evaluate(ctx.test)[metric])

    d = ctx.inputs.data
    settings = replace(ctx.settings, seed=seed, progress=False)
    result = grid_search(ctx.inputs.points, _build_fn(params, ctx.inputs), d.train_users, d.train_items,
                         d.n_items, ctx.valid, ctx.test, settings, on_epoch_end=score)
    return [{"point": r["point"], "valid": v, "test": t, "best_epoch": r["best_epoch"]}
            for r, v, t in zip(result.points, valid, test, strict=True)]


def run(root: Path, seeds: list[int], out: Path) -> None:
    """Record every grid point's curves for each seed into ``out`` (resumes: finished seeds kept)."""
    torch.set_num_threads(1)  # as one train.workers process on the demo's 2 cores
    params = load_params(root / "params.yaml")
    done = json.loads(out.read_text()) if out.exists() else {"runs": []}
    recipe = {"catalog": params.demo.seed, "adapt_epochs": params.clip.adapt.epochs}
    for key, value in recipe.items():  # resuming must not mix two projects' curves in one file
        if key in done and done[key] != value:
            sys.exit(f"{out} holds curves of {key} {done[key]}, but {root / 'params.yaml'} has {value}; "
                     "give another --out")
    ctx = grid_context(params, root)
    metric = ctx.settings.valid_metric
    if ctx.settings.eval_every != 1:
        sys.exit(f"train.eval_every is {ctx.settings.eval_every}; this benchmark needs 1 (a valid per epoch)")
    commit = head_commit(root, check=False)
    done.update({"root": str(root), "metric": metric, "commit": commit, "cpu": cpu_model(), **recipe})
    for seed in seeds:
        if any(r["seed"] == seed for r in done["runs"]):
            continue
        points = record_seed(params, ctx, seed, metric)
        done["runs"].append({"seed": seed, "points": points})
        io.write_json(out, done)
        print(f"catalog {params.demo.seed} seed {seed}: "
              + ", ".join(f"{p['point']}: best epoch {p['best_epoch']}" for p in points), flush=True)


def read_runs(path: Path) -> dict[str, Any]:
    """A file ``run`` wrote; gzipped (``.gz``, as the committed curves are) or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        return json.load(handle)


def trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at each position (fewer at the start).

    ``window`` 1 returns the values themselves: a running sum's rounding would break the exact
    ties the train stage resolves in favour of the first point.
    """
    if window == 1:
        return values.astype(np.float64, copy=True)
    sums = np.cumsum(np.concatenate([[0.0], values]))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def choose(points: list[dict[str, Any]], window: int) -> tuple[int, int]:
    """(point index, epoch) the rule picks: best trailing-mean valid per point, then across points.

    ``window`` 1 is the train stage's rule (first best epoch, first best point on ties).
    """
    best: tuple[float, int, int] | None = None
    for index, p in enumerate(points):
        smooth = trailing_mean(np.asarray(p["valid"], dtype=np.float64), window)
        epoch = int(np.argmax(smooth))
        if best is None or smooth[epoch] > best[0]:
            best = (float(smooth[epoch]), index, epoch)
    assert best is not None
    return best[1], best[2]


def figures(run_: dict[str, Any]) -> dict[str, float]:
    """The test figure each rule reports for one (catalog, seed) run."""
    points = run_["points"]
    out: dict[str, float] = {}
    index, epoch = choose(points, 1)
    out["best epoch"] = points[index]["test"][epoch]
    for w in WINDOWS:
        i, e = choose(points, w)
        out[f"smoothed {w}"] = points[i]["test"][e]
    for w in WINDOWS:
        test = np.asarray(points[index]["test"][max(epoch - w + 1, 0): epoch + 1])
        out[f"test window {w} (diagnostic)"] = float(test.mean())
    varying = [k for k in points[0]["point"] if len({json.dumps(p["point"][k]) for p in points}) > 1]
    for p in points:
        label = ", ".join(f"{k}={p['point'][k]}" for k in varying)
        out[f"point {label} (diagnostic)"] = p["test"][int(np.argmax(p["valid"]))]
    return out


def analyse(files: list[Path], out: Path) -> None:
    """Per catalog and rule: mean, sd and sd/mean of the figure over seeds; JSON + markdown."""
    result: dict[str, Any] = {"catalogs": {}}
    lines = ["# Selection noise in one demo run (`python benchmarks/selection_noise.py`)", "",
             "Test Recall@20 each selection rule would report, over train seeds (the same recorded "
             "curves for every rule). Rules: the module docstring.", ""]
    for path in files:
        data = read_runs(path)
        for r in data["runs"]:  # the recording reproduces the train stage's own choice
            index, epoch = choose(r["points"], 1)
            assert epoch == r["points"][index]["best_epoch"], (path, r["seed"])
        per_seed = {r["seed"]: figures(r) for r in data["runs"]}
        rules = list(next(iter(per_seed.values())))
        table = {}
        for rule in rules:
            values = np.array([f[rule] for f in per_seed.values()])
            table[rule] = {"mean": float(values.mean()), "sd": float(values.std(ddof=1)),
                           "rel_sd": float(values.std(ddof=1) / values.mean()),
                           "per_seed": {str(s): f[rule] for s, f in per_seed.items()}}
        result["catalogs"][str(data["catalog"])] = table
        lines += [f"## catalog {data['catalog']} ({len(per_seed)} seeds: {sorted(per_seed)})", "",
                  f"Adapt epochs {data.get('adapt_epochs', '?')}, commit `{data.get('commit', '?')}` "
                  f"(params.yaml as run), CPU {data.get('cpu', '?')}; each run in one process at 1 thread.",
                  "",
                  "| rule | mean | sd (% of mean) | per seed |", "| --- | --- | --- | --- |"]
        lines += [f"| {rule} | {t['mean']:.4f} | {t['sd']:.4f} ({100 * t['rel_sd']:.1f}%) | "
                  + ", ".join(f"{v:.4f}" for v in t["per_seed"].values()) + " |"
                  for rule, t in table.items()]
        lines.append("")
    tables = list(result["catalogs"].values())
    shared = [rule for rule in tables[0] if all(rule in t for t in tables)]
    result["pooled_rel_sd"] = {
        rule: float(np.sqrt(np.mean([t[rule]["rel_sd"] ** 2 for t in tables]))) for rule in shared
    }
    lines += ["## pooled over the catalogs (root mean square of sd/mean)", "", "| rule | sd (% of mean) |",
              "| --- | --- |"]
    lines += [f"| {rule} | {100 * v:.1f}% |" for rule, v in result["pooled_rel_sd"].items()]
    lines.append("")
    out.parent.mkdir(parents=True, exist_ok=True)
    io.write_json(out.with_suffix(".json"), result)
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="record per-epoch valid and test curves of every grid point")
    r.add_argument("--root", type=Path, required=True, help="project whose features exist")
    r.add_argument("--seeds", type=int, nargs="+", required=True, help="train seeds")
    r.add_argument("--out", type=Path, required=True, help="JSON of the curves (resumed when present)")
    a = sub.add_parser("analyse", help="replay the selection rules on recorded curves")
    a.add_argument("files", type=Path, nargs="+", help="JSON files written by run")
    a.add_argument("--out", type=Path, required=True, help="report path without suffix")
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args.root.resolve(), args.seeds, args.out)
    else:
        analyse(args.files, args.out)


if __name__ == "__main__":
    main()
