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
the summary then prints its gain over LightGCN and CLIPER's against it.

``--summarise`` reads every catalog's JSON and writes ``grid_probe.md``: the grid of
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
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import torch  # noqa: E402
from demo_experiments import cpu_model  # noqa: E402
from demo_quality import (  # noqa: E402
    ARMS,
    DIAGNOSIS,
    GRIDS,
    METRIC,
    ORACLE_DIR,
    TARGETS,
    run_arm,
    write_diagnosis_features,
)

from cliper import io  # noqa: E402
from cliper.config import load_params  # noqa: E402

PROBED_ARMS = ("freedom image+title", "freedom+cliper(attention)")
# the ceiling: FREEDOM fed the demo's latent attributes (one-hot, demo_quality.write_diagnosis_features),
# probed on request (--arms) at the per-view points (one view, so the same graph as the fused one)
CEILING_ARM = "freedom oracle features"
ARM_OVERRIDES = {**ARMS, CEILING_ARM: DIAGNOSIS[CEILING_ARM]}
BASELINE_ARM = "lightgcn"
IMAGE_WEIGHTS = (0.1, 0.3, 0.5, 0.7, 0.9)  # mm_image_weight, at knn_k 10
OTHER_KNN_K = (5,)  # knn_k probed with the per-view graph besides 10
OTHER_UI_LAYERS = (3,)  # FREEDOM's user-item LightGCN layers probed besides 2 (LightGCN's valid wants 3-4)
# label -> FREEDOM params at that point; the rest are cliper/models/configs/freedom.yaml's defaults
# (text_graph: fused, whatever params.yaml sets: a point replaces train.backbones.freedom)
POINTS: dict[str, dict[str, Any]] = {
    **{f"image weight {w}": {"knn_k": 10, "mm_image_weight": w} for w in IMAGE_WEIGHTS},
    "dropout 0.5 (image weight 0.1)": {"knn_k": 10, "mm_image_weight": 0.1, "dropout": 0.5},
    "reg_weight 1e-3 (image weight 0.1)": {"knn_k": 10, "mm_image_weight": 0.1, "reg_weight": 1.0e-3},
    # FREEDOM's text graph as the mean of one kNN graph per view (text_graph: views)
    **{f"views graph, image weight {w}": {"knn_k": 10, "mm_image_weight": w, "text_graph": "views"}
       for w in IMAGE_WEIGHTS},
    # ... each item's rows weighted by its CLIPER attention weights (text_graph: attention_views)
    **{f"attention views graph, image weight {w}":
       {"knn_k": 10, "mm_image_weight": w, "text_graph": "attention_views"} for w in IMAGE_WEIGHTS},
    # ... the per-view graphs with fewer neighbours each (the mean of 5 graphs has up to 5k per row)
    **{f"views graph, knn_k {k}, image weight {w}": {"knn_k": k, "mm_image_weight": w, "text_graph": "views"}
       for k in OTHER_KNN_K for w in IMAGE_WEIGHTS[:4]},
    # ... and deeper user-item propagation (n_ui_layers), at knn_k 10
    **{f"views graph, n_ui_layers {n}, image weight {w}":
       {"knn_k": 10, "mm_image_weight": w, "text_graph": "views", "n_ui_layers": n}
       for n in OTHER_UI_LAYERS for w in IMAGE_WEIGHTS[:4]},
}

Runs = dict[tuple[int, int], float]  # (catalog, seed) -> test R@20 of one arm's chosen point

