"""Tests for bayesda.data.split: blockwise train/test/validation splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayesda.data.split import block_index, block_split, split_dataset, validation_split


def test_ncep_split_sizes(ncep):
    train, test = block_split(ncep["time"].values)
    assert (int(train.sum()), int(test.sum())) == (2192, 728)
    tr, te = split_dataset(ncep)
    assert tr.sizes["time"] == 2192 and te.sizes["time"] == 728
    assert np.intersect1d(tr.time, te.time).size == 0


def test_blocks_are_whole_weeks():
    times = pd.date_range("2013-01-01", periods=8 * 28, freq="6h").values
    b = block_index(times)
    np.testing.assert_array_equal(np.bincount(b), [28] * 8)
    train, test = block_split(times)
    np.testing.assert_array_equal(np.unique(b[test]), [3, 7])
    assert np.array_equal(train, ~test)


def test_order_does_not_matter():
    times = pd.date_range("2013-01-01", periods=200, freq="D").values
    perm = np.random.default_rng(0).permutation(times.size)
    _, test = block_split(times)
    _, test_perm = block_split(times[perm])
    np.testing.assert_array_equal(test[perm], test_perm)


def test_validation_split_blockwise(ncep):
    train, _ = block_split(ncep["time"].values)
    t = ncep["time"].values[train]
    fit, val = validation_split(t, fraction=0.15)
    assert np.array_equal(fit, ~val)
    assert 0.10 < val.mean() < 0.20
    b = block_index(t)
    # whole blocks: no block is split between fit and val
    for blk in np.unique(b[val]):
        assert val[b == blk].all()
    # spread over the period: validation in both years
    years = pd.DatetimeIndex(t[val]).year
    assert set(years) == {2013, 2014}
    fit2, val2 = validation_split(t, fraction=0.15)
    np.testing.assert_array_equal(val, val2)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda t: block_split(t, every=1), "every=1"),
        (lambda t: block_split(t, block_days=0), "block_days=0"),
        (lambda t: block_split(t[:0]), "non-empty"),
        (lambda t: validation_split(t, fraction=1.5), "fraction=1.5"),
        (lambda t: validation_split(t[:3]), ">= 2 blocks"),
    ],
    ids=["every", "block-days", "empty", "fraction", "one-block"],
)
def test_errors(call, match):
    times = pd.date_range("2013-01-01", periods=100, freq="D").values
    with pytest.raises(ValueError, match=match):
        call(times)


def _ar1_fields(n: int, rho: float, seed: int = 0) -> np.ndarray:
    """``[n, 4, 5]`` fields whose maps correlate at ``rho ** k`` k steps apart."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, 4, 5))
    x[0] = rng.standard_normal((4, 5))
    for k in range(1, n):
        x[k] = rho * x[k - 1] + np.sqrt(1 - rho**2) * rng.standard_normal((4, 5))
    return x


def test_pattern_correlation_of_an_ar1_sequence_and_gaps():
    from bayesda.data.split import pattern_correlation

    times = np.datetime64("2000-01-01") + np.arange(4000) * np.timedelta64(1, "D")
    x = _ar1_fields(4000, 0.8)
    # uncentred correlation of two maps of 20 pixels: about rho ** lag, with noise ~ 1/sqrt(20)
    # per pair, averaged over ~4000 pairs
    assert abs(pattern_correlation(x, times, 1) - 0.8) < 0.03
    assert abs(pattern_correlation(x, times, 3) - 0.512) < 0.03
    keep = (np.arange(4000) // 7) % 4 != 3  # block gaps: pairs are found by time
    assert abs(pattern_correlation(x[keep], times[keep], 1) - 0.8) < 0.03
    assert pattern_correlation(x[:2], times[:2], 5) is None
    with pytest.raises(ValueError, match="increasing"):
        pattern_correlation(x[::-1], times[::-1], 1)
    with pytest.raises(ValueError, match="lag_days"):
        pattern_correlation(x, times, 0)


def test_leakage_warning_fires_for_long_memory_only():
    from bayesda.data.split import leakage_warning

    times = np.datetime64("2000-01-01") + np.arange(2000) * np.timedelta64(6, "h")
    assert leakage_warning(_ar1_fields(2000, 0.5), times) is None  # forgets within a day
    msg = leakage_warning(_ar1_fields(2000, 0.995), times)  # 0.995 ** 14 = 0.93 at 3.5 days
    assert msg is not None and "3.5 days" in msg and "neighbours" in msg
