"""Tests for bayesda.data.climatology: harmonic mean/variance climatology and anomalies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayesda.data.climatology import Climatology, design_matrix
from bayesda.data.split import split_dataset
from bayesda.geo.grid import Grid


@pytest.fixture(scope="module")
def ncep_train(ncep):
    return split_dataset(ncep)[0]


@pytest.fixture(scope="module")
def clim(ncep_train):
    return Climatology.fit(ncep_train["tas"], n_harmonics=3)


def _synthetic(times, grid, *, seed=0, noise=0.5):
    """tas = 280 + 10 cos(phi) + 3 sin(2 phi) + diurnal + noise, exactly in the model class."""
    x = design_matrix(times, 2)
    hour = pd.DatetimeIndex(times).hour.values
    mean = 280.0 + 10.0 * x[:, 1] + 3.0 * x[:, 4] + 2.0 * np.cos(2 * np.pi * hour / 24)
    rng = np.random.default_rng(seed)
    values = mean[:, None, None] + noise * rng.standard_normal((times.size, *grid.shape))
    da = xr.DataArray(
        values.astype(np.float32),
        dims=("time", "lat", "lon"),
        coords={"time": times, **grid.coords()},
        name="tas",
    )
    return da, mean


def test_recovers_known_mean(small_grid):
    times = pd.date_range("2010-01-01", "2011-12-31T18", freq="6h").values
    da, mean = _synthetic(times, small_grid)
    c = Climatology.fit(da, n_harmonics=2)
    err = c.mean(times).values - mean[:, None, None]
    # Per pixel and hour, 5 coefficients are fitted to 730 samples with noise sd 0.5 K: the
    # fitted mean has standard error about 0.5 * sqrt(5 / 730) = 0.04 K; allow 6 of them.
    assert np.abs(err).max() < 6 * 0.5 * np.sqrt(5 / 730)
    sd = c.std(times).values
    assert abs(sd.mean() - 0.5) < 0.03


def test_ncep_anomaly_mean_near_zero_by_month_and_hour(clim, ncep_train):
    anom = clim.to_anomaly(ncep_train["tas"])
    # Exact: least squares with an intercept leaves residuals of zero mean per hour bin.
    by_hour = anom.groupby("time.hour").mean()
    assert float(np.abs(by_hour).max()) < 1e-3
    # Statistical: a (month, hour) bin holds ~45 six-hourly fields but only ~6 independent
    # weeks (2 years x ~3 training weeks a month; weather decorrelates in days), so a bin
    # mean has standard error ~ sd / sqrt(6) ~ 0.41 sd by chance alone. The smooth
    # 3-harmonic cycle must leave bin means within that (measured: rms 0.19 sd).
    key = anom["time"].dt.month * 100 + anom["time"].dt.hour
    bins = anom.groupby(key).mean()
    sd = float(anom.std())
    rms = float(np.sqrt((bins**2).mean()))
    assert rms < sd / np.sqrt(6)
    # The same criterion catches a climatology without the seasonal cycle.
    flat = Climatology.fit(ncep_train["tas"].isel(time=slice(0, 300)), n_harmonics=3)
    assert flat.n_harmonics == 0
    anom0 = flat.to_anomaly(ncep_train["tas"])
    rms0 = float(np.sqrt((anom0.groupby(key).mean() ** 2).mean()))
    assert rms0 > sd / np.sqrt(6)


def test_round_trip(clim, ncep):
    tas = ncep["tas"].isel(time=slice(-50, None))
    anom = clim.to_anomaly(tas)
    assert anom.dtype == np.float32 and anom.attrs["units"] == "K"
    back = clim.from_anomaly(anom)
    np.testing.assert_allclose(back.values, tas.values, rtol=0, atol=3e-5)
    xr.testing.assert_equal(back["time"], tas["time"])


def test_scalar_time_and_interpolated_hours(clim):
    m12 = clim.mean("2014-01-07T12").values
    m18 = clim.mean(np.datetime64("2014-01-07T18")).values
    m15 = clim.mean(pd.Timestamp("2014-01-07T15"))
    assert m15.dims == ("lat", "lon")
    # midway between the fitted hours 12 and 18 (the annual phase moves negligibly in 3 h)
    np.testing.assert_allclose(m15.values, 0.5 * (m12 + m18), atol=0.02)
    # 21 UTC interpolates cyclically between 18 and 00 of the next day
    m21 = clim.mean("2014-01-07T21").values
    m00 = clim.mean("2014-01-08T00").values
    np.testing.assert_allclose(m21, 0.5 * (m18 + m00), atol=0.02)


def test_std_is_seasonal_and_positive(clim):
    jan = clim.std("2014-01-15T12").values
    jul = clim.std("2014-07-15T12").values
    assert np.all(jan > 0) and np.all(jul > 0)
    # continental winter is more variable than summer
    assert np.median(jan) > 1.5 * np.median(jul)


def test_netcdf_round_trip(clim, tmp_path):
    path = clim.to_netcdf(tmp_path / "sub" / "clim.nc")
    assert [p.name for p in path.parent.iterdir()] == ["clim.nc"]
    back = Climatology.from_netcdf(path)
    times = pd.date_range("2014-03-01", periods=5, freq="5h").values
    np.testing.assert_array_equal(back.mean(times).values, clim.mean(times).values)
    np.testing.assert_array_equal(back.std(times).values, clim.std(times).values)
    assert back.grid == clim.grid
    assert back.attrs["n_harmonics"] == 3
    assert back.attrs["period_start"].startswith("2013-01-01")


def test_era5_month_uses_hourly_means(data_dir):
    pytest.importorskip("cfgrib")
    from bayesda.data.datasets import load_dataset

    ds = load_dataset("era5-uk", data_dir)
    c = Climatology.fit(ds["tas"], n_harmonics=3)
    assert c.n_harmonics == 0 and c.attrs["n_harmonics_requested"] == 3
    assert c.hours.size == 24
    anom = c.to_anomaly(ds["tas"])
    np.testing.assert_allclose(anom.groupby("time.hour").mean().values, 0.0, atol=1e-3)


def test_errors(clim, small_grid):
    other = Grid(lat=np.linspace(0, 10, 3), lon=np.linspace(0, 10, 3))
    field = other.template().expand_dims(time=[np.datetime64("2014-01-01")])
    with pytest.raises(ValueError, match="differs from the climatology"):
        clim.to_anomaly(field)
    with pytest.raises(ValueError, match="time coordinate"):
        clim.to_anomaly(clim.grid.template())
    with pytest.raises(ValueError, match="dims"):
        Climatology.fit(small_grid.template())
    with pytest.raises(ValueError, match="n_harmonics=-1"):
        Climatology.fit(field, n_harmonics=-1)
