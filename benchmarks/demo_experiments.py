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
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from ablation_runs import PLOT_FILE as ABLATION_PLOT  # noqa: E402
from ablation_runs import ablation_markdown, ablation_plot, read_ablation  # noqa: E402
from demo_quality import (  # noqa: E402
    ARMS,
    FUSION_FORMS,
    GRIDS,
    METRIC,
    TARGETS,
    markdown,
    set_overrides,
    summarise,
    with_grid,
)

from cliper import io  # noqa: E402
from cliper.config import load_params  # noqa: E402
from cliper.uncertainty import paired_gain_interval  # noqa: E402

PARAMS_FILE = "params.yaml"
RESTORED = (PARAMS_FILE, "dvc.lock")
PER_USER_FILE = "demo_experiments_per_user.npz"  # experiment -> per-test-user METRIC (paired comparisons)
PAIRED_RESAMPLES, PAIRED_LEVEL, PAIRED_SEED = 2000, 0.95, 0


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


# environment variables that cap the SIMD instruction set of PyTorch's kernels (ATen), oneDNN and MKL:
# with them a CPU runs the float paths of an older one (benchmarks/float_paths.py)
ISA_CAPS: tuple[str, ...] = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def cpu_model() -> str:
    """The CPU model (``/proc/cpuinfo``, else ``platform.processor()``): runs differ by machine.

    Instruction-set caps in the environment (:data:`ISA_CAPS`) are appended: they change the bytes too.
    """
    model = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        model = names[0].split(":", 1)[1].strip() if names else model
    caps = [f"{name}={os.environ[name]}" for name in ISA_CAPS if os.environ.get(name)]
    return f"{model} ({', '.join(caps)})" if caps else model


def head_commit(root: Path, check: bool = True) -> str | None:
    """The short hash of ``root``'s ``HEAD``; with ``check=False``, None where git gives none."""
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, check=check,
                          capture_output=True, text=True)
    return done.stdout.strip() or None


def run_experiment(root: Path, name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """One ``dvc exp run`` from the committed params; returns its metrics and MLflow run.

    Only ``params.yaml`` is restored between experiments. ``dvc.lock`` stays as the previous
    experiment left it: for a stage whose deps and params match the lock, DVC restores the outputs
    the lock names. If those are the committed outputs of another machine, they are not in the
    local cache and DVC reruns the stage (every experiment of the default catalog adapted again).
    """
    subprocess.run(["git", "checkout", "HEAD", "--", PARAMS_FILE], cwd=root, check=True)
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
    users = pd.read_csv(root / params.evaluate.out_dir / "per_user_test.csv")
    return {
        "per_user": users[["user_id", METRIC]],  # kept out of the JSON (PER_USER_FILE)
        "experiment": name,
        "cpu": cpu_model(),
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
        "ablation": read_ablation(root / params.evaluate.out_dir, METRIC),  # the view report's rows
    }


def fusion_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The retrained fusions of every run (train.compare_fusions) as records of their own arm."""
    return [{**r, "arm": f"{r['arm']} -> {name} (retrained)", "test": row["test"], "fusions": {}}
            for r in records for name, row in (r.get("fusions") or {}).items() if not row.get("trained")]


def paired_gains(records: list[dict[str, Any]], per_user: dict[str, np.ndarray]) -> list[str]:
    """Markdown rows: each target's gain with a paired bootstrap interval over test users.

    Runs of the same catalog share their test users, so both arms are scored on one draw of users
    per resample; seeds are averaged, catalogs pooled (users resampled within each catalog).
    """
    rows = ["| target | gain | 95% interval (paired over test users) | resamples with gain > 0 |",
            "| --- | --- | --- | --- |"]
    for better, worse, required in TARGETS:
        groups: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
        for catalog in dict.fromkeys(r["catalog"] for r in records):
            for arm, side in ((better, groups[0]), (worse, groups[1])):
                runs = sorted((r for r in records if r["arm"] == arm and r["catalog"] == catalog),
                              key=lambda r: r["seed"])
                if runs and all(r["experiment"] in per_user for r in runs):
                    side.append(np.stack([per_user[r["experiment"]] for r in runs]))
        if not groups[0] or len(groups[0]) != len(groups[1]):
            continue
        g = paired_gain_interval(*groups, PAIRED_RESAMPLES, PAIRED_LEVEL, PAIRED_SEED)
        rows.append(f"| {better} vs {worse} (required {required:+.0%}) | {g['gain']:+.1%} | "
                    f"{g['low']:+.1%} to {g['high']:+.1%} | {g['share_positive']:.0%} |")
    return rows if len(rows) > 2 else []


def resolution(rows: list[dict[str, Any]]) -> str:
    """One line: the bootstrap sd over test users of a single run's figure (what one run can resolve)."""
    rel = [r["test_ci"][METRIC]["rel_sd"] for r in rows if r.get("test_ci") and METRIC in r["test_ci"]]
    if not rel:
        return ""
    users = sorted({r["test_ci"]["n_users"] for r in rows if r.get("test_ci")})
    return (f"Test-set resolution: the bootstrap sd over test users ({', '.join(map(str, users))} users) "
            f"of one run's test {METRIC} is {100 * np.mean(rel):.1f}% of its value on average "
            f"({100 * min(rel):.1f}-{100 * max(rel):.1f}% over {len(rel)} runs).\n")


def restore(root: Path) -> None:
    """Committed params, lock and outputs back in the workspace."""
    subprocess.run(["git", "checkout", "HEAD", "--", *RESTORED], cwd=root, check=True)
    subprocess.run(["dvc", "checkout", "--force", "--quiet"], cwd=root, check=False)


def extra_overrides(records: list[dict[str, Any]]) -> str:
    """The params each run set beyond its arm's own definition (``--set``), as one text.

    One text when every arm's runs agree; else per arm, so that a merged report (e.g. one arm's
    runs carried over from another benchmark) says which runs had which.
    """
    arms = ARMS | FUSION_FORMS
    per_arm: dict[str, set[str]] = {}
    for r in records:
        if r["arm"] not in arms:  # a retrained fusion's row: its model's own run says it
            continue
        own = with_grid(arms[r["arm"]])
        extra = {k: v for k, v in r.get("overrides", {}).items() if own.get(k) != v}
        text = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(extra.items()))
        per_arm.setdefault(r["arm"], set()).add(text or "none")
    texts = {arm: " | ".join(sorted(found)) for arm, found in per_arm.items()}
    if len(set(texts.values())) <= 1:
        return next(iter(texts.values()), "none")
    return "; ".join(f"{arm}: {text}" for arm, text in texts.items())


