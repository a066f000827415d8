"""`make demo`'s figure on emulated CPUs: one ``dvc repro -f`` per float path, side by side.

A fresh clone on another machine runs other kernels (instruction set) and other float sums
(thread count), so its adapt stage writes another checkpoint and every figure after it moves.
This runs the whole pipeline in a clone under each path of :data:`PATHS` (threads via
``OMP_NUM_THREADS``; instruction sets capped with :data:`demo_experiments.ISA_CAPS`, which
``float_paths.py`` shows reach every op; more threads than this machine's cores stand in for a
larger machine: each op splits its work by the thread count, not the cores; another PyTorch
release, :data:`TORCH_BUILDS`, brings other kernels, oneDNN's convolutions among them: its clone's
``.venv`` holds that torch, which ``run``, ``record`` and ``seeds`` check) and records test
Recall@20, the grid point valid chose, every grid point's valid and test figure, and the clone's
``clip.adapt.epochs``. The report gives each path's change against ``make demo`` here (native,
2 threads: the README's run when the clone has the default params) and the mean and sd over the
paths. ``--out`` keeps another recipe's paths apart (``benchmarks/results/demo_experiments_adapt9/``:
9 adapt epochs).

The clone's ``dvc.lock`` is restored from git after each run; its outputs are left as the run
wrote them (``dvc checkout`` restores the committed ones). Records merge into
``benchmarks/results/demo_float_paths.json`` by path name, so paths can run one at a time.
``seeds``, right after a path's ``run`` in the same clone, retrains at other train seeds on that
path's adapt and compares their mean with the same seeds' mean in ``demo_experiments.json`` under ``--out``.
A run with ``train.repeat_seeds`` records the mean over its seeds too (the headline of ``cliper summary``);
the report then compares those means (``--out benchmarks/results/demo_float_paths_seeds``).

Usage::

    python benchmarks/demo_float_paths.py run --clone /tmp/c1 --path "AVX2 caps, 1 thread"
    python benchmarks/demo_float_paths.py record --clone . --path "native, 2 threads"   # outputs there
    python benchmarks/demo_float_paths.py seeds --clone /tmp/c1 --path "AVX2 caps, 1 thread" --seeds 1000 1001
    python benchmarks/demo_float_paths.py report
    python benchmarks/demo_float_paths.py report --out benchmarks/results/demo_experiments_adapt9 \
        --against benchmarks/results           # + both recipes on the paths they share
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from demo_experiments import ISA_CAPS, cpu_model, head_commit  # noqa: E402
from demo_quality import TARGETS  # noqa: E402
from float_paths import AVX2_CAPS, AVX_CAPS  # noqa: E402

from cliper.config import load_params  # noqa: E402

SSE41_CAPS = dict(zip(ISA_CAPS, ("default", "SSE41", "SSE4_2"), strict=True))  # x86 before AVX (2008-2010)
REFERENCE = "native, 2 threads"  # the README's run: `make demo` here
PATHS: dict[str, tuple[int, dict[str, str]]] = {  # name -> (torch threads, instruction-set caps)
    REFERENCE: (2, {}),
    "native, 1 thread": (1, {}),
    "AVX2 caps, 2 threads": (2, AVX2_CAPS),
    "AVX2 caps, 1 thread": (1, AVX2_CAPS),
    "AVX caps, 2 threads": (2, AVX_CAPS),
    "AVX caps, 1 thread": (1, AVX_CAPS),
    "SSE4.1 caps, 2 threads": (2, SSE41_CAPS),
    "native, 4 threads": (4, {}),  # a 4- and an 8-core machine's thread partitions, on fewer cores
    "native, 8 threads": (8, {}),
    "native, 16 threads": (16, {}),  # e.g. the lent GPU machines' 16 cores, when a run stays on the CPU
    "torch 2.9.1, 2 threads": (2, {}),  # another PyTorch release: oneDNN 3.7.1 instead of 3.12.0
}
# Paths whose clone's venv holds another PyTorch than requirements.lock's (every other path: the
# lock's, torch 2.14.1 since the project's first commit): name -> the version `run` insists on.
TORCH_BUILDS = {"torch 2.9.1, 2 threads": "2.9.1"}
TORCH_INSTALL = {"2.9.1": "pip install torch==2.9.1 torchvision==0.24.1"}  # the matching torchvision
# More threads than cores: MKL would otherwise use at most the cores (its dynamic mode), and idle
# threads sleep rather than spin. Neither changes what a thread computes.
OVERSUBSCRIBED_ENV = {"MKL_DYNAMIC": "FALSE", "OMP_WAIT_POLICY": "PASSIVE"}
METRIC = "recall@20"
GRID_KEY = "mm_image_weight"  # the demo grid's varying param
RESULTS = REPO / "benchmarks" / "results"
RUNS_FILE, REPORT_FILE = "demo_float_paths.json", "demo_float_paths.md"  # under --out
EXPERIMENTS_FILE = "demo_experiments.json"  # the seeds table under --out (benchmarks/results: the README's)
DEMO_ARM = TARGETS[0][0]  # CLIPER, the default: the arm `make demo` trains


def read_run(clone: Path) -> dict[str, Any]:
    """Test figure, valid's choice and the grid of the pipeline outputs in ``clone``."""
    test = json.loads((clone / "reports/evaluate/metrics.json").read_text())["test"][METRIC]
    meta = json.loads((clone / "models/recommender/train_meta.json").read_text())
    grid = [{"point": r["point"].get(GRID_KEY), "valid": r["valid"][METRIC], "test": r["test"][METRIC]}
            for r in meta["grid"]]
    seeds = json.loads((clone / "reports/train/metrics.json").read_text()).get("over_seeds")
    return {"test": test, "chosen": meta["point"].get(GRID_KEY), "grid": grid,
            **({"over_seeds": seeds} if seeds else {})}


