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
