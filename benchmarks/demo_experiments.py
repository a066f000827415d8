"""The demo-quality benchmark as DVC experiments: every (catalog, arm, seed) is one ``dvc exp run``.

Each run is the real pipeline (``dvc exp run``: demo_data ... evaluate), so every arm is a
tracked DVC experiment (``dvc exp show``) and an MLflow run (the evaluate stage logs and
registers it). Arms, grids and targets are those of ``benchmarks/demo_quality.py``: the same
4-point grid per backbone, chosen on valid, the same epochs and patience for all. Catalogs
differ by ``demo.seed`` (a new synthetic catalog, so a new adapt + extract); stages whose deps
and params did not change are restored from DVC's run cache, so each catalog adapts once.

The project is left as it was found: ``params.yaml`` and ``dvc.lock`` are restored from git
and ``dvc checkout`` puts the committed outputs back (``--keep`` skips that).

Results: ``benchmarks/results/demo_experiments.{json,md}``; per catalog and pooled over all
catalogs x seeds: mean ± sd of test Recall@20, the target chain and the sd check.

Usage::

    python benchmarks/demo_experiments.py                         # 2 catalogs x 4 arms x 3 seeds
    python benchmarks/demo_experiments.py --catalogs 2024 --seeds 999
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import numpy as np  # noqa: E402
from demo_quality import ARMS, FUSION_FORMS, GRIDS, METRIC, markdown, summarise, with_grid  # noqa: E402

from cliper import io  # noqa: E402
from cliper.config import load_params  # noqa: E402

RESTORED = ("params.yaml", "dvc.lock")


def hydra_value(value: Any) -> str:
    """A params value in Hydra's override grammar, which ``dvc exp run -S`` parses (dict keys unquoted)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {hydra_value(v)}" for key, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(hydra_value(v) for v in value) + "]"
    return json.dumps(value)


def leaves(overrides: dict[str, Any]) -> dict[str, Any]:
    """Dict values flattened to dotted keys (Hydra merges a dict value and refuses new keys in it)."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if isinstance(value, dict) and value:
            out |= leaves({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def exp_args(overrides: dict[str, Any]) -> list[str]:
    """``-S ++key=value`` for every leaf (``++``: set it, whether params.yaml has the key or not)."""
    pairs = leaves(overrides).items()
    return [arg for key, value in pairs for arg in ("-S", f"++{key}={hydra_value(value)}")]


def slug(text: str) -> str:
    """A DVC experiment name: letters, digits and dashes."""
    out = "".join(c if c.isalnum() else "-" for c in text.lower())
    return "-".join(part for part in out.split("-") if part)


def run_experiment(root: Path, name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """One ``dvc exp run`` from the committed params; returns its metrics and MLflow run."""
    subprocess.run(["git", "checkout", "HEAD", "--", *RESTORED], cwd=root, check=True)
    # a rerun replaces an experiment of the same name; unchanged stages come from DVC's run cache
    subprocess.run(["dvc", "exp", "remove", name], cwd=root, capture_output=True, check=False)
    cmd = ["dvc", "exp", "run", "-n", name, *exp_args(overrides)]
    started, wall = time.perf_counter(), time.time()
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    params = load_params(root / "params.yaml")
    evaluate = io.read_json(root / params.evaluate.out_dir / "metrics.json")
    train = io.read_json(root / params.train.reports_dir / "metrics.json")
    mlflow = root / params.evaluate.out_dir / "mlflow.json"
    fresh = mlflow.exists() and mlflow.stat().st_mtime >= wall
    adapt = io.read_json(root / params.clip.adapt.report_dir / "metrics.json")
    return {
        "experiment": name,
        "seconds": time.perf_counter() - started,
        "best_epoch": train["best_epoch"],
        "grid_size": train.get("grid_size", 1),
        "valid": evaluate["valid"],
        "test": evaluate["test"],
        # a stage DVC restored from its run cache logs no new MLflow run: its run is the earlier one
        "mlflow_run_id": io.read_json(mlflow)["run_id"] if fresh else None,
        "restored_from_run_cache": not fresh,
        "adapt_i2t_r10": adapt["after"].get("i2t_recall@10"),
        "test_ci": evaluate.get("test_ci"),  # bootstrap over test users (evaluate.bootstrap)
        "fusions": evaluate.get("fusions") or {},  # train.compare_fusions, retrained at the chosen point
    }


def fusion_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The retrained fusions of every run (train.compare_fusions) as records of their own arm."""
    return [{**r, "arm": f"{r['arm']} -> {name} (retrained)", "test": row["test"], "fusions": {}}
            for r in records for name, row in (r.get("fusions") or {}).items() if not row.get("trained")]


