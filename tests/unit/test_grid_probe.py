"""The grid probe's emulated grid picks what the train stage's grid would: best valid, ties to the first."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import grid_probe  # noqa: E402
from grid_probe import CANDIDATE_GRID, PROBED_ARMS, emulated_grid  # noqa: E402


def _row(label: str, valid: float, test: float, seed: int = 999, arm: str = PROBED_ARMS[0]) -> dict:
    return {"catalog": 7, "arm": arm, "seed": seed, "label": label, "valid": valid, "test": test}


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
    assert set(CANDIDATE_GRID) <= set(grid_probe.POINTS)
