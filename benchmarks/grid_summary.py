"""The FREEDOM grid probe's summary: every grid of ``grid_points.py`` emulated from the single points
``grid_probe.py`` trained (best valid per run, ties to the first point, as the train stage's grid
picks), pooled over catalogs x seeds, with the issue's gains, the sd per catalog and the 8-point budgets."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from demo_quality import GRIDS, LEFT_OUT_ORACLES, METRIC, TARGETS
from grid_points import (
    BASELINE_ARM,
    BASELINE_GRIDS,
    BASELINE_LABEL,
    BENCHMARK_FILE,
    CANDIDATE_GRID,
    CEILING_ARM,
    CEILING_ARMS,
    EIGHT_POINT_AXES,
    POINTS,
    PROBED_ARMS,
    TEXT_GRAPH_GRIDS,
)

from cliper import io

ARM_SEPARATOR = "::"  # read_rows: "grid_probe_x_c*.json::lightgcn" takes only that arm's rows
Runs = dict[tuple[int, int], float]  # (catalog, seed) -> test R@20 of one arm's chosen point


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
    files, since a grid would silently take one of them. ``GLOB::ARM`` takes only that arm's rows
    of the files (the LightGCN baseline of files whose feature arms other features replace, say)."""
    rows: list[dict[str, Any]] = []
    seen: dict[tuple[Any, ...], Path] = {}
    patterns = [patterns] if isinstance(patterns, str) else patterns
    arms_of: dict[Path, set[str] | None] = {}
    for pattern in patterns:
        glob, _, arm = pattern.partition(ARM_SEPARATOR)
        for f in results.glob(glob):
            wanted = arms_of.get(f, set())
            arms_of[f] = None if not arm or wanted is None else wanted | {arm}
    for path in sorted(arms_of):
        data = io.read_json(path)
        for row in data["rows"]:
            if arms_of[path] is not None and row["arm"] not in arms_of[path]:
                continue
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
    for arm in (*PROBED_ARMS, *CEILING_ARMS):
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
    # the oracle ceilings over CLIPER's 8 points, where probed (their runs need not be all of them)
    for arm in CEILING_ARMS:
        ceiling = _per_run(emulated_grid([r for r in rows if r["arm"] == arm], grids[PROBED_ARMS[1]]))
        if ceiling:
            tests[arm] = ceiling
    n_layers = sorted({n for grid in BASELINE_GRIDS.values() for n in grid["n_layers"]})
    lines = ["", f"## Every arm over 8 points (FREEDOM: {EIGHT_POINT_AXES[variant]} x image weight, "
             f"per-view text graph for CLIPER; LightGCN: n_layers {n_layers} x reg_weight)", "",
             f"Gains in mean test R@20, pooled over {len(runs[0])} runs:", ""]
    per_catalog = _per_catalog({f"{arm} (8 points)": t for arm, t in tests.items()})
    ceiling = [line for arm in CEILING_ARMS for line in _ceiling_lines(tests, PROBED_ARMS[1], arm)]
    return lines + _gain_lines(tests, TARGETS) + ceiling + per_catalog


def _ceiling_lines(tests: dict[str, Runs], cliper: str, ceiling: str) -> list[str]:
    """Markdown lines, when the oracle ceiling was probed: its gain over LightGCN (what any features
    could give this backbone and grid) and CLIPER's share of it, each over the runs both rows have."""
    if ceiling not in tests:
        return []
    gains = [(f"{ceiling} vs {BASELINE_ARM}", _gain(tests, ceiling, BASELINE_ARM)),
             (f"{cliper} vs {ceiling}", _gain(tests, cliper, ceiling))]
    left_out = LEFT_OUT_ORACLES.get(ceiling, (None, ()))[1]
    what = f"without {' or '.join(left_out)}" if left_out else "on the same points"
    return ["", f"The ceiling (FREEDOM fed the demo's latent attributes, one-hot, {what}):", "",
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
