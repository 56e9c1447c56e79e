"""Train / test / validation splits of a time series in whole blocks of days.

Weather is correlated over days, so a random split of times would leak: a held-out field
would have near-copies six hours either side in the training set. bayesda therefore splits
in blocks:

* the times are cut into consecutive blocks of ``block_days`` days counted from the first
  time (block ``b`` holds times ``t`` with ``floor((t - t0) / block_days) == b``);
* block ``b`` is held out for testing when ``b % every == every - 1``: by default every 4th
  7-day week, so that the test set samples every season (and both years of NCEP) while a
  3-week gap of training data lies between consecutive test weeks.

For NCEP 2013-2014 (2920 six-hourly times) this gives 2192 training and 728 test times.

For early stopping, :func:`validation_split` holds out whole blocks of the *training* times,
spread evenly across the period, deterministically.

Blocks only make held-out fields independent when the flow forgets its state within about
half a block. :func:`pattern_correlation` measures that memory and :func:`leakage_warning`
says when it is too long (a field still correlated above ``LEAK_CORRELATION`` at half a
block): the real atmosphere (NCEP: 0.19 at 3.5 days) and Held-Suarez (0.20) pass; the
quasi-geostrophic turbulence of :mod:`bayesda.sim.qg` does not (0.99 at 3.5 days; 0.53 at 30
days), and there block-split scores measured memory of one trajectory
(``analysis/split_independence/results/split_independence.md``).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = [
    "BLOCK_DAYS",
    "EVERY",
    "VALIDATION_FRACTION",
    "block_index",
    "block_split",
    "leak_message",
    "leakage_warning",
    "pattern_correlation",
    "split_dataset",
    "validation_split",
]

BLOCK_DAYS = 7
EVERY = 4
VALIDATION_FRACTION = 0.15
LEAK_CORRELATION = 0.5
"""Pattern correlation at half a block above which held-out blocks are not independent."""


def _as_times(times) -> np.ndarray:
    t = np.asarray(times)
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"times must be a non-empty 1-D array, got shape {t.shape}")
    if not np.issubdtype(t.dtype, np.datetime64):
        try:
            t = t.astype("datetime64[ns]")
        except (TypeError, ValueError) as err:
            raise ValueError(f"times must be datetime64, got dtype {t.dtype}") from err
    if np.any(np.isnat(t)):
        raise ValueError(f"times contain NaT at index {int(np.flatnonzero(np.isnat(t))[0])}")
    return t


def block_index(times, block_days: float = BLOCK_DAYS) -> np.ndarray:
    """``[n]`` int block number of each time: whole ``block_days`` since the earliest time.

    Args:
      times: ``[n]`` datetime64 (any order).
      block_days: block length in days, > 0.
    """
    if not block_days > 0:
        raise ValueError(f"{block_days=} must be > 0")
    t = _as_times(times)
    days = (t - t.min()) / np.timedelta64(1, "D")
    return np.floor(days / block_days).astype(np.int64)


def block_split(
    times, block_days: float = BLOCK_DAYS, every: int = EVERY
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks ``(train, test)`` over ``times``: every ``every``-th block is held out.

    Args:
      times: ``[n]`` datetime64.
      block_days: block length in days.
      every: hold out block ``b`` when ``b % every == every - 1``; must be >= 2.

    Returns:
      ``(train, test)``, each ``[n]`` bool, complementary.
    """
    if int(every) != every or every < 2:
        raise ValueError(f"{every=} must be an integer >= 2")
    b = block_index(times, block_days)
    test = b % every == every - 1
    return ~test, test


def split_dataset(
    ds: xr.Dataset | xr.DataArray, block_days: float = BLOCK_DAYS, every: int = EVERY
) -> tuple:
    """Split along ``time`` with :func:`block_split`; returns ``(train, test)`` objects."""
    train, test = block_split(ds["time"].values, block_days, every)
    return ds.isel(time=np.flatnonzero(train)), ds.isel(time=np.flatnonzero(test))


