"""Bootstrap interval over test users (cliper/uncertainty.py) and its place in the evaluate stage."""

from __future__ import annotations

import numpy as np
import pytest

from cliper import uncertainty


def test_bootstrap_sd_matches_the_standard_error_of_a_mean() -> None:
    values = np.random.default_rng(1).binomial(1, 0.1, size=2000).astype(float)
    ci = uncertainty.bootstrap_interval(values, n_resamples=2000, level=0.95, seed=0)
    se = values.std() / np.sqrt(len(values))
    assert ci["mean"] == pytest.approx(values.mean())
    assert ci["sd"] == pytest.approx(se, rel=0.08)
    assert ci["low"] < ci["mean"] < ci["high"]
    assert ci["high"] - ci["low"] == pytest.approx(2 * 1.96 * se, rel=0.1)
    assert ci["rel_sd"] == pytest.approx(ci["sd"] / ci["mean"])


def test_chunked_resampling_gives_the_same_means(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks bound the memory; they must not change the draws or drop resamples."""
    values = np.random.default_rng(2).random(300)
    whole = uncertainty.bootstrap_means(values, 50, seed=3)
    monkeypatch.setattr(uncertainty, "MAX_CELLS", 7 * 300)  # 7 resamples per chunk: 8 chunks
    chunked = uncertainty.bootstrap_means(values, 50, seed=3)
    assert len(chunked) == 50 and np.array_equal(whole, chunked)


def test_more_users_narrow_the_interval() -> None:
    rng = np.random.default_rng(4)
    small, large = (uncertainty.bootstrap_interval(rng.binomial(1, 0.1, n).astype(float), 500, 0.9, 0)
                    for n in (500, 8000))
    assert (large["high"] - large["low"]) < 0.5 * (small["high"] - small["low"])


@pytest.mark.parametrize("bad", [np.array([]), np.zeros((2, 2))])
def test_bad_inputs_are_refused(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="non-empty 1-d"):
        uncertainty.bootstrap_interval(bad, 10, 0.95, 0)
    with pytest.raises(ValueError, match="level"):
        uncertainty.bootstrap_interval(np.ones(3), 10, 1.0, 0)


def test_paired_gain_sees_a_small_consistent_gain_that_unpaired_noise_hides() -> None:
    """Model B hits what A hits plus 5% more users: paired, the whole interval is above 0."""
    rng = np.random.default_rng(5)
    a = rng.binomial(1, 0.1, size=(3, 1200)).astype(float)
    b = np.maximum(a, rng.binomial(1, 0.006, size=a.shape))  # never worse for any user
    paired = uncertainty.paired_gain_interval([b], [a], 1000, 0.95, seed=0)
    assert paired["gain"] == pytest.approx(b.mean() / a.mean() - 1)
    assert 0 < paired["low"] < paired["gain"] < paired["high"] and paired["share_positive"] == 1.0
    single = uncertainty.bootstrap_interval(a.mean(0), 1000, 0.95, 0)
    assert single["high"] - single["low"] > b.mean() - a.mean(), "one model's interval is wider than the gain"


def test_paired_gain_pools_groups_and_refuses_unpaired_users() -> None:
    rng = np.random.default_rng(6)
    a1, a2 = rng.random((2, 50)), rng.random((2, 80))
    out = uncertainty.paired_gain_interval([a1 * 1.2, a2 * 1.2], [a1, a2], 200, 0.9, seed=1)
    assert out["gain"] == pytest.approx(0.2) and out["low"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="same groups of test users"):
        uncertainty.paired_gain_interval([a1], [a2], 10, 0.9, 0)
