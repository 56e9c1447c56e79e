"""Tests for the surface height (bayesda.geo.orography) and the lapse-rate adjustment
(bayesda.obs.elevation), and how they travel with a model and through preflight."""

import dataclasses
import json
import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayesda.geo.grid import Grid
from bayesda.geo.orography import read_altitude, surface_height, to_dataset
from bayesda.obs.elevation import LapseRate, adjust, surface_height_at
from bayesda.preflight.pipeline import format_preflight, preflight
from bayesda.prior.checkpoint import CheckpointError, load_model, update_card
from bayesda.prior.generative import linear_prior
from bayesda.testing import TINY_VAE_GRID as GRID


def _source(values: np.ndarray) -> xr.DataArray:
    """A source grid laid out like Altitude.h5: lat north to south, lon from -180."""
    nlat, nlon = values.shape
    lat = 90.0 - (np.arange(nlat) + 0.5) * 180.0 / nlat
    lon = -180.0 + (np.arange(nlon) + 0.5) * 360.0 / nlon
    return xr.DataArray(values, coords={"lat": lat, "lon": lon}, dims=("lat", "lon"))


def test_surface_height_is_the_cell_mean_and_wraps_longitude():
    rng = np.random.default_rng(0)
    src = _source(rng.uniform(0, 3000, size=(180, 360)))  # 1-degree source
    grid = Grid(lat=np.array([-10.0, 0.0, 10.0]), lon=np.arange(-180.0, 180.0, 10.0))
    h = surface_height(grid, src)
    # the cell of (0, -180) spans lat [-5, 5), lon [-185, -175): source centres -4.5..4.5
    # and lon 175.5..179.5 plus -179.5..-175.5 (ten columns across the seam)
    rows = np.flatnonzero((src.lat.values >= -5) & (src.lat.values < 5))
    cols = np.flatnonzero((src.lon.values > 175) | (src.lon.values < -175))
    assert cols.size == 10
    assert h[1, 0] == pytest.approx(src.values[np.ix_(rows, cols)].mean())
    rows = np.flatnonzero((src.lat.values >= 5) & (src.lat.values < 15))
    cols = np.flatnonzero((src.lon.values > -5) & (src.lon.values < 5))
    assert h[2, 18] == pytest.approx(src.values[np.ix_(rows, cols)].mean())


def test_surface_height_refuses_a_grid_finer_than_the_source():
    src = _source(np.zeros((18, 36)))  # 10-degree source
    grid = Grid(lat=np.array([0.0, 1.0, 2.0]), lon=np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="finer than"):
        surface_height(grid, src)


def test_read_altitude_decodes_codes_sea_and_ice_sheets(tmp_path):
    codes = np.full((36, 72), 255, np.uint8)  # 5-degree cells, all "no data" (sea)
    lat = 90.0 - (np.arange(36) + 0.5) * 5.0
    lon = -180.0 + (np.arange(72) + 0.5) * 5.0
    i_co, j_co = np.argmin(abs(lat - 37.5)), np.argmin(abs(lon - (-107.5)))
    codes[i_co, j_co] = 100  # Colorado: 100 * 28 - 450 = 2350 m
    i_sea, j_sea = np.argmin(abs(lat - 37.5)), np.argmin(abs(lon - (-152.5)))
    codes[i_sea, j_sea] = 0  # -450 m in the Pacific: sea floor -> 0 m
    i_gl, j_gl = np.argmin(abs(lat - 72.5)), np.argmin(abs(lon - (-42.5)))
    codes[i_gl, j_gl] = 20  # Greenland bedrock: unknown
    path = tmp_path / "Altitude.h5"
    with h5py.File(path, "w") as f:
        f["Altitude"] = codes
    a = read_altitude(path)
    assert a.values[i_co, j_co] == 2350.0
    assert a.values[i_sea, j_sea] == 0.0
    assert np.isnan(a.values[i_gl, j_gl])
    assert a.values[0, 0] == 0.0  # no data
    grid = Grid(lat=np.array([30.0, 40.0, 50.0, 70.0]), lon=np.array([-110.0, -100.0, -40.0]))
    h = surface_height(grid, a)
    assert np.isnan(h[3, 2]) and np.isfinite(h[:3]).all()


def _prior_with_height(height):
    grid = Grid(lat=np.linspace(30.0, 50.0, 5), lon=np.linspace(-120.0, -90.0, 7))
    w = np.zeros((*grid.shape, 2))
    w[..., 0] = 1.0
    prior = linear_prior(w, np.zeros(grid.shape), grid)
    return dataclasses.replace(prior, surface_height=np.asarray(height, np.float64))