def report(records: list[dict[str, Any]], arms: list[str], catalogs: list[int], seeds: list[int],
           per_user: dict[str, np.ndarray] | None = None) -> str:
    """Per-catalog tables, then the pooled one (catalog x seed as the replicate)."""
    parts = ["# Demo quality as DVC experiments", "",
             f"`benchmarks/demo_experiments.py`: catalogs (demo.seed) {catalogs} x train seeds {seeds}, "
             f"one `dvc exp run` each; grid {json.dumps(GRIDS)} chosen on valid.", ""]
    base_arms = set(arms)
    records = records + fusion_records(records)
    arms = arms + [a for a in dict.fromkeys(r["arm"] for r in records) if a not in base_arms]
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
            "overrides": extra_overrides(rows),
        }
        body = markdown(summary, meta).split("\n", 2)[2]  # drop the single-run title
        title = f"catalog demo.seed={catalog}" if catalog is not None else "pooled (catalog x seed)"
        trained = [r for r in rows if r["arm"] in base_arms]  # runs of their own, not retrained fusions
        cpus = sorted({r.get("cpu") or "not recorded" for r in trained})
        parts += [f"## {title}", f"CPU: {'; '.join(cpus)}.\n", resolution(trained), body]
        paired = paired_gains(trained, per_user or {})
        if paired:
            heading = "Paired comparison (the same test users for both arms; seeds averaged):"
            parts += [heading, "", *paired, ""]
    parts += ablation_markdown(records, next(iter(ARMS)), METRIC)  # CLIPER's own runs (fusions renamed)
    return "\n".join(parts)


def merge(folders: list[Path], out: Path, arms: list[str]) -> None:
    """One report from several runs' ``--out`` folders (their JSON runs and per-user arrays)."""
    records: list[dict[str, Any]] = []
    per_user: dict[str, np.ndarray] = {}
    for folder in folders:
        records += io.read_json(folder / "demo_experiments.json")["runs"]
        if (folder / PER_USER_FILE).exists():
            per_user |= dict(np.load(folder / PER_USER_FILE))
    catalogs = list(dict.fromkeys(r["catalog"] for r in records))
    seeds = list(dict.fromkeys(r["seed"] for r in records))
    arms = [a for a in arms if any(r["arm"] == a for r in records)]  # an arm stopped before its first run
    io.write_json(out / "demo_experiments.json", {"runs": records, "catalogs": catalogs, "seeds": seeds,
                                                  "grids": GRIDS, "merged_from": [str(f) for f in folders]})
    np.savez_compressed(out / PER_USER_FILE, **per_user)
    write_report(out, records, arms, catalogs, seeds, per_user)


