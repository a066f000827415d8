"""FREEDOM grid probe: which values should the 4-point grid of the demo benchmark span?

Trains the two FREEDOM arms of ``benchmarks/demo_quality.py`` (image + title; CLIPER attention
over all views) at single points of FREEDOM's hyper-parameters (no grid, no compared fusions),
on the checkout's current features (``dvc repro extract`` first; the catalog is the checkout's
``demo.seed``). The points are judged on **valid** Recall@20 only, as the grid itself chooses;
test Recall@20 is recorded beside it but must not pick the grid (that would tune on test).

Resumable: rows already in ``--out``'s JSON (same label, arm, seed) are skipped. Writes
``grid_probe_c<demo.seed>.{json,md}``.

The ``views graph`` points set FREEDOM's ``text_graph`` (one kNN graph per text view, plain or
attention-weighted mean) instead of one graph of the fused text; ``--arms`` restricts the arms.
``--arms "freedom oracle features"`` probes the ceiling: FREEDOM fed the demo's latent attributes
(one-hot, :func:`demo_quality.write_diagnosis_features`, written on first use) at the same points;
the summary then prints its gain over LightGCN and CLIPER's against it. ``"freedom oracle features,
no material"`` (and ``", no material or shape"``) is the same ceiling with those attributes left
out. The ``views graph, dropout`` points prune fewer user-item edges each epoch than MMRec's
default 0.8.

The points and the grids they make are in ``grid_points.py``; ``--summarise`` (``grid_summary.py``)
reads every catalog's JSON and writes ``grid_probe.md``: the grid of
:data:`CANDIDATE_GRID` (and of :data:`TEXT_GRAPH_GRIDS`) emulated from the single points
(each grid point is seeded with ``train.seed`` and trained alone, exactly as a single-point run,
so the emulation picks what the train stage's grid would: the best valid, ties to the first
point), pooled over catalogs x seeds, against the runs of :data:`BENCHMARK_FILE`, the
``dvc exp run`` benchmark of the grid before (knn_k [10, 20] x image weight [0.1, 0.3]).

Usage::

    python benchmarks/grid_probe.py --seeds 999 1000      # in a checkout per catalog
    python benchmarks/grid_probe.py --summarise
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import torch  # noqa: E402
from demo_experiments import cpu_model  # noqa: E402
from demo_quality import ARMS, METRIC, run_arm, write_diagnosis_features  # noqa: E402
from grid_points import (  # noqa: E402
    ARM_OVERRIDES,
    BASELINE_ARM,
    BASELINE_GRIDS,
    BASELINE_LABEL,
    CEILING_ARMS,
    POINTS,
    PROBED_ARMS,
)
from grid_summary import summarise  # noqa: E402

from cliper import io  # noqa: E402
from cliper.config import load_params  # noqa: E402


def probe(point: dict[str, Any], arm: str, seed: int, work: Path) -> dict[str, Any]:
    """One arm at one FREEDOM point and seed through the real train stage."""
    overrides = {**ARM_OVERRIDES[arm], "train.compare_fusions": [], "train.backbones": {"freedom": point}}
    label = "-".join(f"{k}{v}" for k, v in point.items())
    return _metrics(run_arm(arm, overrides, seed, work / label))


def baseline(seed: int, work: Path, label: str = BASELINE_LABEL) -> dict[str, Any]:
    """LightGCN over a grid of :data:`BASELINE_GRIDS` through the real train stage, one seed."""
    overrides = {**ARMS[BASELINE_ARM], "train.backbones": {BASELINE_ARM: BASELINE_GRIDS[label]}}
    folder = "baseline" if label == BASELINE_LABEL else f"baseline-{label.split(', ')[-1]}"
    return _metrics(run_arm(BASELINE_ARM, overrides, seed, work / folder))


def _metrics(record: dict[str, Any]) -> dict[str, Any]:
    """The row fields of one :func:`demo_quality.run_arm` record."""
    return {"valid": record["valid"][METRIC], "test": record["test"][METRIC],
            "best_epoch": record["best_epoch"], "seconds": record["seconds"]}


def markdown(rows: list[dict[str, Any]], catalog: int, cpu_threads: int) -> str:
    """Per point and arm: valid (and test) Recall@20, mean over the seeds probed."""
    seeds = sorted({r["seed"] for r in rows})
    lines = [f"# FREEDOM grid probe, catalog demo.seed={catalog}", "",
             f"`benchmarks/grid_probe.py`: single points (no grid, no compared fusions), seeds {seeds}, "
             f"{cpu_threads} torch thread per run. Judge on valid; test is shown, not for choosing.", "",
             "| point | arm | valid R@20 (mean) | per seed | test R@20 (mean) |",
             "| --- | --- | --- | --- | --- |"]
    for label in POINTS:
        for arm in (*PROBED_ARMS, *CEILING_ARMS):
            mine = [r for r in rows if r["label"] == label and r["arm"] == arm]
            if not mine:
                continue
            valid = [r["valid"] for r in mine]
            lines.append(f"| {label} | {arm} | {statistics.fmean(valid):.4f} | "
                         f"{', '.join(f'{v:.4f}' for v in valid)} | "
                         f"{statistics.fmean(r['test'] for r in mine):.4f} |")
    return "\n".join(lines) + "\n"



def main() -> None:
    """Parse arguments, probe every (seed, point, arm) not yet in the results, write JSON + markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[999], help="train.seed values")
    parser.add_argument("--points", nargs="*", choices=list(POINTS), default=list(POINTS),
                        help="labels of POINTS to probe (default: all; none with --baseline alone)")
    parser.add_argument("--arms", nargs="+", choices=[*PROBED_ARMS, *CEILING_ARMS], default=list(PROBED_ARMS),
                        help=f"arms to probe (default: the first two; {list(CEILING_ARMS)}: oracle ceilings)")
    parser.add_argument("--baseline", action="store_true",
                        help="also train LightGCN over its grid once per seed (the summary's baseline)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (two probes fit 2 cores)")
    parser.add_argument("--work", type=Path, default=REPO / ".cache" / "cliper" / "bench" / "grid_probe")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--summarise", action="store_true",
                        help="write --summary from every catalog's JSON in --out; trains nothing")
    parser.add_argument("--pattern", nargs="+", default=["grid_probe_c*.json"],
                        help="with --summarise: the catalogs' JSON files in --out (globs, pooled; "
                             "GLOB::ARM: only that arm's rows)")
    parser.add_argument("--summary", default="grid_probe.md", help="with --summarise: the file written")
    args = parser.parse_args()
    if args.summarise:
        (args.out / args.summary).write_text(summarise(args.out, args.pattern))
        return
    torch.set_num_threads(args.threads)
    catalog = load_params(REPO / "params.yaml").demo.seed
    out = args.out / f"grid_probe_c{catalog}.json"
    rows: list[dict[str, Any]] = io.read_json(out)["rows"] if out.exists() else []
    done = {(r["label"], r["arm"], r["seed"]) for r in rows}

    cpu = cpu_model()
    ceilings = [arm for arm in args.arms if arm in CEILING_ARMS]
    if not all((REPO / ARM_OVERRIDES[arm]["clip.extract.out_dir"]).exists() for arm in ceilings):
        write_diagnosis_features(REPO)  # from this checkout's demo truth.json and ingested items

    def add(row: dict[str, Any]) -> None:  # saved after every run: resumable
        rows.append({**row, "cpu": cpu})
        io.write_json(out, {"catalog": catalog, "threads": args.threads, "rows": rows})
        print(json.dumps(row), flush=True)

    for seed in args.seeds:
        for label, grid in BASELINE_GRIDS.items() if args.baseline else ():
            if (label, BASELINE_ARM, seed) not in done:
                add({"label": label, "arm": BASELINE_ARM, "seed": seed, "point": grid,
                     **baseline(seed, args.work, label)})
        for label in args.points:
            for arm in args.arms:
                if (label, arm, seed) not in done:
                    add({"label": label, "arm": arm, "seed": seed, "point": POINTS[label],
                         **probe(POINTS[label], arm, seed, args.work)})
    out.with_suffix(".md").write_text(markdown(rows, catalog, args.threads))


if __name__ == "__main__":
    main()
