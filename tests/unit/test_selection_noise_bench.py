"""``benchmarks/selection_noise.py``: the selection rules replayed on recorded valid/test curves."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import selection_noise as sn  # noqa: E402


def _point(weight: float, valid: list[float], test: list[float]) -> dict:
    return {"point": {"mm_image_weight": weight}, "valid": valid, "test": test,
            "best_epoch": int(np.argmax(valid))}


def test_trailing_mean_averages_the_last_window_values() -> None:
    got = sn.trailing_mean(np.array([1.0, 3.0, 5.0, 7.0]), 2)
    np.testing.assert_allclose(got, [1.0, 2.0, 4.0, 6.0])
    np.testing.assert_allclose(sn.trailing_mean(np.array([2.0, 4.0]), 1), [2.0, 4.0])


def test_window_one_is_the_train_stage_rule_and_ties_keep_the_first() -> None:
    a = _point(0.1, [0.1, 0.3, 0.3, 0.2], [0.0, 0.5, 0.6, 0.7])
    b = _point(0.3, [0.2, 0.3, 0.1, 0.1], [0.9, 0.9, 0.9, 0.9])
    assert sn.choose([a, b], 1) == (0, 1)  # first best epoch of the first best point


def test_a_smoothed_rule_passes_over_a_lone_valid_spike() -> None:
    spike = _point(0.1, [0.10, 0.10, 0.20, 0.10, 0.10, 0.10], [0.10, 0.10, 0.30, 0.10, 0.10, 0.10])
    plateau = _point(0.3, [0.12, 0.14, 0.15, 0.15, 0.15, 0.15], [0.2, 0.2, 0.2, 0.2, 0.2, 0.25])
    assert sn.choose([spike, plateau], 1) == (0, 2)
    assert sn.choose([spike, plateau], 3) == (1, 4)  # trailing means: the plateau's 0.15 beats 0.133
    figs = sn.figures({"seed": 1, "points": [spike, plateau]})
    assert figs["best epoch"] == pytest.approx(0.30)
    assert figs["smoothed 5"] == pytest.approx(0.25)  # window 5 peaks at the plateau's last epoch
    assert figs["test window 5 (diagnostic)"] == pytest.approx(np.mean([0.10, 0.10, 0.30]))


def test_analyse_reports_mean_and_sd_over_seeds(tmp_path: Path) -> None:
    runs = [{"seed": s, "points": [_point(0.1, [0.1, 0.2], [0.1, t])]} for s, t in ((1, 0.10), (2, 0.14))]
    path = tmp_path / "runs.json.gz"  # the committed curves are gzipped
    path.write_bytes(gzip.compress(json.dumps({"catalog": 7, "metric": "recall@20", "runs": runs}).encode()))
    sn.analyse([path], tmp_path / "report")
    table = json.loads((tmp_path / "report.json").read_text())["catalogs"]["7"]["best epoch"]
    assert table["mean"] == pytest.approx(0.12)
    assert table["sd"] == pytest.approx(np.std([0.10, 0.14], ddof=1))
    assert "| best epoch | 0.1200 |" in (tmp_path / "report.md").read_text()


def test_window_one_keeps_an_exact_tie_that_a_running_sum_would_break() -> None:
    """Seed 1003 of catalog 7: two points tied exactly on valid; the first one is the stage's choice."""
    tie = 0.09958333333333333
    first = _point(0.1, [tie, 0.05, 0.05], [0.0] * 3)
    second = _point(0.3, [0.01, 0.09, tie], [0.0] * 3)  # a running sum gives tie + 1.4e-17 here
    assert sn.choose([first, second], 1) == (0, 0)


def test_each_point_alone_and_the_pooled_spread(tmp_path: Path) -> None:
    files = []
    for catalog, tests in ((7, (0.10, 0.14)), (2024, (0.20, 0.20))):
        def points(t: float) -> list[dict]:
            return [_point(0.1, [0.2, 0.1], [t, 0.0]), _point(0.3, [0.1, 0.3], [0.0, 0.5])]

        runs = [{"seed": s, "points": points(t)} for s, t in zip((1, 2), tests, strict=True)]
        files.append(tmp_path / f"runs_{catalog}.json")
        files[-1].write_text(json.dumps({"catalog": catalog, "metric": "recall@20", "runs": runs}))
    sn.analyse(files, tmp_path / "report")
    report = json.loads((tmp_path / "report.json").read_text())
    alone = report["catalogs"]["7"]["point mm_image_weight=0.1 (diagnostic)"]
    assert alone["per_seed"] == {"1": 0.10, "2": 0.14}  # valid chose 0.3; this row shows 0.1 anyway
    rel = np.std([0.10, 0.14], ddof=1) / 0.12
    pooled = report["pooled_rel_sd"]
    assert pooled["point mm_image_weight=0.1 (diagnostic)"] == pytest.approx(rel / np.sqrt(2))
    assert pooled["best epoch"] == pytest.approx(0.0)  # 0.5 on every seed


def test_run_refuses_to_resume_another_catalogs_curves(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())  # demo.seed 2024
    out = tmp_path / "runs.json"
    out.write_text(json.dumps({"catalog": 7, "adapt_epochs": 18, "runs": [{"seed": 999, "points": []}]}))
    with pytest.raises(SystemExit, match="curves of catalog 7.*has 2024; give another --out"):
        sn.run(tmp_path, [999], out)
    assert json.loads(out.read_text())["runs"] == [{"seed": 999, "points": []}]  # left as it was
