"""The grid probe's emulated grid picks what the train stage's grid would: best valid, ties to the first."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import grid_points  # noqa: E402
import grid_summary  # noqa: E402
from grid_points import CANDIDATE_GRID, PROBED_ARMS  # noqa: E402
from grid_summary import emulated_grid  # noqa: E402


def _row(label: str, valid: float, test: float, seed: int = 999, arm: str = PROBED_ARMS[0]) -> dict:
    return {"catalog": 7, "arm": arm, "seed": seed, "label": label, "valid": valid, "test": test}


def _summarise_with_lightgcn(tmp_path: Path, rows: list[dict]) -> str:
    """The summary of ``rows`` (catalog 7, seeds 999 and 1000) beside LightGCN's grids at 0.10 each."""
    from cliper import io

    rows = rows + [_row(label, 0.07, 0.10, seed, grid_points.BASELINE_ARM)
                   for seed in (999, 1000) for label in grid_points.BASELINE_GRIDS]
    io.write_json(tmp_path / "grid_probe_c7.json", {"catalog": 7, "threads": 1,
                                                     "rows": [{**r, "point": {}} for r in rows]})
    io.write_json(tmp_path / grid_points.BENCHMARK_FILE, {"runs": [], "grids": {"freedom": {"knn_k": [10]}}})
    return grid_summary.summarise(tmp_path, ["grid_probe_c*.json"])


def test_the_best_valid_point_is_chosen_and_test_never_chooses() -> None:
    valids = [0.05, 0.09, 0.07, 0.06]
    tests = [0.20, 0.01, 0.30, 0.40]  # test would pick another point
    rows = [_row(label, v, t) for label, v, t in zip(CANDIDATE_GRID, valids, tests, strict=True)]
    (chosen,) = emulated_grid(rows, CANDIDATE_GRID)
    assert chosen["label"] == CANDIDATE_GRID[1] and chosen["test"] == 0.01


def test_ties_go_to_the_first_point_as_in_grid_search() -> None:
    rows = [_row(label, 0.08, float(i)) for i, label in enumerate(CANDIDATE_GRID)]
    (chosen,) = emulated_grid(rows, CANDIDATE_GRID)
    assert chosen["label"] == CANDIDATE_GRID[0]


def test_a_run_missing_a_grid_point_is_left_out() -> None:
    rows = [_row(label, 0.08, 0.08) for label in CANDIDATE_GRID]
    rows += [_row(label, 0.08, 0.08, seed=1000) for label in CANDIDATE_GRID[:-1]]
    assert [r["seed"] for r in emulated_grid(rows, CANDIDATE_GRID)] == [999]


def test_every_candidate_point_is_a_probed_point() -> None:
    assert set(CANDIDATE_GRID) <= set(grid_points.POINTS)


def test_the_text_graph_grids_are_probed_points_with_their_text_graph() -> None:
    default = grid_points.DEFAULT_DROPOUT
    expected = {"views graph": ("views", 10, 2, default),
                "attention views graph": ("attention_views", 10, 2, default)} | {
        f"views graph, knn_k {k}": ("views", k, 2, default) for k in grid_points.OTHER_KNN_K} | {
        f"views graph, n_ui_layers {n}": ("views", 10, n, default) for n in grid_points.OTHER_UI_LAYERS} | {
        f"views graph, dropout {d}": ("views", 10, 2, d) for d in grid_points.OTHER_DROPOUT}
    assert set(grid_points.TEXT_GRAPH_GRIDS) == set(expected)
    assert default == 0.8 and 0.8 not in grid_points.OTHER_DROPOUT  # freedom.yaml's, MMRec's default
    for name, labels in grid_points.TEXT_GRAPH_GRIDS.items():
        points = [grid_points.POINTS[label] for label in labels]
        shape = [(p["text_graph"], p["knn_k"], p.get("n_ui_layers", 2), p.get("dropout", default))
                 for p in points]
        assert shape == [expected[name]] * 4
        assert [grid_points.POINTS[label]["mm_image_weight"] for label in labels] == [
            grid_points.POINTS[label]["mm_image_weight"] for label in CANDIDATE_GRID
        ]


