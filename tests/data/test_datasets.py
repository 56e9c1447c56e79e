"""Tests for bayesda.data.datasets: finding, loading and standardizing temperature data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayesda.data.datasets import DATASETS, describe, find_dataset, load_dataset, standardize
from bayesda.geo.grid import Grid


def _raw(lat, lon, *, units="degK", name="air", ntime=3):
    time = pd.date_range("2020-01-01", periods=ntime, freq="6h")
    rng = np.random.default_rng(0)
    values = 280.0 + rng.standard_normal((ntime, len(lat), len(lon)))
    da = xr.DataArray(
        values,
        dims=("time", "latitude", "longitude"),
        coords={"time": time, "latitude": lat, "longitude": lon},
        name=name,
        attrs={"units": units},
    )
    return da.to_dataset()


def test_ncep_follows_convention(ncep):
    tas = ncep["tas"]
    assert list(ncep.data_vars) == ["tas"]
    assert tas.dims == ("time", "lat", "lon")
    assert tas.shape == (2920, 25, 53)
    assert tas.dtype == np.float32
    assert tas.attrs["units"] == "K"
    assert np.all(np.diff(ncep.lat) > 0) and np.all(np.diff(ncep.lon) > 0)
    assert ncep.lon.min() == -160.0 and ncep.lon.max() == -30.0
    assert ncep.attrs["file"].endswith("air_temperature.nc")
    assert 200 < float(tas.min()) and float(tas.max()) < 320


def test_ncep_values_match_raw_file(ncep, data_dir):
    raw = xr.open_dataset(data_dir / "ncep-air" / "air_temperature.nc")
    # raw lat is descending and lon 0..360: pick one point and compare
    expect = float(raw["air"].sel(lat=50.0, lon=260.0).isel(time=100))
    raw.close()
    got = float(ncep["tas"].sel(lat=50.0, lon=-100.0).isel(time=100))
    assert got == pytest.approx(expect, abs=1e-4)


def test_era5_grib(data_dir):
    if not (data_dir / "era5-uk" / DATASETS["era5-uk"].filename).is_file():
        pytest.skip("ERA5 file absent")
    pytest.importorskip("cfgrib")
    ds = load_dataset("era5-uk", data_dir)
    assert ds["tas"].shape == (744, 33, 49)
    assert ds.lat[0] == 50.0 and ds.lon[0] == -10.0
    assert ds.attrs["source_variable"] == "t2m"
    assert not list(data_dir.glob("**/*.idx"))


def test_find_dataset_layouts(tmp_path, monkeypatch):
    monkeypatch.delenv("BAYESDA_DATA_DIR", raising=False)
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "air_temperature.nc").write_bytes(b"")
    assert find_dataset("ncep-air", flat, download=False) == flat / "air_temperature.nc"
    nested = tmp_path / "nested" / "ncep-air"
    nested.mkdir(parents=True)
    (nested / "air_temperature.nc").write_bytes(b"")
    monkeypatch.setenv("BAYESDA_DATA_DIR", str(tmp_path / "nested"))
    assert find_dataset("ncep-air", download=False) == nested / "air_temperature.nc"


def test_find_dataset_missing_lists_places(tmp_path, monkeypatch):
    monkeypatch.setenv("BAYESDA_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setattr("bayesda.data.datasets._tutorial_cache_dir", lambda: tmp_path / "cache")
    with pytest.raises(FileNotFoundError) as info:
        find_dataset("era5-uk", tmp_path / "arg", download=False)
    msg = str(info.value)
    for where in ("arg", "env", "cache", "BAYESDA_DATA_DIR", "internet"):
        assert where in msg


def test_unknown_name_and_path():
    with pytest.raises(KeyError, match="unknown dataset 'nope'"):
        find_dataset("nope")
    with pytest.raises(FileNotFoundError, match="neither a known dataset"):
        load_dataset("nope")


def test_standardize_wraps_sorts_and_converts_celsius():
    ds = _raw([60.0, 50.0, 40.0], [350.0, 0.0, 10.0], units="degC")
    out = standardize(ds)
    assert out["tas"].dims == ("time", "lat", "lon")
    np.testing.assert_array_equal(out.lat, [40.0, 50.0, 60.0])
    np.testing.assert_array_equal(out.lon, [-10.0, 0.0, 10.0])
    orig = ds["air"].sel(latitude=60.0, longitude=350.0).isel(time=1)
    assert float(out["tas"].sel(lat=60.0, lon=-10.0).isel(time=1)) == pytest.approx(
        float(orig) + 273.15, abs=1e-4
    )
    Grid.from_xarray(out)


def test_standardize_dataarray_with_scalar_time_and_level():
    da = _raw([0.0, 1.0], [0.0, 1.0], units="K")["air"].isel(time=0).expand_dims(level=[850])
    out = standardize(da)
    assert out["tas"].shape == (1, 2, 2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(units="furlongs"), "unknown temperature units 'furlongs'"),
        (dict(units=None), "no 'units' attribute"),
    ],
    ids=["bad-units", "no-units"],
)
def test_standardize_unit_errors(kwargs, match):
    ds = _raw([0.0, 1.0], [0.0, 1.0], **kwargs)
    if kwargs["units"] is None:
        del ds["air"].attrs["units"]
    with pytest.raises(ValueError, match=match):
        standardize(ds)


def test_standardize_rejects_duplicates_and_antimeridian():
    with pytest.raises(ValueError, match="duplicate lon"):
        standardize(_raw([0.0, 1.0], [0.0, 180.0, 360.0]))
    with pytest.raises(ValueError, match="antimeridian"):
        standardize(_raw([0.0, 1.0], [170.0, 175.0, 180.0, 185.0]))


def test_standardize_rejects_extra_dims():
    ds = _raw([0.0, 1.0], [0.0, 1.0])["air"].expand_dims(member=3)
    with pytest.raises(ValueError, match="member"):
        standardize(ds)


@pytest.mark.filterwarnings("ignore:Failed to open Zarr store with consolidated metadata")
def test_load_netcdf_and_zarr_paths(tmp_path):
    ds = _raw([10.0, 20.0], [200.0, 210.0, 220.0])
    nc = tmp_path / "x.nc"
    ds.to_netcdf(nc)
    out = load_dataset(nc)
    assert out.attrs["file"] == str(nc)
    np.testing.assert_array_equal(out.lon, [-160.0, -150.0, -140.0])
    pytest.importorskip("zarr")
    zp = tmp_path / "x.zarr"
    ds.to_zarr(zp, consolidated=False)
    np.testing.assert_allclose(load_dataset(zp)["tas"].values, out["tas"].values)
    with pytest.raises(ValueError, match="cannot tell the format"):
        bad = tmp_path / "x.txt"
        bad.write_text("x")
        load_dataset(bad)


def test_describe(ncep):
    d = describe(ncep)
    assert d["dims"] == {"time": 2920, "lat": 25, "lon": 53}
    assert d["dlat"] == 2.5 and not d["periodic"]


def _run_cli(argv, capsys):
    import argparse

    from bayesda.cli import data as data_cmd

    parser = argparse.ArgumentParser(prog="bayesda")
    data_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    rc = args.func(args)
    return rc, capsys.readouterr().out


def test_cli_data_info(data_dir, capsys):
    rc, out = _run_cli(["data", "info", "ncep-air", "--data-dir", str(data_dir)], capsys)
    assert rc == 0
    assert "train 2192 / test 728" in out and "time=2920, lat=25, lon=53" in out
    assert str(data_dir) in out


def test_cli_obs_make_anomaly_and_absolute_agree(data_dir, tmp_path, capsys):
    from bayesda.data.climatology import Climatology
    from bayesda.data.split import split_dataset
    from bayesda.obs.table import climatology_at, read_obs

    common = [
        "obs",
        "make",
        "--data",
        "ncep-air",
        "--data-dir",
        str(data_dir),
        "--time",
        "2014-01-07T12",
        "--n",
        "20",
        "--network",
        "uniform",
        "--seed",
        "3",
    ]
    assert _run_cli([*common, "--out", str(tmp_path / "a.csv")], capsys)[0] == 0
    assert _run_cli([*common, "--absolute", "--out", str(tmp_path / "b.csv")], capsys)[0] == 0
    anom = read_obs(tmp_path / "a.csv")
    absolute = read_obs(tmp_path / "b.csv", check=False)  # raw values: K, not anomalies
    assert len(anom) == 20 and (anom["time"] == np.datetime64("2014-01-07T12")).all()
    np.testing.assert_array_equal(anom[["lat", "lon"]], absolute[["lat", "lon"]])
    clim = Climatology.fit(split_dataset(load_dataset("ncep-air", data_dir))[0]["tas"])
    back = absolute["value"] - climatology_at(
        clim, absolute["lat"], absolute["lon"], absolute["time"].to_numpy()
    )
    # CSV keeps 6 decimals; float32 fields and weights add ~1e-5 K
    np.testing.assert_allclose(back, anom["value"], atol=1e-4)
    with pytest.raises(ValueError, match="not in 'ncep-air'"):
        _run_cli([*common[:-6], "--time", "2015-06-01", "--out", str(tmp_path / "c.csv")], capsys)
