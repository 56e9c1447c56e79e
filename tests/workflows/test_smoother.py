"""The smoother (bayesda.workflows.smoother): which window writes which time, store and resume."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayesda.outputs import store
from bayesda.testing import make_dynamics, make_linear_prior, make_obs
from bayesda.workflows.reanalysis import ReanalysisSettings, reanalyse, time_seed
from bayesda.workflows.smoother import plan_windows, reanalyse_smoother

STEP = np.timedelta64(6, "h")
T0 = np.datetime64("2014-01-01T00", "ns")
QUICK = ReanalysisSettings(method="laplace", num_chains=2, num_samples=200)


@pytest.fixture(scope="module")
def prior():
    p = make_linear_prior(latent_dim=3)
    return dataclasses.replace(p, dynamics=make_dynamics(3, repr_corr=0.5))


def _obs(grid, offsets):
    frames = []
    for k in offsets:
        df = make_obs(grid, 5, seed=20 + k)
        df["time"] = T0 + k * STEP
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize(("n", "s"), [(5, 1), (5, 3), (5, 5), (9, 5)])
def test_every_time_is_written_once_from_a_window_where_it_is_central(n, s):
    offsets = np.array([0, 1, 2, 4, 5, 9, 10, 11, 12, 20])  # gaps: unobserved model times
    times = T0 + offsets * STEP
    plan = plan_windows(times, 6.0, n, s)
    written = np.concatenate([w.indices for w in plan])
    assert sorted(written.tolist()) == list(range(times.size))
    for w in plan:
        assert w.times.size == n and np.all(np.diff(w.times) == STEP)
        np.testing.assert_array_equal(w.times[w.write], times[w.indices])
        # at least (n - s) / 2 steps of context on either side of a written time
        assert w.write.min() >= (n - s) // 2 and w.write.max() <= n - 1 - (n - s) // 2
    if s == 1:  # every time from the window centred on it
        assert all(w.write.tolist() == [n // 2] for w in plan)


def test_plan_refuses_bad_settings():
    times = T0 + np.arange(3) * STEP
    with pytest.raises(ValueError, match="odd"):
        plan_windows(times, 6.0, 4, 1)
    with pytest.raises(ValueError, match="stride=7"):
        plan_windows(times, 6.0, 5, 7)
    with pytest.raises(ValueError, match="whole number"):
        plan_windows(np.append(times, T0 + np.timedelta64(7, "h")), 6.0, 5, 1)


def test_store_consistent_with_the_centred_window_and_resumable(prior, tmp_path):
    from bayesda.inference.window import assimilate_window

    obs = _obs(prior.grid, [0, 1, 3, 4])
    out = tmp_path / "s.zarr"
    reanalyse_smoother(prior, obs, out, settings=QUICK, window_times=3, stride=1, progress=False)
    ds = xr.open_zarr(out, consolidated=False).load()
    assert ds["done"].all() and ds.sizes["time"] == 4
    np.testing.assert_array_equal(ds["n_obs"].values, [5, 5, 5, 5])
    # stride 1: each time is the middle of the window centred on it, with that window's seed
    t = T0 + 3 * STEP
    frames = [obs[pd.to_datetime(obs["time"]) == t + k * STEP] for k in (-1, 0, 1)]
    a = assimilate_window(
        prior,
        frames,
        [t - STEP, t, t + STEP],
        seed=time_seed(QUICK.seed, t),
        sampler=QUICK.sampler,
        want=[1],
    )[0]
    np.testing.assert_allclose(ds["mean"].values[2], a.field.mean((0, 1)), rtol=1e-5, atol=1e-5)
    # resume after losing a time: only it is redone, to the same values
    before = ds["mean"].values.copy()
    store.mark_pending(out, [1])
    reanalyse_smoother(prior, obs, out, settings=QUICK, window_times=3, stride=1, progress=False)
    again = xr.open_zarr(out, consolidated=False).load()
    assert again["done"].all()
    np.testing.assert_allclose(again["mean"].values, before, rtol=1e-6, atol=1e-6)
    # another window rule, or the single-time reanalysis, cannot resume this store
    with pytest.raises(store.StoreMismatchError, match="smoother"):
        reanalyse_smoother(
            prior, obs, out, settings=QUICK, window_times=3, stride=3, progress=False
        )
    with pytest.raises(store.StoreMismatchError, match="smoother"):
        reanalyse(prior, obs, out, settings=QUICK, progress=False)


def test_neighbours_sharpen_the_smoothed_analysis(prior, tmp_path):
    obs = _obs(prior.grid, [0, 1, 2, 3, 4])
    single = tmp_path / "a.zarr"
    smooth = tmp_path / "b.zarr"
    reanalyse(prior, obs, single, settings=QUICK, progress=False)
    reanalyse_smoother(prior, obs, smooth, settings=QUICK, window_times=5, stride=1, progress=False)
    a = xr.open_zarr(single, consolidated=False)["sd"].values.mean()
    b = xr.open_zarr(smooth, consolidated=False)["sd"].values.mean()
    assert b < a


def test_smoother_needs_dynamics(tmp_path):
    p = make_linear_prior(latent_dim=3)
    with pytest.raises(ValueError, match="latent dynamics"):
        reanalyse_smoother(p, _obs(p.grid, [0]), tmp_path / "x.zarr", settings=QUICK)
