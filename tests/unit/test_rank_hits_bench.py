"""``benchmarks/rank_hits.py``: its rank-counting candidate gives cliper's hits, both forms are timed
on the same evaluation, and the report says whether their hits agree."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import rank_hits as bench  # noqa: E402

from cliper.evaluate import rank_hits  # noqa: E402


def test_the_candidate_gives_clipers_hits_and_a_wrong_ranking_is_seen() -> None:
    user_emb, item_emb, target = bench.case(50, 80, 5, 1.5)
    scores = user_emb @ item_emb.T
    counted = bench.counted_hits(lambda u: scores[u].clone(), target, 10, 16)
    assert counted.sum() > 5
    np.testing.assert_array_equal(counted, rank_hits(lambda u: scores[u], target, 10, 16))
    assert not np.array_equal(counted, rank_hits(lambda u: -scores[u], target, 10, 16))


def test_main_writes_both_forms_per_shape_and_thread_count(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(bench, "SHAPES", {"small": (60, 90, 4, 1.5), "other": (40, 70, 3, 1.2)})
    monkeypatch.setattr(sys, "argv", ["rank_hits.py", "--rounds", "2", "--threads", "1",
                                      "--out", str(tmp_path)])
    threads = torch.get_num_threads()
    try:
        bench.main()
    finally:
        torch.set_num_threads(threads)
    result = json.loads((tmp_path / "rank_hits.json").read_text())
    assert [r["shape"] for r in result["results"]] == ["small", "other"]
    assert all(r["same_hits"] and set(r["seconds"]) == set(bench.FORMS) for r in result["results"])
    assert all(len(v) == 2 for r in result["results"] for v in r["seconds_rounds"].values())
    table = (tmp_path / "rank_hits.md").read_text().splitlines()
    assert table[-2].startswith("| small |") and table[-1].endswith("| yes |")
