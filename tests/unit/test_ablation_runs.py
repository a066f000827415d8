"""The benchmark's view ablation over runs (``benchmarks/ablation_runs.py``).

Each row's gain must be taken against its own run's trained model, and the spread over runs must
be the sample sd and a t interval over the runs, with the runs below counted per row.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import demo_experiments  # noqa: E402
from ablation_runs import (  # noqa: E402
    ablation_gains,
    ablation_markdown,
    read_ablation,
    summarise_gains,
)
from demo_quality import ARMS  # noqa: E402

from cliper.stages.evaluate import VIEW_REPORT_DIR  # noqa: E402
from cliper.view_report import ABLATION_FILE  # noqa: E402

CLIPER = next(iter(ARMS))
TRAINED = "all views (attention, trained)"


def run(catalog: int, seed: int, trained: float, gains: dict[str, float], arm: str = CLIPER) -> dict:
    ablation = [[TRAINED, trained], *([v, trained * (1 + g)] for v, g in gains.items())]
    return {"arm": arm, "catalog": catalog, "seed": seed, "ablation": ablation}


def test_gains_are_over_each_runs_own_trained_model() -> None:
    # trained models that differ by run: a gain over another run's trained model would be wrong
    records = [run(7, 1, 0.10, {"only title": -0.10}), run(7, 2, 0.05, {"only title": 0.20}),
               run(2024, 1, 0.08, {"only title": -0.05})]
    gains = ablation_gains(records, CLIPER)
    assert gains.loc[(7, 1), "only title"] == pytest.approx(-0.10)
    assert gains.loc[(7, 2), "only title"] == pytest.approx(0.20)
    assert gains.loc[(2024, 1), "only title"] == pytest.approx(-0.05)
    assert TRAINED not in gains.columns


def test_summary_is_the_sample_sd_and_a_t_interval_over_runs() -> None:
    values = {(7, 1): -0.10, (7, 2): -0.04, (7, 3): 0.02, (2024, 1): -0.08, (2024, 2): 0.0, (2024, 3): -0.06}
    records = [run(c, s, 0.1, {"without brand": g}) for (c, s), g in values.items()]
    row = summarise_gains(ablation_gains(records, CLIPER)).loc["without brand"]
    x = np.array(list(values.values()))
    assert row["mean"] == pytest.approx(x.mean()) and row["sd"] == pytest.approx(x.std(ddof=1))
    low, high = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert (row["low"], row["high"]) == (pytest.approx(low), pytest.approx(high))
    assert row["catalog 7"] == pytest.approx(np.mean([-0.10, -0.04, 0.02]))
    assert row["catalog 2024"] == pytest.approx(np.mean([-0.08, 0.0, -0.06]))
    assert (row["runs"], row["runs below trained"]) == (6, 4), "a run equal to the trained model is not below"


def test_markdown_covers_the_cliper_arm_only() -> None:
    records = [run(7, s, 0.1, {"only brand": -0.1 * s, "without global": 0.01}) for s in (1, 2, 3)]
    records.append(run(7, 1, 0.1, {"only brand": 0.5}, arm="freedom image+title"))
    lines = ablation_markdown(records, CLIPER, "recall@20")
    row = next(line for line in lines if line.startswith("| only brand |"))
    assert "| -20.0% ± 10.0% |" in row and row.endswith("| 3/3 |"), row
    assert ablation_markdown(records, "lightgcn", "recall@20") == []


def test_read_ablation_takes_the_trained_row_first_and_names_bad_tables(tmp_path: Path) -> None:
    views = tmp_path / VIEW_REPORT_DIR
    assert read_ablation(tmp_path, "recall@20") == [], "an ID-only model writes no table"
    views.mkdir()
    table = pd.DataFrame({"variant": [TRAINED, "only title"], "recall@20": [0.1, 0.09]})
    table.to_csv(views / ABLATION_FILE, index=False)
    assert read_ablation(tmp_path, "recall@20") == [[TRAINED, 0.1], ["only title", 0.09]]
    with pytest.raises(SystemExit, match=r"ablation.csv: no column 'recall@50'"):
        read_ablation(tmp_path, "recall@50")
    table.iloc[::-1].to_csv(views / ABLATION_FILE, index=False)
    with pytest.raises(SystemExit, match="the first row must be the trained model"):
        read_ablation(tmp_path, "recall@20")


def test_the_demo_report_ends_with_the_ablation_over_runs() -> None:
    def record(arm: str, seed: int) -> dict:
        rec = run(7, seed, 0.1, {"only title": -0.1} if arm == CLIPER else {}, arm=arm)
        return rec | {"experiment": f"{arm}-{seed}", "adapt_i2t_r10": 0.9, "fusions": {},
                      "test": {"recall@20": 0.1, "ndcg@20": 0.05}}

    arms = list(ARMS)
    text = demo_experiments.report([record(a, s) for a in arms for s in (1, 2)], arms, [7], [1, 2])
    assert f"View ablation of {CLIPER} over its runs" in text
    assert "| only title | -10.0% | -10.0% ± 0.0% |" in text


def test_rows_keep_their_order_through_the_benchmarks_json(tmp_path: Path) -> None:
    """The benchmark's JSON sorts dict keys: the rows must still come back trained-first, in order."""
    from cliper import io

    order = {"without title": 0.01, "only brand": -0.1, "all views (mean)": 0.0}
    io.write_json(tmp_path / "runs.json", {"runs": [run(7, s, 0.1, order) for s in (1, 2)]})
    records = io.read_json(tmp_path / "runs.json")["runs"]
    assert list(ablation_gains(records, CLIPER).columns) == list(order)
    lines = ablation_markdown(records, CLIPER, "recall@20")
    shown = [line.split(" | ")[0][2:] for line in lines if line.startswith("| ") and "%" in line][1:]
    assert shown == list(order)
    records[0]["ablation"].reverse()
    with pytest.raises(SystemExit, match="must start with the trained model"):
        ablation_gains(records, CLIPER)


def test_the_benchmark_report_links_a_plot_of_the_runs_only_when_there_are_rows(tmp_path: Path) -> None:
    def record(seed: int, gains: dict[str, float]) -> dict:
        return run(7, seed, 0.1, gains) | {"experiment": f"r{seed}", "adapt_i2t_r10": 0.9, "fusions": {},
                                           "test": {"recall@20": 0.1, "ndcg@20": 0.05}}

    with_rows, without = tmp_path / "rows", tmp_path / "none"
    for out, gains in ((with_rows, {"only title": -0.1, "without brand": 0.02}), (without, {})):
        out.mkdir()
        demo_experiments.write_report(out, [record(s, gains) for s in (1, 2)], [CLIPER], [7], [1, 2], {})
    plot = with_rows / demo_experiments.ABLATION_PLOT
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"]({plot.name})" in (with_rows / "demo_experiments.md").read_text()
    assert not (without / plot.name).exists()
    assert plot.name not in (without / "demo_experiments.md").read_text()


def test_one_run_has_no_spread_and_no_interval() -> None:
    lines = ablation_markdown([run(7, 1, 0.1, {"only title": -0.1})], CLIPER, "recall@20")
    assert "| only title | -10.0% | -10.0% | - | 1/1 |" in lines and not any("nan" in line for line in lines)