def test_summary_emulates_each_grid_and_prefers_the_baseline_trained_here(tmp_path: Path) -> None:
    from cliper import io

    views = grid_points.TEXT_GRAPH_GRIDS["views graph"]
    rows = []
    for seed in (999, 1000):
        for i, label in enumerate(CANDIDATE_GRID):
            rows.append({**_row(label, 0.05 + i / 100, 0.08, seed, PROBED_ARMS[0]), "point": {}})
            rows.append({**_row(label, 0.05, 0.07 + i / 100, seed, PROBED_ARMS[1]), "point": {}})
            rows.append({**_row(views[i], 0.09 if i == 1 else 0.05, 0.10 if i == 1 else 0.5, seed,
                                PROBED_ARMS[1]), "point": {}})
        rows.append({**_row(grid_points.BASELINE_LABEL, 0.07, 0.09, seed, grid_points.BASELINE_ARM)})
    io.write_json(tmp_path / "grid_probe_xeon_c7.json", {"catalog": 7, "threads": 1, "rows": rows})
    other_machine = [{"arm": grid_points.BASELINE_ARM, "catalog": 7, "seed": s, "test": {"recall@20": 0.01}}
                     for s in (999, 1000)]
    grids = {"freedom": {"knn_k": [10]}, "lightgcn": {"n_layers": [1]}}
    io.write_json(tmp_path / grid_points.BENCHMARK_FILE, {"runs": other_machine, "grids": grids})
    text = grid_summary.summarise(tmp_path, ["grid_probe_xeon_c*.json"])
    # fused CLIPER: ties on valid -> the first point (test 0.07); views graph: valid picks weight 0.3
    assert "| freedom+cliper(attention) | candidate | 2 | 0.0700 ± 0.0000 |" in text
    assert "| freedom+cliper(attention) | candidate, views graph | 2 | 0.1000 ± 0.0000 | 0.0900 |" in text
    assert "| lightgcn | here: " in text and "0.0900 ± 0.0000" in text  # not the other machine's 0.01
    assert "freedom+cliper(attention), views graph vs lightgcn: +11.1%" in text
    assert "| freedom+cliper(attention), views graph | 0.1000 ± 0.0000 (0%, n=2) |" in text


def test_the_eight_point_budget_chooses_over_both_grids_per_arm(tmp_path: Path) -> None:
    """Each arm's 8 points are its 4-point grid plus knn_k 5 (LightGCN: its two grids), best valid."""
    from cliper import io

    knn5 = grid_points.TEXT_GRAPH_GRIDS["views graph, knn_k 5"]
    views = grid_points.TEXT_GRAPH_GRIDS["views graph"]
    deeper = [label for label in grid_points.BASELINE_GRIDS if label != grid_points.BASELINE_LABEL]
    rows = []
    for seed in (999, 1000):
        for i in range(4):  # valid picks knn_k 5 at weight 0.3 for image + title, knn_k 10 for CLIPER
            rows += [_row(CANDIDATE_GRID[i], 0.05, 0.06, seed),
                     _row(knn5[i], 0.09 if i == 1 else 0.04, 0.08 if i == 1 else 0.5, seed),
                     _row(views[i], 0.09 if i == 2 else 0.05, 0.10 if i == 2 else 0.5, seed, PROBED_ARMS[1]),
                     _row(knn5[i], 0.06, 0.5, seed, PROBED_ARMS[1])]
        rows += [_row(grid_points.BASELINE_LABEL, 0.07, 0.09, seed, grid_points.BASELINE_ARM),
                 _row(deeper[0], 0.08, 0.095 if seed == 999 else 0.105, seed, grid_points.BASELINE_ARM)]
    rows = [{**r, "point": {}} for r in rows]
    io.write_json(tmp_path / "grid_probe_xeon_c7.json", {"catalog": 7, "threads": 1, "rows": rows})
    io.write_json(tmp_path / grid_points.BENCHMARK_FILE, {"runs": [], "grids": {"freedom": {"knn_k": [10]}}})
    text = grid_summary.summarise(tmp_path, ["grid_probe_xeon_c*.json"])
    section = text.split("## Every arm over 8 points")[1]
    assert "| freedom image+title (8 points) | 0.0800 ± 0.0000 (0%, n=2) |" in section
    assert "| freedom+cliper(attention) (8 points) | 0.1000 ± 0.0000 (0%, n=2) |" in section
    assert "| lightgcn (8 points) | 0.1000 ± 0.0071 (7%, n=2) |" in section
    assert "freedom+cliper(attention) vs lightgcn: +0.0%, required ≥ +5% (NOT met; 2 runs)" in section
    assert "freedom image+title vs lightgcn: -20.0%" in section