BENCHMARK_FILE = "demo_experiments_previous_default.json"  # the previous grid's demo_experiments.py runs
BASELINE_LABEL = "lightgcn grid"  # --baseline: LightGCN over its own 4-point grid (GRIDS), one run per seed
# ... and over these grids too (label -> grid): with BASELINE_LABEL's, an 8-point LightGCN grid,
# the same budget as FREEDOM's image weight x knn_k [5, 10]
BASELINE_GRIDS: dict[str, dict[str, list[Any]]] = {
    BASELINE_LABEL: GRIDS[BASELINE_ARM],
    "lightgcn grid, n_layers 3-4": {"n_layers": [3, 4], "reg_weight": GRIDS[BASELINE_ARM]["reg_weight"]},
}
CANDIDATE_GRID = tuple(f"image weight {w}" for w in IMAGE_WEIGHTS[:4])  # 4 points, as GRIDS
# the same 4 image weights with FREEDOM's text graph built per view (summary name -> its labels)
_VARIANTS = ("views graph", "attention views graph", *(f"views graph, knn_k {k}" for k in OTHER_KNN_K),
             *(f"views graph, n_ui_layers {n}" for n in OTHER_UI_LAYERS))
TEXT_GRAPH_GRIDS = {name: tuple(f"{name}, image weight {w}" for w in IMAGE_WEIGHTS[:4]) for name in _VARIANTS}


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
        for arm in (*PROBED_ARMS, CEILING_ARM):
            mine = [r for r in rows if r["label"] == label and r["arm"] == arm]
            if not mine:
                continue
            valid = [r["valid"] for r in mine]
            lines.append(f"| {label} | {arm} | {statistics.fmean(valid):.4f} | "
                         f"{', '.join(f'{v:.4f}' for v in valid)} | "
                         f"{statistics.fmean(r['test'] for r in mine):.4f} |")
    return "\n".join(lines) + "\n"


def emulated_grid(rows: list[dict[str, Any]], labels: tuple[str, ...]) -> list[dict[str, Any]]:
    """Per (catalog, arm, seed) with every label probed: the row of the best valid (ties: first label)."""
    chosen = []
    keys = sorted({(r["catalog"], r["arm"], r["seed"]) for r in rows})
    for catalog, arm, seed in keys:
        mine = {r["label"]: r for r in rows if (r["catalog"], r["arm"], r["seed"]) == (catalog, arm, seed)}
        if all(label in mine for label in labels):
            chosen.append(max((mine[label] for label in labels), key=lambda r: r["valid"]))
    return chosen


def machines(rows: list[dict[str, Any]]) -> str:
    """``Intel Xeon: 7 [999, 1000]; AMD EPYC: 7 [1002]``: the seeds each CPU ran, per catalog
    (rows written before the CPU was recorded: ``unrecorded``)."""
    seeds: dict[str, dict[int, set[int]]] = {}
    for r in rows:
        seeds.setdefault(r.get("cpu", "unrecorded"), {}).setdefault(r["catalog"], set()).add(r["seed"])
    return "; ".join(f"{cpu}: " + ", ".join(f"{c} {sorted(s)}" for c, s in sorted(per.items()))
                     for cpu, per in sorted(seeds.items()))


def grid_text(grid: dict[str, list[Any]]) -> str:
    """``knn_k [10, 20] x mm_image_weight [0.1, 0.3]`` for a grid of :data:`demo_quality.GRIDS`."""
    return " x ".join(f"{key} {values}" for key, values in grid.items())


def read_rows(results: Path, patterns: Iterable[str]) -> list[dict[str, Any]]:
    """Every row of the JSON files matching ``patterns`` in ``results``, with its catalog; the same
    (catalog, arm, seed, point) twice (a seed rerun on another machine, say) is an error naming both
    files, since a grid would silently take one of them."""
    rows: list[dict[str, Any]] = []
    seen: dict[tuple[Any, ...], Path] = {}
    patterns = [patterns] if isinstance(patterns, str) else patterns
    for path in sorted({f for pattern in patterns for f in results.glob(pattern)}):
        data = io.read_json(path)
        for row in data["rows"]:
            key = (data["catalog"], row["arm"], row["seed"], row["label"])
            if key in seen:
                raise SystemExit(f"{path}: catalog {key[0]}, {key[1]}, seed {key[2]}, '{key[3]}' is also "
                                 f"in {seen[key]}; summarise one machine's rerun with its own --pattern")
            seen[key] = path
            rows.append({**row, "catalog": data["catalog"]})
    return rows