def locked_torch() -> str:
    """The torch version ``requirements.lock`` pins."""
    return next(line.split("==")[1] for line in (REPO / "requirements.lock").read_text().splitlines()
                if line.startswith("torch=="))


def clone_torch(clone: Path) -> str:
    """The torch version of ``clone``'s venv, without its build tag (``2.9.1+cu128`` -> ``2.9.1``)."""
    python = clone / ".venv" / "bin" / "python"
    out = subprocess.run([str(python), "-c", "import torch; print(torch.__version__)"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip().split("+")[0]


def check_torch(clone: Path, name: str) -> str:
    """``clone``'s torch version, when it is the one path ``name`` runs on (else exit, saying how to fix)."""
    want, have = TORCH_BUILDS.get(name, locked_torch()), clone_torch(clone)
    if have != want:
        how = TORCH_INSTALL.get(want, f"pip install -r requirements.lock (torch=={want})")
        raise SystemExit(f"path '{name}' runs on torch {want}, but {clone / '.venv'} has torch {have}: "
                         f"in that venv, {how}")
    return have


def path_env(clone: Path, name: str) -> dict[str, str]:
    """The environment of path ``name``: its threads and caps, ``clone``'s venv first on ``PATH``."""
    threads, caps = PATHS[name]
    env = {k: v for k, v in os.environ.items() if k not in ISA_CAPS} | caps
    env["OMP_NUM_THREADS"] = str(threads)
    if threads > (os.cpu_count() or 1):
        env |= OVERSUBSCRIBED_ENV
    env["PATH"] = f"{clone / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
    return env


def run_path(clone: Path, name: str) -> None:
    """``dvc repro -f`` in ``clone`` on path ``name``; its ``dvc.lock`` is left as the run wrote it
    (:func:`restore_lock` after :func:`record`), or restored when the run fails."""
    check_torch(clone, name)
    try:
        subprocess.run(["dvc", "repro", "-f"], cwd=clone, env=path_env(clone, name), check=True)
    except BaseException:
        restore_lock(clone)
        raise


def restore_lock(clone: Path) -> None:
    """``dvc.lock`` of ``clone`` back to its committed bytes."""
    subprocess.run(["git", "checkout", "-q", "dvc.lock"], cwd=clone, check=True)


def outputs_digest(clone: Path) -> str:
    """A digest of every stage output's hash in ``clone``'s ``dvc.lock`` (the dependencies' hashes
    left out: code can change while the outputs stay byte for byte)."""
    lock = yaml.safe_load((clone / "dvc.lock").read_text())
    outs = sorted((stage, out["path"], out.get("md5", "")) for stage, body in lock["stages"].items()
                  for out in body.get("outs", []))
    return hashlib.sha256(json.dumps(outs).encode()).hexdigest()[:16]


def run_seeds(clone: Path, name: str, seeds: list[int]) -> dict[str, float]:
    """Test figure per ``train.seed``: the train and evaluate stages on ``clone``'s features.

    Run right after :func:`run_path` of ``name`` in ``clone`` (its adapt is that path's), in the
    path's environment. The clone's outputs are left as the last seed wrote them.
    """
    check_torch(clone, name)
    env, tests = path_env(clone, name), {}
    for seed in seeds:  # one run per seed: train.repeat_seeds off
        for stage in ("train", "evaluate"):
            subprocess.run(["cliper", "run", stage, "-S", f"train.seed={seed}", "-S",
                            "train.repeat_seeds=[]"], cwd=clone, env=env, check=True)
        tests[str(seed)] = read_run(clone)["test"]
    return tests


def load_runs(out: Path) -> dict[str, dict[str, Any]]:
    """The recorded runs in ``out`` by path name (none yet: empty)."""
    path = out / RUNS_FILE
    return json.loads(path.read_text())["runs"] if path.exists() else {}


def save_runs(out: Path, runs: dict[str, dict[str, Any]]) -> None:
    """Write the runs by path name to ``out`` (the file :func:`load_runs` reads)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / RUNS_FILE).write_text(json.dumps({"runs": runs}, indent=1) + "\n")


def record(clone: Path, name: str, out: Path, commit: str | None = None) -> dict[str, Any]:
    """Merge the run in ``clone`` into ``out/demo_float_paths.json`` under ``name``.

    ``commit``: the commit the outputs came from (default: the clone's ``HEAD``).
    """
    (threads, caps), runs = PATHS[name], load_runs(out)
    epochs = load_params(clone / "params.yaml").clip.adapt.epochs
    runs[name] = {"threads": threads, "caps": caps, "commit": commit or head_commit(clone),
                  "machine": cpu_model(), "torch": check_torch(clone, name), "adapt_epochs": epochs,
                  "outputs_digest": outputs_digest(clone), **read_run(clone)}
    save_runs(out, runs)
    return runs[name]


def record_seeds(name: str, tests: dict[str, float], out: Path) -> dict[str, Any]:
    """Merge ``tests`` (train seed -> test figure) into the recorded run of ``name``."""
    runs = load_runs(out)
    if name not in runs:
        raise SystemExit(f"{out / RUNS_FILE}: no run of path '{name}'; run or record the path first")
    runs[name]["seeds"] = runs[name].get("seeds", {}) | tests
    save_runs(out, runs)
    return runs[name]


def experiments_mean(out: Path, catalog: int, seeds: list[int]) -> float | None:
    """The mean test figure of the table under ``out`` for ``catalog`` (demo.seed), the default arm and
    exactly these train ``seeds`` (those the paths ran: like for like); None unless it holds them all."""
    path = out / EXPERIMENTS_FILE
    if not path.exists():
        return None
    tests = {r["seed"]: r["test"][METRIC] for r in json.loads(path.read_text())["runs"]
             if r["catalog"] == catalog and r["arm"] == DEMO_ARM and r["seed"] in seeds}
    return statistics.mean(tests.values()) if set(tests) == set(seeds) else None


def seeds_table(runs: dict[str, dict[str, Any]], out: Path) -> list[str]:
    """Markdown lines: per path with other train seeds, each seed's test figure (the path's own run
    at ``train.seed`` first), their mean ± sd, and the table's mean over the same seeds (per path:
    paths may have run different seeds)."""
    names = [n for n in PATHS if runs.get(n, {}).get("seeds")]
    if not names:
        return []
    params = load_params(REPO / "params.yaml")  # train.seed: the seed of the path's own run
    lines = ["", "Train seeds per path (the path's run, then `seeds`: the train and evaluate stages on "
             "its adapt), against the mean of the same train seeds of this catalog and arm in the table "
             f"({EXPERIMENTS_FILE}; –: not all of those seeds there).", "",
             f"| path | test {METRIC} per train seed | mean ± sd | the table, same seeds | change |",
             "| --- | --- | --- | --- | --- |"]
    for name in names:
        tests = {str(params.train.seed): runs[name]["test"]} | runs[name]["seeds"]  # the run's own first
        mean, sd = statistics.mean(tests.values()), statistics.stdev(tests.values())
        ref = experiments_mean(out, params.demo.seed, sorted(int(seed) for seed in tests))
        table, change = (f"{ref:.4f}", f"{mean / ref - 1:+.1%}") if ref is not None else ("–", "–")
        lines.append(f"| {name} | {', '.join(f'{k}: {v:.4f}' for k, v in tests.items())} | "
                     f"{mean:.4f} ± {sd:.4f} ({sd / mean:.1%}) | {table} | {change} |")
    return lines


def seed_mean_table(runs: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown lines: per path that ran ``train.repeat_seeds``, the test figure per seed, their mean ±
    sd and the mean's change against :data:`REFERENCE`'s mean; then the spread of the means."""
    names = [n for n in PATHS if "over_seeds" in runs.get(n, {})]
    if REFERENCE not in names:
        return []
    means = {n: {**runs[n], "test": runs[n]["over_seeds"]["mean"]} for n in names}
    s = summary(means)
    lines = ["", f"Mean over the train seeds of each run (`train.repeat_seeds` at the chosen point: what "
             f"`cliper summary` leads with), change against {REFERENCE}'s mean:", "",
             f"| path | test {METRIC} per train seed | mean ± sd | change |", "| --- | --- | --- | --- |"]
    for name in names:
        b = runs[name]["over_seeds"]
        per_seed = ", ".join(f"{k}: {b['test'][k]:.4f}" for k in sorted(b["test"], key=int))
        lines.append(f"| {name} | {per_seed} | {b['mean']:.4f} ± {b['sd']:.4f} | {s['changes'][name]:+.1%} |")
    return lines + ["", f"Over the {s['n']} path{'s' * (s['n'] != 1)}: mean {s['mean']:.4f}, "
                    f"sd {s['sd']:.4f} ({s['rel_sd']:.1%}); the largest change against {REFERENCE}: "
                    f"{s['largest_change']:+.1%}."]


def same_outputs(runs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Path -> the earlier path (in :data:`PATHS` order) whose outputs it wrote byte for byte."""
    first: dict[str, str] = {}
    same: dict[str, str] = {}
    for name in sorted(runs, key=list(PATHS).index):
        digest = runs[name].get("outputs_digest")  # runs recorded before the digest: their own
        if digest is not None and digest in first:
            same[name] = first[digest]
        elif digest is not None:
            first[digest] = name
    return same


def spread(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean and sd of the test figure over the paths, and its range around the mean; a path that
    wrote another's outputs byte for byte is one float path, counted once."""
    copies = same_outputs(runs)
    values = [r["test"] for name, r in runs.items() if name not in copies]
    mean, sd = statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0
    return {"n": len(values), "mean": mean, "sd": sd, "rel_sd": sd / mean,
            "low": min(values) / mean - 1, "high": max(values) / mean - 1, "same_outputs": copies}


def summary(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """:func:`spread` over the paths, and each path's change against :data:`REFERENCE`."""
    ref = runs[REFERENCE]["test"]
    changes = {name: r["test"] / ref - 1 for name, r in runs.items()}
    return {**spread(runs), "reference": ref, "largest_change": max(changes.values(), key=abs),
            "changes": changes}


def adapt_epochs(runs: dict[str, dict[str, Any]]) -> str:
    """The runs' ``clip.adapt.epochs``: one value, or each path's when they differ."""
    values = {name: r.get("adapt_epochs", "not recorded") for name, r in runs.items()}
    if len(set(values.values())) == 1:
        return str(next(iter(values.values())))
    return ", ".join(f"{name}: {v}" for name, v in values.items())


def markdown(runs: dict[str, dict[str, Any]], out: Path = RESULTS) -> str:
    """The table (one row per path, in :data:`PATHS` order), the summary line and the seeds table."""
    s = summary(runs)
    names = [n for n in PATHS if n in runs]
    lines = [
        "# `make demo`'s figure on emulated CPUs and another PyTorch "
        "(`python benchmarks/demo_float_paths.py`)",
        "",
        f"`dvc repro -f` of the demo per float path; test {METRIC}, valid's {GRID_KEY} and each grid",
        f"point's valid / test {METRIC}. Change against `make demo` here ({REFERENCE}).",
        f"Adapt epochs (`clip.adapt.epochs`): {adapt_epochs(runs)}.",
        "",
        f"| path | commit | torch | test {METRIC} | change | chosen | grid (point: valid / test) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    lock_torch = locked_torch()  # the torch of runs recorded before the field
    for name in names:
        r = runs[name]
        grid = ", ".join(f"{g['point']}: {g['valid']:.4f} / {g['test']:.4f}" for g in r["grid"]) or (
            f"not recorded: {r.get('source', 'no grid')}")
        lines.append(f"| {name} | `{r['commit']}` | {r.get('torch', lock_torch)} | {r['test']:.4f} | "
                     f"{s['changes'][name]:+.1%} | {r['chosen']} | {grid} |")
    paths = f"{s['n']} path{'s' * (s['n'] != 1)}"
    copies = "; ".join(f"{name} wrote the outputs of {other} byte for byte (every hash in `dvc.lock`)"
                       for name, other in s["same_outputs"].items())
    lines += ["", f"Over the {paths}{' with outputs of their own' if copies else ''}: mean {s['mean']:.4f}, "
              f"sd {s['sd']:.4f} ({s['rel_sd']:.1%} of the mean); the largest change against the "
              f"{REFERENCE} run is {s['largest_change']:+.1%}." + (f" {copies}." if copies else ""),
              f"Machine: {runs[REFERENCE]['machine']} (caps as named).", *seed_mean_table(runs),
              *seeds_table(runs, out)]
    return "\n".join(lines) + "\n"


def comparison(runs: dict[str, dict[str, Any]], other: dict[str, dict[str, Any]],
               other_dir: Path) -> list[str]:
    """Markdown lines: the paths both ``runs`` and ``other`` (the runs in ``other_dir``) hold, side by
    side, with each set's mean, sd and range around its mean over those paths."""
    names = [n for n in PATHS if n in runs and n in other]  # REFERENCE need not be among them
    if len(names) < 2:
        return []

    def described(rs: dict[str, dict[str, Any]]) -> str:
        s = spread({n: rs[n] for n in names})
        return f"{s['mean']:.4f}, sd {s['sd']:.4f} ({s['rel_sd']:.1%}), {s['low']:+.1%} to {s['high']:+.1%}"

    epochs_here, epochs_there = (adapt_epochs({n: rs[n] for n in names}) for rs in (runs, other))
    lines = ["", f"Against `{other_dir}/{RUNS_FILE}` on the {len(names)} paths both hold (adapt epochs: "
             f"here {epochs_here}, there {epochs_there}):", "",
             f"| path | test {METRIC} here | chosen | there | chosen |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {n} | {runs[n]['test']:.4f} | {runs[n]['chosen']} | {other[n]['test']:.4f} | "
              f"{other[n]['chosen']} |" for n in names]
    return lines + ["", f"Mean, sd and range around the mean over those paths: here {described(runs)}; "
                    f"there {described(other)}."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("run", "record", "seeds", "report"))
    parser.add_argument("--clone", type=Path, default=REPO, help="project clone with its .venv")
    parser.add_argument("--path", choices=list(PATHS), help="float path (run, record, seeds)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--commit", help="record: the commit of outputs copied out of their clone")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds: the train.seed values to run")
    parser.add_argument("--against", type=Path,
                        help="report: another --out folder (another recipe), compared on the paths both hold")
    args = parser.parse_args()
    if args.against and not (args.against / RUNS_FILE).exists():
        parser.error(f"--against {args.against}: no {RUNS_FILE} there (a folder that run or record wrote)")
    if args.action != "report":
        if args.path is None:
            parser.error(f"{args.action} needs --path")
        if args.action == "seeds":
            if not args.seeds:
                parser.error("seeds needs --seeds")
            if args.path not in load_runs(args.out):  # before the training, not after it
                parser.error(f"no run of path '{args.path}' in {args.out / RUNS_FILE}: run the path first")
            tests = run_seeds(args.clone.resolve(), args.path, args.seeds)
            print(json.dumps(record_seeds(args.path, tests, args.out), indent=1))
        else:
            if args.action == "run":
                run_path(args.clone.resolve(), args.path)
            try:
                print(json.dumps(record(args.clone.resolve(), args.path, args.out, args.commit), indent=1))
            finally:
                if args.action == "run":
                    restore_lock(args.clone.resolve())
    runs = load_runs(args.out)
    if REFERENCE in runs:
        table = markdown(runs, args.out)
        if args.against and (lines := comparison(runs, load_runs(args.against), args.against)):
            table += "\n".join(lines) + "\n"
        (args.out / REPORT_FILE).write_text(table)
        print(table)


if __name__ == "__main__":
    main()
