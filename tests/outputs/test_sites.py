"""The predictive of an observation at sites (bayesda.outputs.sites, Assimilation.at, --sites)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayesda.obs.elevation import LapseRate
from bayesda.outputs.sites import predictive_at, read_sites
from bayesda.testing import tiny_grid


def test_predictive_adds_the_observation_error_and_undoes_the_lapse_rate():
    grid = tiny_grid()
    rng = np.random.default_rng(0)
    s = 40000
    level = rng.normal(1.0, 0.6, size=(s, 1, 1))  # the field: one value everywhere
    samples = np.broadcast_to(level, (s, *grid.shape))
    lat, lon = np.array([35.0, 40.0]), np.array([-100.0, -95.0])
    ds = predictive_at(
        samples,
        grid,
        lat,
        lon,
        error_sd=0.8,
        rng=rng,
        height_difference=np.array([0.0, 1000.0]),
        lapse=LapseRate(6.5, 2.0),
    )
    # site 0: at the model surface; site 1: 1 km higher, 6.5 K colder, +-2 K more uncertain
    np.testing.assert_allclose(ds["mean"].values, [1.0, 1.0 - 6.5], atol=0.03)
    np.testing.assert_allclose(
        ds["sd"].values, np.sqrt([0.36 + 0.64, 0.36 + 0.64 + 4.0]), rtol=0.02
    )
    q = ds["q95"].values - ds["q05"].values
    np.testing.assert_allclose(q, 2 * 1.6449 * ds["sd"].values, rtol=0.03)


def test_read_sites_names_the_row_of_a_bad_value(tmp_path):
    path = tmp_path / "sites.csv"
    path.write_text("id,lat,lon,elevation\nA,40,-100,1500\nB,north,-90,\n")
    with pytest.raises(ValueError, match=r"row 3: lat='north'"):
        read_sites(path)
    path.write_text("name,lon\nA,-100\n")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['lat'\]"):
        read_sites(path)
    path.write_text("lat,lon\n40,-100\n")
    assert read_sites(path)["id"].tolist() == ["site0"]


def test_assimilation_at_covers_withheld_stations_of_its_own_prior():
    from bayesda.inference.assimilate import assimilate
    from bayesda.settings import SamplerSettings
    from bayesda.testing import grf_prior, obs_of

    prior, grf = grf_prior(repr_sd=0.3)
    obs = obs_of(prior, grf, 80, seed=5, sigma=0.5)
    train, test = obs.iloc[:60], obs.iloc[60:]
    a = assimilate(
        prior,
        train,
        seed=1,
        sampler=SamplerSettings(method="laplace", num_chains=1, num_samples=1000),
        progress_bar=False,
    )
    ds = a.at(test["lat"], test["lon"], sigma=0.5)
    y = test["value"].to_numpy()
    inside = (y > ds["q05"].values) & (y < ds["q95"].values)
    assert inside.mean() >= 0.75  # 20 stations: 90% nominal, binomial slack
    assert "tas_mean" not in ds  # no climatology, no time: anomalies only
    assert isinstance(ds.to_dataframe(), pd.DataFrame)