def summarise(results: Path, patterns: Iterable[str] = ("grid_probe_c*.json",)) -> str:
    """The candidate grid, emulated and pooled, beside LightGCN and the current grid's benchmark."""
    rows = read_rows(results, patterns)
    chosen = emulated_grid(rows, CANDIDATE_GRID)
    benchmark = io.read_json(results / BENCHMARK_FILE)
    bench = benchmark["runs"]
    lines = ["# FREEDOM grid probe: the image-weight grid, emulated", "",
             f"Candidate grid (knn_k 10): {', '.join(CANDIDATE_GRID)}; chosen on valid per run. "
             f"Benchmark rows (\"benchmark\"): `{BENCHMARK_FILE}` "
             f"(its grid {grid_text(benchmark['grids']['freedom'])}).", "",
             f"Machines (CPU model: catalog seeds): {machines(rows)}.",
             "", "| arm | grid | runs (catalog/seed) | test R@20 mean ± sd | valid R@20 (chosen) "
             "| points chosen |",
             "| --- | --- | --- | --- | --- | --- |"]
    tests: dict[str, Runs] = {}  # row name -> test R@20 per (catalog, seed)
    for arm in (*PROBED_ARMS, CEILING_ARM):
        mine = [r for r in chosen if r["arm"] == arm]
        if len(mine) > 1:  # the candidate grid's row, beside the benchmark's runs of the same seeds
            arm_runs = {(r["catalog"], r["seed"]) for r in mine}
            _grid_row(lines, arm, "candidate", mine, CANDIDATE_GRID)
            tests[arm] = _per_run(mine)
            old = [r["test"][METRIC] for r in bench
                   if r["arm"] == arm and (r["catalog"], r["seed"]) in arm_runs]
            if len(old) > 1:
                lines.append(f"| {arm} | benchmark | {len(old)} | {statistics.fmean(old):.4f} ± "
                             f"{statistics.stdev(old):.4f} | | |")
        for name, labels in TEXT_GRAPH_GRIDS.items():
            views = emulated_grid([r for r in rows if r["arm"] == arm], labels)
            if len(views) > 1:
                _grid_row(lines, arm, f"candidate, {name}", views, labels)
                tests[f"{arm}, {name}"] = _per_run(views)
    runs = {(r["catalog"], r["seed"]) for r in rows if r["arm"] in PROBED_ARMS}
    # LightGCN trained here (--baseline) when every run has it, else the benchmark's runs
    local = [{**r, "test": {METRIC: r["test"]}} for r in rows if r["label"] == BASELINE_LABEL]
    source, grid = (local, GRIDS) if {(r["catalog"], r["seed"]) for r in local} >= runs else (
        bench, benchmark["grids"])
    base_runs = [r for r in source if r["arm"] == BASELINE_ARM and (r["catalog"], r["seed"]) in runs]
    base = [r["test"][METRIC] for r in base_runs]
    tests[BASELINE_ARM] = _per_run([{**r, "test": r["test"][METRIC]} for r in base_runs])
    if len(base) > 1:
        where = "here" if source is local else "benchmark"
        lines.append(f"| {BASELINE_ARM} | {where}: {grid_text(grid[BASELINE_ARM])} | {len(base)} | "
                     f"{statistics.fmean(base):.4f} ± "
                     f"{statistics.stdev(base):.4f} | | |")
    lines += ["", "Gains in mean test R@20 with the candidate grid (each pair over the runs both have):", ""]
    targets = [*TARGETS, *((f"{a}, {name}", b, need) for name in TEXT_GRAPH_GRIDS
                           for a, b, need in TARGETS if a == PROBED_ARMS[1])]
    lines += _gain_lines(tests, targets)
    lines += _ceiling_lines(tests, f"{PROBED_ARMS[1]}, views graph", f"{CEILING_ARM}, views graph")
    eight_points = [line for variant in EIGHT_POINT_AXES for line in _eight_point_budget(rows, variant)]
    return "\n".join(lines + _per_catalog(tests) + eight_points) + "\n"