def test_adjust_moves_values_to_the_model_surface_and_widens_sigma():
    height = np.full((5, 7), 1500.0)
    height[4, 6] = np.nan  # an unknown cell in the north-east corner
    prior = _prior_with_height(height)
    obs = pd.DataFrame(
        {
            "lat": [40.0, 40.0, 35.0, 50.0],
            "lon": [-105.0, -105.0, -110.0, -90.0],
            "value": [1.0, 1.0, -2.0, 0.5],
            "sigma": [0.5, 0.5, 0.5, 0.5],
            "elevation": [2500.0, np.nan, 500.0, 3000.0],
        }
    )
    out, rec = adjust(prior, obs, LapseRate(6.5, 2.0))
    np.testing.assert_allclose(out["height_adjustment"], [6.5, 0.0, -6.5, 0.0])
    np.testing.assert_allclose(out["value"], [7.5, 1.0, -8.5, 0.5])
    np.testing.assert_allclose(out["sigma"], [np.hypot(0.5, 2.0), 0.5, np.hypot(0.5, 2.0), 0.5])
    assert np.isnan(out["model_height"].iloc[3])
    assert rec["n_adjusted"] == 2 and rec["n_no_elevation"] == 1
    assert rec["n_no_model_height"] == 1
    assert rec["mean_height_difference_m"] == pytest.approx(0.0)
    assert rec["max_abs_height_difference_m"] == pytest.approx(1000.0)
    pd.testing.assert_frame_equal(obs, obs.copy())  # the input is untouched
    assert obs["value"].tolist() == [1.0, 1.0, -2.0, 0.5]


def test_adjust_interpolates_the_model_height_bilinearly():
    height = np.zeros((5, 7))
    height[2, 3] = 1000.0  # node (40, -105)
    prior = _prior_with_height(height)
    # halfway between nodes (40, -105) and (40, -100): model height 500 m
    h = surface_height_at(prior, [40.0], [-102.5])
    assert h[0] == pytest.approx(500.0)


def test_adjust_is_a_no_op_without_elevation_height_or_rate():
    prior = _prior_with_height(np.zeros((5, 7)))
    obs = pd.DataFrame({"lat": [40.0], "lon": [-105.0], "value": [1.0], "sigma": [0.5]})
    assert adjust(prior, obs)[1] == {"skipped": "no elevation column"}
    obs["elevation"] = 1000.0
    bare = dataclasses.replace(prior, surface_height=None)
    out, rec = adjust(bare, obs)
    assert "no surface height" in rec["skipped"] and out is obs
    out, rec = adjust(prior, obs, LapseRate(0.0, 0.0))
    assert rec == {"skipped": "lapse rate 0"}
    with pytest.raises(ValueError, match="sigma"):
        adjust(prior, obs.drop(columns="sigma"))
    with pytest.raises(ValueError, match="rate=-1"):
        LapseRate(-1.0)
    with pytest.raises(ValueError, match="no surface height"):
        surface_height_at(bare, [40.0], [-105.0])


def test_preflight_adjusts_before_qc_and_reports_it():
    prior = _prior_with_height(np.full((5, 7), 2000.0))
    rng = np.random.default_rng(1)
    obs = pd.DataFrame(
        {
            "lat": rng.uniform(31, 49, 20),
            "lon": rng.uniform(-119, -91, 20),
            "sigma": 0.5,
            "elevation": 2000.0,
        }
    )
    obs["value"] = 0.0
    obs.loc[0, "elevation"] = 4000.0  # 13 K colder than the model surface: a gross error?
    obs.loc[0, "value"] = -13.0
    _, out, rec = preflight(prior, obs, qc=True, calibrate="none")
    assert rec["elevation"]["n_adjusted"] == 20
    assert out.loc[0, "value"] == pytest.approx(0.0, abs=1e-5)
    assert rec["qc"]["n_gross"] == 0  # adjusted, it is not flagged
    assert "20 stations moved to the model surface at 6.5 +- 2 K/km" in format_preflight(rec)


def test_surface_height_travels_with_the_model(saved):
    height = np.linspace(0, 3000, GRID.size).reshape(GRID.shape)
    height[0, 0] = np.nan
    saved = saved[0]
    update_card(saved, surface_height=height)
    prior = load_model(saved)
    np.testing.assert_allclose(prior.surface_height, height.astype(np.float32), equal_nan=True)
    card = json.loads((saved / "model.json").read_text())
    assert "surface_height.nc" in card["files"]
    ds = xr.load_dataset(saved / "surface_height.nc")
    assert ds["orog"].attrs["standard_name"] == "surface_altitude"
    # altered after hashing: refused
    to_dataset(np.zeros(GRID.shape), GRID).to_netcdf(saved / "surface_height.nc", mode="w")
    with pytest.raises(CheckpointError, match="surface_height.nc"):
        load_model(saved)


def test_cli_orography_adds_the_height_to_a_model(saved, tmp_path):  # noqa: F811
    saved = saved[0]
    codes = np.full((180, 360), 120, np.uint8)  # 120 * 28 - 450 = 2910 m everywhere
    path = tmp_path / "Altitude.h5"
    with h5py.File(path, "w") as f:
        f["Altitude"] = codes
    env = {"BAYESDA_ALTITUDE_FILE": str(path)}
    import os

    r = subprocess.run(
        [sys.executable, "-m", "bayesda.cli.main", "data", "orography", str(saved)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    assert r.returncode == 0, r.stderr
    assert "surface_height.nc" in r.stdout
    prior = load_model(saved)
    assert np.all(prior.surface_height == pytest.approx(2910.0))


def test_cli_refuses_a_bad_lapse_rate_before_loading(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "bayesda.cli.main",
            "assimilate",
            "--model",
            str(tmp_path / "no-such-model"),
            "--obs",
            str(tmp_path / "no-such.csv"),
            "--out",
            str(tmp_path / "run"),
            "--lapse-rate",
            "-3",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0
    assert "--lapse-rate" in r.stderr and "'-3'" in r.stderr
    assert not (tmp_path / "run").exists()
