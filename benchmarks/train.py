"""Training/evaluation speed on real Baby, cliper beside MMRec in one run: ratios with spread.

For each backbone (FREEDOM, LightGCN, BPR, VBPR, BM3) and each round, two fresh processes run
one after the other on the same machine: ``benchmarks/speed_cliper.py`` (cliper) and the MMRec
reference ``../shared/reference/mmrec_run.py`` (a separate process with this venv's python; it is
never imported). Both read ``baby.inter`` (19,445 users x 7,050 items, the MMRec split), get
seeded random 768-d image and text features (cliper: five 768-d text views through the CLIPER
attention fusion), the same model config values (cliper's defaults, passed to MMRec with
``--set``), batch 2048, Adam lr 1e-3, evaluation batch 4096 users, and the same torch threads.
Each side times the model constructor (adjacency and kNN graphs included), then per epoch one
training epoch and one full-ranking valid evaluation. Peak RSS is each whole process's (os.wait4).

The order of the two sides swaps every round (cliper first, then MMRec first, ...), and each
round gives one ratio cliper / MMRec per figure; the report gives the median and the range over
rounds, the load average before and after each process, and the busiest other processes.
Results: ``benchmarks/results/train_speed.json`` and ``.md``.

Usage::

    python benchmarks/train.py --rounds 2 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from real_baby import DEFAULT_INTER  # noqa: E402
from speed_cliper import FEATURE_DIM, SEED  # noqa: E402
from speed_report import FIGURES, markdown  # noqa: E402

from cliper import io  # noqa: E402
from cliper.models import resolve_config  # noqa: E402
from cliper.train import TrainSettings  # noqa: E402

MMREC_RUNNER = REPO.parent / "shared" / "reference" / "mmrec_run.py"
MMREC_NAMES = {"freedom": "FREEDOM", "lightgcn": "LightGCN", "bpr": "BPR", "vbpr": "VBPR", "bm3": "BM3"}
DEFAULT_EPOCHS = {"freedom": 2, "lightgcn": 2, "bpr": 1, "vbpr": 1, "bm3": 1}
KIB = 1024
TOP_PROCESSES = 8


def mmrec_overrides(name: str) -> list[str]:
    """``--set`` arguments giving MMRec cliper's model config and trainer values."""
    s = TrainSettings()
    values = {
        **resolve_config(name),
        "learning_rate": s.learning_rate,
        "train_batch_size": s.batch_size,
        "eval_batch_size": s.batch_users,
        "weight_decay": s.weight_decay,
    }
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={json.dumps(value)}")]


def side_command(side: str, name: str, inter: Path, epochs: int, threads: int) -> list[str]:
    """The command line of one side."""
    if side == "cliper":
        script = REPO / "benchmarks" / "speed_cliper.py"
        return [sys.executable, str(script), "--model", name, "--inter", str(inter), "--epochs", str(epochs),
                "--threads", str(threads)]  # fmt: skip
    return [sys.executable, str(MMREC_RUNNER), "--model", MMREC_NAMES[name], "--inter", str(inter),
            "--epochs", str(epochs), "--threads", str(threads), "--feat-dim", str(FEATURE_DIM),
            "--seed", str(SEED), *mmrec_overrides(name)]  # fmt: skip


def run_side(cmd: list[str]) -> dict:
    """Run one side; its JSON line plus the process's own peak RSS (os.wait4), wall time and load."""
    load_before, started = os.getloadavg(), time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[1]} failed ({proc.returncode}): {stderr[-2000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result.update(
        wall_s=wall,
        peak_rss_mb=usage.ru_maxrss / KIB,
        load_before=list(load_before),
        load_after=list(os.getloadavg()),
    )
    return result


def figures(result: dict) -> dict[str, float]:
    """The four compared figures of one side's run."""
    return {
        "epoch_s": statistics.median(result["epoch_seconds"]),
        "eval_s": statistics.median(result["eval_seconds"]),
        "build_s": result["build_seconds"],
        "peak_rss_mb": result["peak_rss_mb"],
    }


def summarise(runs: list[dict]) -> dict[str, dict]:
    """Per model and figure: each side's median over rounds and the ratio's median/min/max."""
    out: dict[str, dict] = {}
    for name in dict.fromkeys(r["model"] for r in runs):
        rounds = sorted({r["round"] for r in runs if r["model"] == name})
        by = {(r["round"], r["side"]): figures(r["result"]) for r in runs if r["model"] == name}
        entry = {}
        for fig in FIGURES:
            ratios = [by[(k, "cliper")][fig] / by[(k, "mmrec")][fig] for k in rounds]
            entry[fig] = {
                "cliper": statistics.median(by[(k, "cliper")][fig] for k in rounds),
                "mmrec": statistics.median(by[(k, "mmrec")][fig] for k in rounds),
                "ratio_median": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
                "ratios": ratios,
            }
        out[name] = entry
    return out


def other_processes(own: set[int]) -> list[str]:
    """The busiest processes that are not this benchmark's (``ps``, by CPU share)."""
    ps = subprocess.run(["ps", "-eo", "pid,pcpu,rss,args", "--sort=-pcpu"], capture_output=True, text=True)
    rows = []
    for line in ps.stdout.splitlines()[1:]:
        pid, cpu, rss, args = line.split(None, 3)
        if int(pid) not in own and float(cpu) > 0:
            rows.append(f"{cpu}% cpu, {int(rss) // KIB} MB: {args[:100]}")
    return rows[:TOP_PROCESSES]


def main() -> None:
    """Run the rounds, write the JSON and the markdown report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MMREC_NAMES))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=None, help="default: 2 FREEDOM/LightGCN, 1 else")
    parser.add_argument("--inter", type=Path, default=DEFAULT_INTER)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    own = {os.getpid()}
    meta = {
        "inter": str(args.inter),
        "threads": args.threads,
        "rounds": args.rounds,
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "load_before": list(os.getloadavg()),
        "other_processes_before": other_processes(own),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "gpu": "not measured (no GPU was lent)",
    }
    runs = []
    for name in args.models:
        epochs = args.epochs or DEFAULT_EPOCHS[name]
        for k in range(args.rounds):
            order = ("cliper", "mmrec") if k % 2 == 0 else ("mmrec", "cliper")
            for side in order:
                result = run_side(side_command(side, name, args.inter, epochs, args.threads))
                runs.append({"model": name, "round": k, "side": side, "result": result})
                print(json.dumps({"model": name, "round": k, "side": side, **figures(result)}), flush=True)
    meta.update(
        load_after=list(os.getloadavg()),
        other_processes_after=other_processes(own),
        finished=time.strftime("%Y-%m-%d %H:%M:%S"),
    )
    summary = summarise(runs)
    io.write_json(args.out / "train_speed.json", {"meta": meta, "summary": summary, "runs": runs})
    io.write_text(args.out / "train_speed.md", markdown(meta, summary, runs))
    print(markdown(meta, summary, runs))


if __name__ == "__main__":
    main()
