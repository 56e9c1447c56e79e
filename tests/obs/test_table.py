"""Tests for bayesda.obs.table: observation tables, reading/writing, pseudo-observations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayesda.data.climatology import Climatology
from bayesda.geo.grid import Grid
from bayesda.obs.table import pseudo_obs, read_obs, validate_obs, write_obs

TIME = np.datetime64("2014-01-07T12:00", "ns")


def _table(**overrides) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "lat": [40.0, 45.0, 50.0],
            "lon": [-100.0, 260.0, -90.0],
            "value": [1.0, -2.0, 0.5],
            "sigma": [0.5, 0.5, 1.0],
        }
    )
    for k, v in overrides.items():
        df[k] = v
    return df


def _linear_field(grid: Grid, time=TIME) -> xr.DataArray:
    lat, lon = np.meshgrid(grid.lat, grid.lon, indexing="ij")
    return xr.DataArray(
        280.0 + 0.5 * lat + 0.1 * lon, dims=("lat", "lon"), coords={**grid.coords(), "time": time}
    )


@pytest.fixture(scope="module")
def linear_clim(small_grid):
    """A climatology whose mean is 280 + 0.5 lat + 0.1 lon K at every time."""
    times = pd.date_range("2014-01-01", periods=40, freq="6h").values
    field = _linear_field(small_grid).drop_vars("time")
    da = field.expand_dims(time=times).transpose("time", "lat", "lon")
    return Climatology.fit(da)


def test_validate_cleans_copy():
    df = _table()
    out = validate_obs(df)
    assert out is not df and df["lon"].iloc[1] == 260.0
    np.testing.assert_array_equal(out["lon"], [-100.0, -100.0, -90.0])
    assert all(out[c].dtype == np.float64 for c in ("lat", "lon", "value", "sigma"))
    assert list(out.columns) == ["lat", "lon", "value", "sigma"]


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(value=[1.0, np.nan, 0.0]), r"non-finite value; first at row 1"),
        (dict(lat=[40.0, 45.0, np.inf]), r"non-finite lat; first at row 2"),
        (dict(sigma=[0.5, np.nan, 1.0]), r"non-finite sigma; first at row 1"),
        (dict(sigma=[0.5, 0.0, 1.0]), r"sigma <= 0; first at row 1 .*sigma=0.0"),
        (dict(lat=[40.0, 95.0, 50.0]), r"lat outside \[-90, 90\]; first at row 1 .*lat=95.0"),
        (dict(lon=[-100.0, 361.0, 0.0]), r"lon outside \[-180, 360\]; first at row 1"),
        (dict(lon=[-100.0, -181.0, 0.0]), r"lon outside \[-180, 360\]"),
        (dict(value=["1", "x", "2"]), r"column 'value' must be numeric"),
        (dict(time=["2014-01-01", None, "2014-01-01"]), r"missing time; first at row 1"),
    ],
    ids=[
        "nan-value",
        "inf-lat",
        "nan-sigma",
        "zero-sigma",
        "lat-range",
        "lon-high",
        "lon-low",
        "non-numeric",
        "nat-time",
    ],
)
def test_validate_errors_name_the_row(overrides, match):
    with pytest.raises(ValueError, match=match):
        validate_obs(_table(**overrides))


def test_validate_structure_errors():
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['value'\]"):
        validate_obs(_table().drop(columns="value"))
    with pytest.raises(ValueError, match="empty"):
        validate_obs(_table().iloc[:0])
    with pytest.raises(ValueError, match="duplicates='drop'"):
        validate_obs(_table(), duplicates="drop")
    with pytest.raises(TypeError, match="DataFrame"):
        validate_obs({"lat": [1.0]})


def test_validate_grid(small_grid):
    validate_obs(_table(), grid=small_grid)
    with pytest.raises(ValueError, match=r"outside the grid .* row 2 .*lat=60.0"):
        validate_obs(_table(lat=[40.0, 45.0, 60.0]), grid=small_grid)


def test_duplicates():
    df = _table(
        lat=[40.0, 40.0, 50.0],
        lon=[-100.0, 260.0, -90.0],
        value=[1.0, 3.0, 0.0],
        sigma=[1.0, 2.0, 1.0],
        station_id=["a", "b", "c"],
    )
    with pytest.raises(ValueError, match=r"2 observations share a location: row 0 .*row 1"):
        validate_obs(df)
    assert len(validate_obs(df, duplicates="keep")) == 3
    merged = validate_obs(df, duplicates="mean")
    assert len(merged) == 2
    # inverse-variance weights 1 and 1/4: value (1 + 3/4) / (5/4) = 1.4, sigma (5/4)^-1/2
    row = merged.iloc[0]
    assert row["value"] == pytest.approx(1.4) and row["sigma"] == pytest.approx(0.8**0.5)
    assert row["station_id"] == "a+b"
    # equal sigma: the mean and sigma / sqrt(k)
    eq = validate_obs(df.assign(sigma=0.6), duplicates="mean").iloc[0]
    assert eq["value"] == pytest.approx(2.0) and eq["sigma"] == pytest.approx(0.6 / np.sqrt(2))
    # same place at different times is not a duplicate
    timed = df.assign(time=["2014-01-01", "2014-01-02", "2014-01-01"])
    assert len(validate_obs(timed)) == 3


def test_csv_round_trip(tmp_path):
    df = _table(time=[TIME] * 3, station_id=["s1", "s2", "s3"])
    path = write_obs(df, tmp_path / "obs.csv")
    back = read_obs(path)
    pd.testing.assert_frame_equal(back, validate_obs(df), check_like=False)
    assert back.attrs["kind"] == "anomaly"


def test_read_netcdf_with_scalar_time(tmp_path):
    df = _table()
    ds = xr.Dataset({c: ("obs", df[c].to_numpy()) for c in df.columns}, coords={"time": TIME})
    ds.to_netcdf(tmp_path / "obs.nc")
    back = read_obs(tmp_path / "obs.nc")
    assert (back["time"] == TIME).all()
    np.testing.assert_array_equal(back["value"], df["value"])
    with pytest.raises(ValueError, match=r"lacks variable\(s\) \['value'\]"):
        read_obs(ds.drop_vars("value"))


def test_read_absolute_kelvin_and_celsius(small_grid, linear_clim):
    lat = np.array([31.3, 42.0, 54.9])
    lon = np.array([-119.0, -100.3, -86.0])
    clim = 280.0 + 0.5 * lat + 0.1 * lon  # bilinear interpolation is exact on a linear field
    df = pd.DataFrame({"lat": lat, "lon": lon, "value": clim + [1.0, -2.0, 0.25]})
    out = read_obs(df, kind="absolute", climatology=linear_clim, time=TIME)
    # float32 stencil weights (relative error ~6e-8) times ~300 K: errors up to ~2e-5 K
    np.testing.assert_allclose(out["value"], [1.0, -2.0, 0.25], atol=1e-4)
    in_c = df.assign(value=df["value"] - 273.15)
    out_c = read_obs(in_c, units="degC", kind="absolute", climatology=linear_clim, time=TIME)
    np.testing.assert_allclose(out_c["value"], out["value"], atol=1e-6)
    # anomalies in degC are anomalies in K
    np.testing.assert_array_equal(read_obs(_table(), units="degC")["value"], _table()["value"])
    assert df["value"].iloc[0] == clim[0] + 1.0  # input untouched


def test_read_errors(linear_clim):
    df = _table()
    with pytest.raises(ValueError, match="unknown units 'R'"):
        read_obs(df, units="R")
    with pytest.raises(ValueError, match="kind='raw'"):
        read_obs(df, kind="raw")
    with pytest.raises(ValueError, match="needs a climatology"):
        read_obs(df, kind="absolute", time=TIME)
    with pytest.raises(ValueError, match="needs a time"):
        read_obs(df, kind="absolute", climatology=linear_clim)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_obs("/nonexistent/obs.csv")


def test_pseudo_obs_reproducible_and_continuous(small_grid):
    truth = _linear_field(small_grid)
    a = pseudo_obs(truth, 50, seed=3)
    pd.testing.assert_frame_equal(a, pseudo_obs(truth, 50, seed=3))
    assert not a["value"].equals(pseudo_obs(truth, 50, seed=4)["value"])
    assert (a["time"] == TIME).all() and list(a["sigma"].unique()) == [0.5]
    assert not np.isin(a["lat"], small_grid.lat).any()
    assert small_grid.contains(a["lat"], a["lon"]).all()


def test_pseudo_obs_uniform_area_and_noise(small_grid):
    n, sigma = 4000, 0.7
    truth = _linear_field(small_grid)
    obs = pseudo_obs(truth, n, sigma=sigma, seed=0)
    # uniform in sin(lat): E[sin(lat)] is the midpoint, sd of the mean (b - a) / sqrt(12 n)
    a, b = np.sin(np.deg2rad(small_grid.lat[[0, -1]]))
    s = np.sin(np.deg2rad(obs["lat"]))
    assert abs(s.mean() - (a + b) / 2) < 6 * (b - a) / np.sqrt(12 * n)
    noise = obs["value"] - (280.0 + 0.5 * obs["lat"] + 0.1 * obs["lon"])
    assert abs(noise.mean()) < 6 * sigma / np.sqrt(n)
    # sd of the sample sd ~ sigma / sqrt(2 n)
    assert abs(noise.std() - sigma) < 6 * sigma / np.sqrt(2 * n)


def test_pseudo_obs_given_locations(global_grid):
    truth = _linear_field(global_grid).drop_vars("time")
    obs = pseudo_obs(truth, lat=[0.0, 10.0], lon=[350.0, -175.0], sigma=[0.1, 0.2], seed=1)
    np.testing.assert_array_equal(obs["lon"], [-10.0, -175.0])
    np.testing.assert_array_equal(obs["sigma"], [0.1, 0.2])
    assert "time" not in obs and obs.attrs["network"] == "given"


def test_pseudo_obs_station_network_prefers_land():
    grid = Grid(lat=np.arange(20.0, 61.0, 5.0), lon=np.arange(-100.0, -39.0, 5.0))
    truth = _linear_field(grid)
    from bayesda.geo.landmask import is_land

    n = 400
    st = pseudo_obs(truth, n, network="station", seed=0)
    un = pseudo_obs(truth, n, network="uniform", seed=0)
    land_st = is_land(st["lat"], st["lon"]).mean()
    land_un = is_land(un["lat"], un["lon"]).mean()
    # binomial sd of each share <= 0.5 / sqrt(n) = 0.025; the land weighting is 8x
    assert land_st > land_un + 6 * 0.025
    assert grid.contains(st["lat"], st["lon"]).all()

    # clustered: nearest-neighbour distances are shorter than for uniform points
    def nn(df):
        xyz = np.stack(
            [
                np.cos(np.deg2rad(df.lat)) * np.cos(np.deg2rad(df.lon)),
                np.cos(np.deg2rad(df.lat)) * np.sin(np.deg2rad(df.lon)),
                np.sin(np.deg2rad(df.lat)),
            ],
            -1,
        )
        d = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1) + np.eye(len(df)) * 9
        return np.median(d.min(1))

    assert nn(st) < nn(un)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n=5, network="grid"), "network='grid'"),
        (dict(n=0), "positive integer"),
        (dict(n=3, lat=[40.0], lon=[-100.0]), "n=3 but 1 locations"),
        (dict(n=3, sigma=0.0), "sigma=0.0"),
        (dict(lat=[40.0]), "both lat and lon"),
    ],
    ids=["network", "n", "n-mismatch", "sigma", "half-coords"],
)
def test_pseudo_obs_errors(small_grid, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pseudo_obs(_linear_field(small_grid), **kwargs)