def validation_split(
    train_times, fraction: float = VALIDATION_FRACTION, block_days: float = BLOCK_DAYS
) -> tuple[np.ndarray, np.ndarray]:
    """Hold out whole blocks of the training times for validation (early stopping).

    The distinct ``block_days`` blocks present in ``train_times`` (counted from their
    earliest time) are ranked in time; ``k = max(1, round(fraction * n_blocks))`` of them,
    evenly spaced (the middle block of each of ``k`` equal runs), are held out. Deterministic,
    no randomness.

    Args:
      train_times: ``[n]`` datetime64 times of the training set.
      fraction: target fraction of blocks to hold out, in (0, 1).
      block_days: block length in days.

    Returns:
      ``(fit, val)``, each ``[n]`` bool over ``train_times``, complementary.

    Raises:
      ValueError: bad ``fraction`` or fewer than 2 blocks.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"{fraction=} must be in (0, 1)")
    b = block_index(train_times, block_days)
    blocks = np.unique(b)
    if blocks.size < 2:
        raise ValueError(f"need >= 2 blocks of {block_days} days to validate, got {blocks.size}")
    k = int(min(max(1, round(fraction * blocks.size)), blocks.size - 1))
    picks = blocks[((np.arange(k) + 0.5) * blocks.size / k).astype(np.int64)]
    val = np.isin(b, picks)
    return ~val, val


def pattern_correlation(anomalies, times, lag_days: float) -> float | None:
    """Mean uncentred correlation of anomaly maps exactly ``lag_days`` apart.

    Pairs are found by time, so gaps (e.g. held-out blocks) are allowed; fields with NaN
    are dropped pixel-wise (only pixels finite in both maps count).

    Args:
      anomalies: ``[n, ...]`` anomaly fields.
      times: ``[n]`` datetime64, increasing.
      lag_days: the lag, days, > 0.

    Returns:
      The mean over pairs, or None when no two times are ``lag_days`` apart.
    """
    if not lag_days > 0:
        raise ValueError(f"{lag_days=} must be > 0")
    t = _as_times(times)
    x = np.asarray(anomalies, np.float64).reshape(len(t), -1)
    if x.shape[0] != t.size:
        raise ValueError(f"{x.shape[0]} fields for {t.size} times")
    if np.any(np.diff(t) <= np.timedelta64(0, "ns")):
        raise ValueError("times must be strictly increasing")
    lag = np.timedelta64(int(round(lag_days * 86400e9)), "ns")
    j = np.searchsorted(t, t + lag)
    i = np.flatnonzero((j < t.size) & (t[np.minimum(j, t.size - 1)] == t + lag))
    if i.size == 0:
        return None
    a, b = np.nan_to_num(x[i]), np.nan_to_num(x[j[i]])
    den = np.sqrt(np.sum(a * a, axis=1) * np.sum(b * b, axis=1))
    ok = den > 0
    return float(np.mean(np.sum(a * b, axis=1)[ok] / den[ok])) if ok.any() else None


def leakage_warning(anomalies, times, block_days: float = BLOCK_DAYS) -> str | None:
    """A message when held-out blocks would leak, else None.

    The check is :func:`pattern_correlation` at half a block (a test field's largest
    distance to a training field) against :data:`LEAK_CORRELATION` (:func:`leak_message`).
    """
    return leak_message(pattern_correlation(anomalies, times, block_days / 2), block_days)


def leak_message(half_block_corr: float | None, block_days: float = BLOCK_DAYS) -> str | None:
    """The :func:`leakage_warning` message for a pattern correlation already measured at
    half a block (None: no pair that far apart, nothing to say)."""
    if half_block_corr is None or half_block_corr <= LEAK_CORRELATION:
        return None
    return (
        f"anomaly maps {block_days / 2:g} days apart still correlate at {half_block_corr:.2f} "
        f"(> {LEAK_CORRELATION}): test blocks of {block_days:g} days are neighbours of "
        "training fields, so held-out scores measure memory of the training period; "
        "use longer blocks or a later, separate test period"
    )
