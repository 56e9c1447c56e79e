"""Reanalysis mode: every time lands in the zarr store exactly once, runs resume, settings guard."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayesda.outputs import store
from bayesda.testing import make_linear_prior, make_obs
from bayesda.workflows.reanalysis import ReanalysisSettings, analysis_times, reanalyse, time_seed

TIMES = pd.date_range("2014-01-01", periods=3, freq="6h")
FAST = ReanalysisSettings(num_chains=2, num_warmup=100, num_samples=100, keep_samples=3)


def _multi_time_obs(grid, n=6):
    frames = []
    for k, t in enumerate(TIMES):
        df = make_obs(grid, n + k, seed=10 + k)
        df["time"] = t
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def prior():
    return make_linear_prior(latent_dim=3)


def test_time_seed_depends_on_time_not_order():
    a, b = time_seed(0, TIMES[0]), time_seed(0, TIMES[1])
    assert a != b
    assert a == time_seed(0, np.datetime64(TIMES[0]))
    assert time_seed(1, TIMES[0]) != a


def test_analysis_times_range_and_errors():
    obs = pd.DataFrame(
        {"time": TIMES.repeat(2), "lat": 0.0, "lon": 0.0, "value": 0.0, "sigma": 1.0}
    )
    assert analysis_times(obs).size == 3
    assert analysis_times(obs, start="2014-01-01T06", end="2014-01-01T06").size == 1
    with pytest.raises(ValueError, match="no observation times"):
        analysis_times(obs, start="2015-01-01")
    with pytest.raises(ValueError, match="'time' column"):
        analysis_times(obs.drop(columns="time"))


def test_reanalyse_in_process_and_resume(prior, tmp_path):
    obs = _multi_time_obs(prior.grid)
    out = tmp_path / "r.zarr"
    reanalyse(prior, obs, out, settings=FAST, progress=False)
    ds = xr.open_zarr(out, consolidated=False).load()
    assert ds["done"].all()
    np.testing.assert_array_equal(ds["time"].values, TIMES.values)
    assert np.isfinite(ds["mean"]).all() and (ds["sd"] > 0).all()
    assert ds["samples"].shape == (3, 3, *prior.grid.shape)
    np.testing.assert_array_equal(ds["n_obs"].values, [6, 7, 8])
    assert set(np.unique(ds["verdict"].values)) <= {0, 1, 2}
    # Resume after "losing" the middle time: only it is redone, to the same values.
    before = ds["mean"].values.copy()
    xr.Dataset({"done": ("time", np.array([False]))}).to_zarr(
        out, region={"time": slice(1, 2)}, consolidated=False
    )
    assert store.pending(out).tolist() == [1]
    reanalyse(prior, obs, out, settings=FAST, progress=False)
    again = xr.open_zarr(out, consolidated=False).load()
    assert again["done"].all()
    np.testing.assert_allclose(again["mean"].values, before, rtol=1e-5, atol=1e-6)


def test_resume_with_other_settings_is_refused(prior, tmp_path):
    obs = _multi_time_obs(prior.grid)
    out = tmp_path / "r.zarr"
    quick = ReanalysisSettings(method="laplace", num_chains=1, num_samples=50)
    reanalyse(prior, obs, out, settings=quick, progress=False)
    with pytest.raises(store.StoreMismatchError, match="other settings"):
        reanalyse(
            prior,
            obs,
            out,
            settings=ReanalysisSettings(method="laplace", seed=1, num_chains=1, num_samples=50),
            progress=False,
        )
    with pytest.raises(store.StoreMismatchError, match="times"):
        reanalyse(prior, obs, out, end=TIMES[1], settings=quick, progress=False)


def test_batched_times_fill_the_store_and_resume_with_any_batch_size(prior, tmp_path):
    obs = _multi_time_obs(prior.grid)
    one, two = tmp_path / "one.zarr", tmp_path / "two.zarr"
    reanalyse(prior, obs, one, settings=FAST, progress=False)
    batched = ReanalysisSettings(**{**FAST.__dict__, "batch_times": 2})  # groups [0, 1], [2]
    reanalyse(prior, obs, two, settings=batched, progress=False)
    a = xr.open_zarr(one, consolidated=False).load()
    b = xr.open_zarr(two, consolidated=False).load()
    assert b["done"].all()
    np.testing.assert_array_equal(a["n_obs"].values, b["n_obs"].values)
    # Both are posterior samples of the same posteriors (200 draws each): their means agree
    # to Monte Carlo error, well within half a posterior SD everywhere.
    assert float(np.max(np.abs(a["mean"] - b["mean"]) / a["sd"])) < 0.5
    # batch_times is an execution setting: a resume may change it.
    xr.Dataset({"done": ("time", np.array([False]))}).to_zarr(
        two, region={"time": slice(0, 1)}, consolidated=False
    )
    reanalyse(prior, obs, two, settings=FAST, progress=False)
    assert xr.open_zarr(two, consolidated=False)["done"].all()
    with pytest.raises(ValueError, match="batch_times"):
        ReanalysisSettings(batch_times=0)


def test_write_times_splits_runs_of_indices_and_checksums_each_time(prior, tmp_path):
    path = tmp_path / "w.zarr"
    times = np.array(pd.date_range("2014-01-01", periods=5, freq="6h"), "datetime64[ns]")
    store.open_or_create(path, times, prior.grid, n_samples=0, signature={})
    shape = prior.grid.shape

    def result(k):
        ds = xr.Dataset({v: (("lat", "lon"), np.full(shape, k, np.float32)) for v in ("mean",)})
        ds["n_obs"] = ((), np.int32(k))
        return ds

    store.write_times(path, [0, 1, 3], [result(10), result(11), result(13)])  # runs [0,1], [3]
    back = xr.open_zarr(path, consolidated=False).load()
    np.testing.assert_array_equal(back["done"].values, [True, True, False, True, False])
    np.testing.assert_array_equal(back["n_obs"].values[[0, 1, 3]], [10, 11, 13])
    assert float(back["mean"][3].mean()) == 13.0
    assert store.verify(path) == {}  # every written time has its own checksum
    np.testing.assert_array_equal(store.pending(path), [2, 4])
    with pytest.raises(ValueError, match="ascending"):
        store.write_times(path, [3, 2], [result(1), result(2)])


def test_a_failed_store_write_stops_the_run_with_its_error(prior, tmp_path, monkeypatch):
    obs = _multi_time_obs(prior.grid)
    calls = []

    def broken(path, indices, results):
        calls.append(list(indices))
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(store, "write_times", broken)
    one = ReanalysisSettings(**{**FAST.__dict__, "keep_samples": 0})
    with pytest.raises(OSError, match="disk full"):
        reanalyse(prior, obs, tmp_path / "x.zarr", settings=one, progress=False)
    assert calls and len(calls) <= 2  # stopped at the next group, not after all of them