def test_no_eight_point_section_without_every_arms_runs(tmp_path: Path) -> None:
    from cliper import io

    rows = [{**_row(label, 0.05, 0.06, seed), "point": {}}
            for seed in (999, 1000) for label in CANDIDATE_GRID]
    io.write_json(tmp_path / "grid_probe_xeon_c7.json", {"catalog": 7, "threads": 1, "rows": rows})
    io.write_json(tmp_path / grid_points.BENCHMARK_FILE, {"runs": [], "grids": {"freedom": {"knn_k": [10]}}})
    assert "8 points" not in grid_summary.summarise(tmp_path, ["grid_probe_xeon_c*.json"])


def test_the_summary_says_which_cpu_ran_which_seeds(tmp_path: Path) -> None:
    """Runs from two machines are pooled; the summary names each CPU with the seeds it ran."""
    from cliper import io

    rows = [{**_row(label, 0.05, 0.06, seed), "point": {}, "cpu": cpu}
            for seed, cpu in ((999, "Intel Xeon"), (1002, "AMD EPYC")) for label in CANDIDATE_GRID]
    rows.append({**_row(CANDIDATE_GRID[0], 0.05, 0.06, 1003), "point": {}})  # written before cpu was kept
    io.write_json(tmp_path / "grid_probe_c7.json", {"catalog": 7, "threads": 1, "rows": rows})
    io.write_json(tmp_path / grid_points.BENCHMARK_FILE, {"runs": [], "grids": {"freedom": {"knn_k": [10]}}})
    text = grid_summary.summarise(tmp_path, ["grid_probe_c*.json"])
    expected = "AMD EPYC: 7 [1002]; Intel Xeon: 7 [999]; unrecorded: 7 [1003]."
    assert f"Machines (CPU model: catalog seeds): {expected}" in text


def test_one_machines_rerun_of_a_seed_is_not_pooled_silently(tmp_path: Path) -> None:
    """Two files with the same (catalog, arm, seed, point) stop the summary, naming both files;
    files of other seeds are pooled."""
    from cliper import io

    def write(name: str, seed: int) -> None:
        rows = [{**_row(label, 0.05, 0.06, seed), "point": {}} for label in CANDIDATE_GRID]
        io.write_json(tmp_path / name, {"catalog": 7, "threads": 1, "rows": rows})

    write("grid_probe_xeon_c7.json", 999)
    write("grid_probe_epyc_c7.json", 1002)
    io.write_json(tmp_path / grid_points.BENCHMARK_FILE, {"runs": [], "grids": {"freedom": {"knn_k": [10]}}})
    assert len(grid_summary.read_rows(tmp_path, ["grid_probe_xeon_c*.json", "grid_probe_epyc_c*.json"])) == 8
    write("grid_probe_rerun_c7.json", 999)
    with pytest.raises(SystemExit, match="grid_probe_xeon_c7.json"):
        grid_summary.summarise(tmp_path, ["grid_probe_*_c7.json"])


def test_a_pattern_can_take_one_arm_of_its_files(tmp_path: Path) -> None:
    """``GLOB::ARM`` reads only that arm's rows, so another file's rerun of the other arm pools
    without a clash; two patterns on one file read the union of their arms."""
    from cliper import io

    rows = [{**_row(label, 0.05, 0.06, 999, arm), "point": {}} for label in CANDIDATE_GRID
            for arm in ("lightgcn", "freedom image+title")]
    io.write_json(tmp_path / "grid_probe_old_c7.json", {"catalog": 7, "threads": 1, "rows": rows})
    io.write_json(tmp_path / "grid_probe_new_c7.json", {"catalog": 7, "threads": 1, "rows": rows[1::2]})
    read = grid_summary.read_rows(tmp_path, ["grid_probe_old_c7.json::lightgcn", "grid_probe_new_c7.json"])
    assert sorted(r["arm"] for r in read) == ["freedom image+title"] * 4 + ["lightgcn"] * 4
    both = ["grid_probe_old_c7.json::lightgcn", "grid_probe_old_c7.json::freedom image+title"]
    assert len(grid_summary.read_rows(tmp_path, both)) == 8
    assert len(grid_summary.read_rows(tmp_path, [*both, "grid_probe_old_c7.json"])) == 8