# the second FREEDOM axis of each 8-point budget: TEXT_GRAPH_GRIDS variant -> its values beside the default
EIGHT_POINT_AXES = {
    f"views graph, knn_k {OTHER_KNN_K[0]}": f"knn_k [{OTHER_KNN_K[0]}, 10]",
    f"views graph, n_ui_layers {OTHER_UI_LAYERS[0]}": f"n_ui_layers [2, {OTHER_UI_LAYERS[0]}]",
}


def _eight_point_budget(rows: list[dict[str, Any]], variant: str) -> list[str]:
    """Markdown lines: every arm over 8 points (FREEDOM: its 4-point grid plus the 4 points of the
    ``variant`` of :data:`EIGHT_POINT_AXES`; LightGCN :data:`BASELINE_GRIDS`), emulated, with the pooled
    gains; none unless every arm has the same runs."""
    extra = TEXT_GRAPH_GRIDS[variant]
    grids = {PROBED_ARMS[0]: CANDIDATE_GRID + extra,
             PROBED_ARMS[1]: TEXT_GRAPH_GRIDS["views graph"] + extra,
             BASELINE_ARM: tuple(BASELINE_GRIDS)}
    chosen = {arm: emulated_grid([r for r in rows if r["arm"] == arm], labels)
              for arm, labels in grids.items()}
    runs = [{(r["catalog"], r["seed"]) for r in mine} for mine in chosen.values()]
    if len(runs[0]) < 2 or any(other != runs[0] for other in runs):
        return []
    tests = {arm: _per_run(mine) for arm, mine in chosen.items()}
    # the oracle ceiling over CLIPER's 8 points, where it was probed (its runs need not be all of them)
    ceiling = _per_run(emulated_grid([r for r in rows if r["arm"] == CEILING_ARM], grids[PROBED_ARMS[1]]))
    if ceiling:
        tests[CEILING_ARM] = ceiling
    n_layers = sorted({n for grid in BASELINE_GRIDS.values() for n in grid["n_layers"]})
    lines = ["", f"## Every arm over 8 points (FREEDOM: {EIGHT_POINT_AXES[variant]} x image weight, "
             f"per-view text graph for CLIPER; LightGCN: n_layers {n_layers} x reg_weight)", "",
             f"Gains in mean test R@20, pooled over {len(runs[0])} runs:", ""]
    per_catalog = _per_catalog({f"{arm} (8 points)": t for arm, t in tests.items()})
    ceiling = _ceiling_lines(tests, PROBED_ARMS[1], CEILING_ARM)
    return lines + _gain_lines(tests, TARGETS) + ceiling + per_catalog


def _ceiling_lines(tests: dict[str, Runs], cliper: str, ceiling: str) -> list[str]:
    """Markdown lines, when the oracle ceiling was probed: its gain over LightGCN (what any features
    could give this backbone and grid) and CLIPER's share of it, each over the runs both rows have."""
    if ceiling not in tests:
        return []
    gains = [(f"{ceiling} vs {BASELINE_ARM}", _gain(tests, ceiling, BASELINE_ARM)),
             (f"{cliper} vs {ceiling}", _gain(tests, cliper, ceiling))]
    return ["", "The ceiling (FREEDOM fed the demo's latent attributes, one-hot, on the same points):", "",
            *(f"- {name}: {gain:+.1%} ({n} runs)" for name, (gain, n) in gains if n > 1)]


def _gain(tests: dict[str, Runs], a: str, b: str) -> tuple[float, int]:
    """Row ``a``'s mean test R@20 over row ``b``'s, minus 1, over the runs both have (and their count)."""
    common = sorted(tests.get(a, {}).keys() & tests.get(b, {}).keys())
    if len(common) < 2:
        return float("nan"), len(common)
    mean_a, mean_b = (statistics.fmean(tests[name][r] for r in common) for name in (a, b))
    return mean_a / mean_b - 1, len(common)


