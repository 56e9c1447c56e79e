"""Assimilation on a global grid with periodic longitude (the simulated-weather model's grid):
observations across the 180/-180 seam (given in either longitude convention) and poleward
of the outermost latitude rows, through the library and the ``bayesda assimilate`` command."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayesda.cli import assim
from bayesda.cli import main as cli
from bayesda.inference.assimilate import assimilate
from bayesda.settings import ModelOptions, SamplerSettings
from bayesda.testing import assert_matches_closed_form as _check_against_closed_form
from bayesda.testing import dense_posterior, make_linear_prior

# seam (170 .. 190 E, both conventions), 0/360 and beyond the outer rows (+-75 deg)
LAT = [10.0, -20.0, 40.0, 5.0, -45.0, 0.0, 82.0, -89.0, 89.5, 60.0]
LON = [175.0, -178.0, 185.0, 359.0, -179.99, 180.0, 30.0, -150.0, 200.0, 0.0]


def _obs(seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = len(LAT)
    return pd.DataFrame(
        {"lat": LAT, "lon": LON, "value": rng.normal(0, 2.0, n), "sigma": np.full(n, 0.5)}
    )


@pytest.fixture()
def periodic_prior(global_grid):
    assert global_grid.periodic
    return make_linear_prior(grid=global_grid, latent_dim=4, rank=3, seed=3)


def test_seam_and_pole_observations_match_the_closed_form(periodic_prior):
    obs = _obs()
    mean, cov = dense_posterior(periodic_prior, obs)
    s = SamplerSettings(method="laplace", num_chains=2, num_samples=1500)
    a = assimilate(
        periodic_prior,
        obs,
        seed=2,
        sampler=s,
        progress_bar=False,
        options=ModelOptions(errors="stated"),
    )
    _check_against_closed_form(a, mean, cov, periodic_prior.grid)
    # the same points written 360 degrees apart give the same analysis
    shifted = obs.assign(lon=np.where(obs["lon"] < 0, obs["lon"] + 360.0, obs["lon"] - 360.0))
    np.testing.assert_allclose(dense_posterior(periodic_prior, shifted)[0], mean, atol=1e-9)


def test_assimilate_command_on_the_global_grid(periodic_prior, monkeypatch, tmp_path):
    monkeypatch.setattr(assim, "load_prior", lambda path: periodic_prior)
    path = tmp_path / "obs.csv"
    _obs().to_csv(path, index=False)
    run = tmp_path / "run"
    args = ["assimilate", "--model", "m", "--obs", str(path), "--out", str(run)]
    fast = ["--method", "laplace", "--chains", "2", "--draws", "200", "--no-progress"]
    assert cli.main([*args, *fast]) == 0
    assert json.loads((run / "run.json").read_text())["n_obs"] == len(LAT)
    with xr.open_dataset(run / "posterior.nc") as ds:
        assert ds["mean"].shape == periodic_prior.grid.shape
        np.testing.assert_array_equal(ds["lon"].values, periodic_prior.grid.lon)
        assert np.all(np.isfinite(ds["sd"].values))
    assert (run / "maps.png").stat().st_size > 20_000


def test_shipped_simulated_weather_model_is_global_and_periodic():
    from pathlib import Path

    from bayesda.obs.table import validate_obs
    from bayesda.prior.checkpoint import load_model

    prior = load_model(Path(__file__).resolve().parents[2] / "models" / "hs-t21-tas")
    assert prior.name == "hs-t21-tas" and prior.latent_dim == 32
    assert prior.grid.periodic and prior.grid.shape == (32, 64)
    assert prior.grid.lat[-1] < 86.0  # Gaussian rows stop short of the poles...
    out = validate_obs(_obs(), grid=prior.grid)  # ...yet every point of the sphere is accepted
    assert len(out) == len(LAT) and out["lon"].between(-180, 180, inclusive="left").all()