def resolution(rows: list[dict[str, Any]]) -> str:
    """One line: the bootstrap sd over test users of a single run's figure (what one run can resolve)."""
    rel = [r["test_ci"][METRIC]["rel_sd"] for r in rows if r.get("test_ci") and METRIC in r["test_ci"]]
    if not rel:
        return ""
    users = sorted({r["test_ci"]["n_users"] for r in rows if r.get("test_ci")})
    return (f"Test-set resolution: the bootstrap sd over test users ({', '.join(map(str, users))} users) of one "
            f"run's test {METRIC} is {100 * np.mean(rel):.1f}% of its value on average "
            f"({100 * min(rel):.1f}-{100 * max(rel):.1f}% over {len(rel)} runs).\n")


def restore(root: Path) -> None:
    """Committed params, lock and outputs back in the workspace."""
    subprocess.run(["git", "checkout", "HEAD", "--", *RESTORED], cwd=root, check=True)
    subprocess.run(["dvc", "checkout", "--force", "--quiet"], cwd=root, check=False)


def report(records: list[dict[str, Any]], arms: list[str], catalogs: list[int], seeds: list[int]) -> str:
    """Per-catalog tables, then the pooled one (catalog x seed as the replicate)."""
    parts = ["# Demo quality as DVC experiments", "",
             f"`benchmarks/demo_experiments.py`: catalogs (demo.seed) {catalogs} x train seeds {seeds}, "
             f"one `dvc exp run` each; grid {json.dumps(GRIDS)} chosen on valid.", ""]
    records = records + fusion_records(records)
    arms = arms + [a for a in dict.fromkeys(r["arm"] for r in records) if a not in arms]
    for catalog in catalogs + [None]:
        rows = [r for r in records if catalog is None or r["catalog"] == catalog]
        # a replicate is (catalog, seed); summarise pairs arms by the "seed" key
        pooled = [{**r, "seed": f"{r['catalog']}/{r['seed']}"} for r in rows]
        summary = summarise(pooled, arms)
        meta = {
            "seeds": list(dict.fromkeys(r["seed"] for r in pooled)),  # run order, as the per-seed column
            "catalog": f"demo.seed={catalog}" if catalog is not None else f"{len(catalogs)} catalogs pooled",
            "features": "per experiment",
            "adapt_i2t_r10": ", ".join(sorted({f"{r['adapt_i2t_r10']:.3f}" for r in rows})),
            "adapt_chance_r10": 0.05,
            "tuning": "grid chosen on valid",
        }
        body = markdown(summary, meta).split("\n", 2)[2]  # drop the single-run title
        title = f"catalog demo.seed={catalog}" if catalog is not None else "pooled (catalog x seed)"
        parts += [f"## {title}", resolution([r for r in rows if "(retrained)" not in r["arm"]]), body]
    return "\n".join(parts)


def main() -> None:
    """Run every experiment, write JSON + markdown, restore the workspace."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalogs", type=int, nargs="+", default=[2024, 7], help="demo.seed values")
    parser.add_argument("--seeds", type=int, nargs="+", default=[999, 1000, 1001], help="train.seed values")
    parser.add_argument("--root", type=Path, default=REPO, help="project checkout to run in")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--keep", action="store_true", help="leave the last experiment in the workspace")
    parser.add_argument("--resume", action="store_true",
                        help="keep the runs already in demo_experiments.json (an interrupted run)")
    args = parser.parse_args()
    arms = {name: with_grid(o) for name, o in (ARMS | FUSION_FORMS).items()}
    out_json = args.out / "demo_experiments.json"
    resumed = args.resume and out_json.exists()
    records: list[dict[str, Any]] = io.read_json(out_json)["runs"] if resumed else []
    done = {(r["arm"], r["catalog"], r["seed"]) for r in records}
    try:
        for catalog, (name, overrides), seed in itertools.product(args.catalogs, arms.items(), args.seeds):
            if (name, catalog, seed) in done:
                continue
            exp = slug(f"{name}-c{catalog}-s{seed}")
            fusions = {} if name == next(iter(arms)) else {"train.compare_fusions": []}  # CLIPER's arm only
            rec = run_experiment(args.root, exp, {**overrides, **fusions, "demo.seed": catalog, "train.seed": seed})
            records.append({"arm": name, "catalog": catalog, "seed": seed, "overrides": overrides, **rec})
            print(f"{exp}: test {METRIC} {rec['test'][METRIC]:.4f} ({rec['seconds']:.0f} s)", flush=True)
            io.write_json(out_json, {"runs": records, "load": os.getloadavg()})  # partial results
    finally:
        if not args.keep:
            restore(args.root)
    text = report(records, list(arms), args.catalogs, args.seeds)
    io.write_json(out_json, {"runs": records, "catalogs": args.catalogs, "seeds": args.seeds,
                             "grids": GRIDS, "load_after": os.getloadavg()})
    io.write_text(args.out / "demo_experiments.md", text)
    print(text)


if __name__ == "__main__":
    main()