def _per_run(chosen: list[dict[str, Any]]) -> Runs:
    """(catalog, seed) -> test R@20 of the chosen rows."""
    return {(r["catalog"], r["seed"]): r["test"] for r in chosen}


def _gain_lines(tests: dict[str, Runs], targets: Iterable[tuple[str, str, float]]) -> list[str]:
    """Markdown lines: each target's gain in mean test R@20, pooled over the runs (catalog, seed) that
    both of its rows have, never over two different sets; targets with fewer than 2 such runs are left out."""
    lines = []
    for a, b, required in targets:
        gain, n = _gain(tests, a, b)
        if n > 1:
            lines.append(f"- {a} vs {b}: {gain:+.1%}, required ≥ {required:+.0%} "
                         f"({'met' if gain >= required else 'NOT met'}; {n} runs)")
    return lines


def _per_catalog(tests: dict[str, Runs]) -> list[str]:
    """Markdown lines: each row's test R@20 mean ± sd (sd as % of the mean) per catalog and pooled."""
    catalogs = sorted({c for runs in tests.values() for c, _ in runs})
    lines = ["", "Per catalog, test R@20 mean ± sd (sd as % of the mean; the issue asks ≤ 10%):", "",
             "| row | " + " | ".join(f"catalog {c}" for c in catalogs) + " | pooled |",
             "| --- |" + " --- |" * (len(catalogs) + 1)]
    for name, runs in tests.items():
        cells = []
        for catalog in [*catalogs, None]:  # None: every catalog
            values = [t for (c, _), t in runs.items() if catalog in (c, None)]
            mean = statistics.fmean(values) if values else float("nan")
            sd = statistics.stdev(values) if len(values) > 1 else float("nan")
            cells.append(f"{mean:.4f} ± {sd:.4f} ({sd / mean:.0%}, n={len(values)})" if values else "–")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _grid_row(
    lines: list[str], arm: str, grid: str, chosen: list[dict[str, Any]], labels: tuple[str, ...]
) -> None:
    """Append one arm's emulated-grid row to ``lines``: test mean ± sd, valid of the chosen, points."""
    test = [r["test"] for r in chosen]
    picked = ", ".join(f"{POINTS[label]['mm_image_weight']} x{sum(r['label'] == label for r in chosen)}"
                       for label in labels)
    runs = len({(r["catalog"], r["seed"]) for r in chosen})
    lines.append(f"| {arm} | {grid} | {runs} | {statistics.fmean(test):.4f} ± {statistics.stdev(test):.4f} "
                 f"| {statistics.fmean(r['valid'] for r in chosen):.4f} | image weight {picked} |")


def main() -> None:
    """Parse arguments, probe every (seed, point, arm) not yet in the results, write JSON + markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[999], help="train.seed values")
    parser.add_argument("--points", nargs="*", choices=list(POINTS), default=list(POINTS),
                        help="labels of POINTS to probe (default: all; none with --baseline alone)")
    parser.add_argument("--arms", nargs="+", choices=[*PROBED_ARMS, CEILING_ARM], default=list(PROBED_ARMS),
                        help=f"arms to probe (default: the first two; '{CEILING_ARM}' is the oracle ceiling)")
    parser.add_argument("--baseline", action="store_true",
                        help="also train LightGCN over its grid once per seed (the summary's baseline)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (two probes fit 2 cores)")
    parser.add_argument("--work", type=Path, default=REPO / ".cache" / "cliper" / "bench" / "grid_probe")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--summarise", action="store_true",
                        help="write --summary from every catalog's JSON in --out; trains nothing")
    parser.add_argument("--pattern", nargs="+", default=["grid_probe_c*.json"],
                        help="with --summarise: the catalogs' JSON files in --out (globs, pooled)")
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
    if CEILING_ARM in args.arms and not (REPO / ORACLE_DIR).exists():
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
