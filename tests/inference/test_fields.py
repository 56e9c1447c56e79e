"""Matheron conditioning of the representation error and the posterior outputs."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from bayesda.inference.fields import condition_representation_error, posterior_dataset, write_netcdf
from bayesda.obs.operator import as_matrix, bilinear_stencil
from bayesda.testing import make_linear_prior, make_obs


def test_matheron_matches_the_dense_gaussian_conditional():
    prior = make_linear_prior(rank=2)
    grid = prior.grid
    obs = make_obs(grid, 6, seed=3)  # off-node points: stencils overlap, S off-diagonals matter
    st = bilinear_stencil(grid, obs["lat"], obs["lon"])
    npix = grid.size
    F = prior.repr_error.factor.reshape(-1, npix).astype(np.float64)
    C = F.T @ F + np.diag(prior.repr_error.diag_var.reshape(npix).astype(np.float64))
    H = as_matrix(st, npix)
    sigma = obs["sigma"].to_numpy()
    S = H @ C @ H.T + np.diag(sigma**2)
    resid = obs["value"].to_numpy() - 0.3  # y - H g(z) for a fixed z
    mean = C @ H.T @ np.linalg.solve(S, resid)
    cov = C - C @ H.T @ np.linalg.solve(S, H @ C)

    s = 40000
    r = condition_representation_error(
        np.random.default_rng(0), np.tile(resid, (s, 1)), sigma, st, prior.repr_error
    )
    r = r.reshape(s, npix).astype(np.float64)
    se = np.sqrt(np.diag(cov) / s)
    assert np.all(np.abs(r.mean(0) - mean) < 5 * se + 1e-6)
    emp = np.cov(r.T)
    # Monte Carlo SE of a covariance entry: sqrt((c_ii c_jj + c_ij^2) / s).
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / s)
    assert np.all(np.abs(emp - cov) < 5 * se_cov + 1e-6)
    # And the conditional really shrinks the variance at the observations.
    assert np.all(np.diag(H @ cov @ H.T) < np.diag(H @ C @ H.T))


def test_matheron_rejects_mismatched_residuals():
    prior = make_linear_prior()
    obs = make_obs(prior.grid, 4)
    st = bilinear_stencil(prior.grid, obs["lat"], obs["lon"])
    with pytest.raises(ValueError, match="5 observations but the stencil has 4"):
        condition_representation_error(
            np.random.default_rng(0), np.zeros((2, 5)), 0.5, st, prior.repr_error
        )


class _FakeAssimilation:
    def __init__(self, prior, n):
        rng = np.random.default_rng(0)
        self.field = rng.normal(size=(2, 50, *prior.grid.shape)).astype(np.float32)

        class _Obs:
            pass

        self.obs = _Obs()
        self.obs.n = n
        self.time = np.datetime64("2014-01-07T12")
        self.settings = {"method": "nuts", "num_chains": 2, "infer_sigma": False, "x": None}


class _Clim:
    def __init__(self, shape):
        self.shape = shape

    def mean(self, time):
        return np.full(self.shape, 270.0, np.float32)


def test_posterior_dataset_round_trips_through_netcdf(tmp_path):
    """Settings of every type (bool included) survive as netCDF attributes."""
    prior = make_linear_prior()
    a = _FakeAssimilation(prior, 5)
    ds = posterior_dataset(a, prior, thresholds=(0.0, 1.0), climatology=_Clim(prior.grid.shape))
    for name, var in ds.data_vars.items():
        assert var.attrs.get("units") and var.attrs.get("long_name"), name
    assert ds["anomaly"].dims == ("chain", "draw", "lat", "lon")
    np.testing.assert_allclose(ds["tas_mean"].values, ds["mean"].values + 270.0, rtol=1e-6)
    flat = a.field.reshape(-1, *prior.grid.shape)
    np.testing.assert_allclose(
        ds["p_exceed"].sel(threshold=1.0).values, (flat > 1).mean(0), rtol=1e-6
    )
    assert ds.attrs["n_obs"] == 5 and ds.attrs["model_name"] == "tiny-linear"
    path = write_netcdf(ds, tmp_path / "posterior.nc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["posterior.nc"]  # no temp file left
    back = xr.open_dataset(path)
    xr.testing.assert_allclose(back.load(), ds)
    assert back.attrs["time"] == "2014-01-07T12:00:00"


def test_climatology_on_another_grid_is_rejected():
    prior = make_linear_prior()
    with pytest.raises(ValueError, match="climatology grid"):
        posterior_dataset(_FakeAssimilation(prior, 5), prior, climatology=_Clim((3, 3)))


def test_write_netcdf_leaves_nothing_on_failure(tmp_path):
    bad = xr.Dataset({"x": ("a", np.array([object()], dtype=object))})
    with pytest.raises((TypeError, ValueError)):
        write_netcdf(bad, tmp_path / "bad.nc")
    assert list(tmp_path.iterdir()) == []