def test_a_gain_compares_two_rows_over_the_runs_both_have() -> None:
    """A row with an extra (catalog, seed) run does not pool it against a row without it."""
    tests = {"a": {(7, 999): 0.1, (7, 1000): 0.1, (7, 1002): 0.5}, "b": {(7, 999): 0.1, (7, 1000): 0.1}}
    assert grid_summary._gain_lines(tests, [("a", "b", 0.05)]) == [
        "- a vs b: +0.0%, required ≥ +5% (NOT met; 2 runs)"]


def test_an_arm_probed_only_on_the_views_graph_still_gets_its_rows(tmp_path: Path) -> None:
    """CLIPER probed at the per-view graph's points alone (no fused-graph points) is summarised."""
    from cliper import io

    views = grid_points.TEXT_GRAPH_GRIDS["views graph"]
    rows = [{**_row(label, 0.05 + i / 100, 0.08 + i / 100, seed, PROBED_ARMS[1]), "point": {}}
            for seed in (999, 1000) for i, label in enumerate(views)]
    io.write_json(tmp_path / "grid_probe_c7.json", {"catalog": 7, "threads": 1, "rows": rows})
    io.write_json(tmp_path / grid_points.BENCHMARK_FILE, {"runs": [], "grids": {"freedom": {"knn_k": [10]}}})
    text = grid_summary.summarise(tmp_path, ["grid_probe_c*.json"])
    assert "| freedom+cliper(attention) | candidate, views graph | 2 | 0.1100 ± 0.0000 | 0.0800 |" in text


def test_an_eight_point_section_per_second_freedom_axis(tmp_path: Path) -> None:
    """With n_ui_layers 3 points probed (and no knn_k 5), the 8-point section is over n_ui_layers [2, 3]."""

    layers = grid_points.TEXT_GRAPH_GRIDS["views graph, n_ui_layers 3"]
    views = grid_points.TEXT_GRAPH_GRIDS["views graph"]
    rows = []
    for seed in (999, 1000):
        for i in range(4):  # CLIPER: valid picks n_ui_layers 3 at weight 0.1 (test 0.12)
            rows += [_row(CANDIDATE_GRID[i], 0.05, 0.06, seed), _row(layers[i], 0.04, 0.5, seed),
                     _row(views[i], 0.05, 0.5, seed, PROBED_ARMS[1]),
                     _row(layers[i], 0.09 if i == 0 else 0.04, 0.12 if i == 0 else 0.5, seed, PROBED_ARMS[1])]
    text = _summarise_with_lightgcn(tmp_path, rows)
    assert "FREEDOM: knn_k [5, 10]" not in text
    section = text.split("## Every arm over 8 points (FREEDOM: n_ui_layers [2, 3] x image weight")[1]
    assert "| freedom+cliper(attention) (8 points) | 0.1200 ± 0.0000 (0%, n=2) |" in section
    assert "freedom+cliper(attention) vs lightgcn: +20.0%, required ≥ +5% (met; 2 runs)" in section


def test_the_oracle_ceiling_is_reported_over_cliper_s_points(tmp_path: Path) -> None:
    """The oracle arm is chosen on valid over CLIPER's 8 points; its gain over LightGCN and CLIPER's
    share of it are printed, in the 4-point section over the per-view graph's 4 points."""
    knn5 = grid_points.TEXT_GRAPH_GRIDS["views graph, knn_k 5"]
    views = grid_points.TEXT_GRAPH_GRIDS["views graph"]
    oracle, no_material, _ = grid_points.CEILING_ARMS
    rows = []
    for seed in (999, 1000):
        for i in range(4):  # the oracle: valid picks knn_k 5 at weight 0.5 (test 0.15), else 0.11 / 0.5
            rows += [_row(CANDIDATE_GRID[i], 0.05, 0.06, seed), _row(knn5[i], 0.05, 0.06, seed),
                     _row(views[i], 0.05, 0.08, seed, PROBED_ARMS[1]),
                     _row(knn5[i], 0.04, 0.5, seed, PROBED_ARMS[1]),
                     _row(views[i], 0.08 if i == 0 else 0.06, 0.11 if i == 0 else 0.5, seed, oracle),
                     _row(knn5[i], 0.09 if i == 2 else 0.07, 0.15 if i == 2 else 0.5, seed, oracle),
                     # without material: valid picks weight 0.1 of the per-view points (test 0.105)
                     _row(views[i], 0.08 if i == 0 else 0.06, 0.105 if i == 0 else 0.5, seed, no_material),
                     _row(knn5[i], 0.05, 0.5, seed, no_material)]
    four, eight = _summarise_with_lightgcn(tmp_path, rows).split("## Every arm over 8 points")
    assert "| freedom oracle features, views graph | 0.1100 ± 0.0000 (0%, n=2) |" in four
    assert f"- {oracle}, views graph vs lightgcn: +10.0% (2 runs)" in four
    assert f"- freedom+cliper(attention), views graph vs {oracle}, views graph: -27.3% (2 runs)" in four
    assert f"| {oracle} (8 points) | 0.1500 ± 0.0000 (0%, n=2) |" in eight
    assert f"- {oracle} vs lightgcn: +50.0% (2 runs)" in eight
    assert f"- freedom+cliper(attention) vs {oracle}: -46.7% (2 runs)" in eight
    assert "one-hot, without material):" in eight
    assert f"- {no_material} vs lightgcn: +5.0% (2 runs)" in eight
    assert f"- freedom+cliper(attention) vs {no_material}: -23.8% (2 runs)" in eight