def write_report(out: Path, records: list[dict[str, Any]], arms: list[str], catalogs: list[int],
                 seeds: list[int], per_user: dict[str, np.ndarray]) -> None:
    """``demo_experiments.md`` and, when CLIPER's runs carry ablation rows, its plot beside it."""
    text = report(records, arms, catalogs, seeds, per_user)
    if ablation_plot(records, next(iter(ARMS)), METRIC, out / ABLATION_PLOT):
        text += f"\n![the view ablation over runs]({ABLATION_PLOT})\n"
    io.write_text(out / "demo_experiments.md", text)
    print(text)


def main() -> None:
    """Run every experiment, write JSON + markdown, restore the workspace."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalogs", type=int, nargs="+", default=[2024, 7], help="demo.seed values")
    parser.add_argument("--seeds", type=int, nargs="+", default=[999, 1000, 1001], help="train.seed values")
    parser.add_argument("--root", type=Path, default=REPO, help="project checkout to run in")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--keep", action="store_true", help="leave the last experiment in the workspace")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a params override for every experiment, value parsed as YAML "
                             "(train.patience=50)")
    parser.add_argument("--merge", type=Path, nargs="+", default=None, metavar="DIR",
                        help="run nothing: combine the results in these --out folders (e.g. one per catalog, "
                             "run in parallel clones) into one report in --out")
    every_arm = list(ARMS | FUSION_FORMS)
    parser.add_argument("--arms", nargs="+", choices=every_arm, default=every_arm, metavar="ARM",
                        help=f"run only these arms (default: all of {', '.join(map(repr, every_arm))})")
    parser.add_argument("--resume", action="store_true",
                        help="keep the runs already in demo_experiments.json (an interrupted run)")
    args = parser.parse_args()
    common = set_overrides(args.overrides)
    arms = {name: {**with_grid(o), **common} for name, o in (ARMS | FUSION_FORMS).items()
            if name in args.arms}
    if args.merge:  # every arm the folders hold, in the usual order
        merge(args.merge, args.out, every_arm)
        return
    args.out.mkdir(parents=True, exist_ok=True)  # before the first run: its results are written at once
    out_json = args.out / "demo_experiments.json"
    resumed = args.resume and out_json.exists()
    records: list[dict[str, Any]] = io.read_json(out_json)["runs"] if resumed else []
    users_file = args.out / PER_USER_FILE
    per_user = dict(np.load(users_file)) if resumed and users_file.exists() else {}
    done = {(r["arm"], r["catalog"], r["seed"]) for r in records}
    try:
        for catalog, (name, overrides), seed in itertools.product(args.catalogs, arms.items(), args.seeds):
            if (name, catalog, seed) in done:
                continue
            exp = slug(f"{name}-c{catalog}-s{seed}")
            fusions = {} if name == next(iter(ARMS)) else {"train.compare_fusions": []}  # CLIPER's arm only
            # one train seed per experiment: the seeds are the benchmark's own axis, not train.repeat_seeds
            run = {**overrides, **fusions, "demo.seed": catalog, "train.seed": seed, "train.repeat_seeds": []}
            rec = run_experiment(args.root, exp, run)
            users = rec.pop("per_user")
            check = per_user.setdefault(f"users-c{catalog}", users["user_id"].to_numpy())
            if not np.array_equal(check, users["user_id"].to_numpy()):
                raise SystemExit(f"{exp}: its test users differ from the catalog's other runs "
                                 "(split changed?)")
            per_user[exp] = users[METRIC].to_numpy(np.float32)
            np.savez_compressed(users_file, **per_user)
            records.append({"arm": name, "catalog": catalog, "seed": seed, "overrides": overrides, **rec})
            print(f"{exp}: test {METRIC} {rec['test'][METRIC]:.4f} ({rec['seconds']:.0f} s)", flush=True)
            io.write_json(out_json, {"runs": records, "load": os.getloadavg()})  # partial results
    finally:
        if not args.keep:
            restore(args.root)
    shown = [a for a in every_arm if any(r["arm"] == a for r in records)]  # resumed runs of other arms too
    io.write_json(out_json, {"runs": records, "catalogs": args.catalogs, "seeds": args.seeds,
                             "grids": GRIDS, "load_after": os.getloadavg()})
    write_report(args.out, records, shown, args.catalogs, args.seeds, per_user)


if __name__ == "__main__":
    main()