def test_an_eight_point_section_over_freedom_s_dropout(tmp_path: Path) -> None:
    """With dropout 0.5 points probed, an 8-point section is over dropout [0.8, 0.5]: each FREEDOM arm
    chooses on valid over its 4 default-dropout points and the 4 dropout 0.5 points."""

    kept = grid_points.TEXT_GRAPH_GRIDS["views graph, dropout 0.5"]
    views = grid_points.TEXT_GRAPH_GRIDS["views graph"]
    rows = []
    for seed in (999, 1000):
        for i in range(4):  # CLIPER: valid picks dropout 0.5 at weight 0.5 (test 0.13); image + title: 0.8
            rows += [_row(CANDIDATE_GRID[i], 0.06 if i == 3 else 0.05, 0.09 if i == 3 else 0.5, seed),
                     _row(kept[i], 0.04, 0.5, seed),
                     _row(views[i], 0.05, 0.5, seed, PROBED_ARMS[1]),
                     _row(kept[i], 0.09 if i == 2 else 0.04, 0.13 if i == 2 else 0.5, seed, PROBED_ARMS[1])]
    text = _summarise_with_lightgcn(tmp_path, rows)
    assert "| freedom+cliper(attention) | candidate, views graph, dropout 0.5 | 2 | 0.1300 ± 0.0000 |" in text
    section = text.split("## Every arm over 8 points (FREEDOM: dropout [0.8, 0.5] x image weight")[1]
    assert "| freedom+cliper(attention) (8 points) | 0.1300 ± 0.0000 (0%, n=2) |" in section
    assert "| freedom image+title (8 points) | 0.0900 ± 0.0000 (0%, n=2) |" in section
    assert "freedom+cliper(attention) vs lightgcn: +30.0%, required ≥ +5% (met; 2 runs)" in section


def test_the_left_out_oracles_are_the_oracle_with_those_attributes_zeroed(tmp_path: Path) -> None:
    """``write_diagnosis_features`` writes the oracle and the same one-hot without the left-out columns."""
    import numpy as np
    import pandas as pd
    import yaml
    from demo_quality import LEFT_OUT_ORACLES, ORACLE_DIR, TEXTUAL, VISUAL, write_diagnosis_features

    from cliper import io

    params = {"demo": {"out_dir": "raw"}, "ingest": {"out_dir": "ing"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    names = list(dict.fromkeys(VISUAL + TEXTUAL))
    values = {n: [f"{n}0", f"{n}1"] for n in names}
    items = {f"A{i}": {n: f"{n}{(i >> k) & 1}" for k, n in enumerate(names)} for i in range(4)}
    io.write_json(tmp_path / "raw" / "truth.json", {"values": values, "items": items})
    (tmp_path / "ing").mkdir()
    pd.DataFrame({"asin": list(items)}).to_parquet(tmp_path / "ing" / "items.parquet")
    write_diagnosis_features(tmp_path)
    full = {k: np.load(tmp_path / ORACLE_DIR / f"{k}.npy") for k in ("image", "text_views")}
    for folder, left_out in LEFT_OUT_ORACLES.values():
        cut = {k: np.load(tmp_path / folder / f"{k}.npy") for k in ("image", "text_views")}
        columns = [2 * names.index(a) + j for a in left_out for j in (0, 1)]
        for key in full:
            assert cut[key][..., columns].sum() == 0 and full[key][..., columns].sum() > 0
            rest = np.delete(full[key], columns, axis=-1)
            assert np.array_equal(np.delete(cut[key], columns, axis=-1), rest) and rest.sum() > 0
