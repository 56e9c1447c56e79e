"""Tests for bayesda.sim.grf: Gaussian random fields and the exact Gaussian posterior."""

from __future__ import annotations

import numpy as np
import pytest

from bayesda.geo.grid import Grid
from bayesda.obs.operator import as_matrix, bilinear_stencil
from bayesda.sim.grf import (
    GaussianRandomField,
    correlation,
    gaussian_posterior,
    pairwise_distance_km,
)


@pytest.mark.parametrize("kind", ["matern32", "sqexp"])
def test_sample_covariance_matches(small_grid, kind):
    grf = GaussianRandomField(
        small_grid, length_scale_km=800.0, sd=1.5, land_sea_ratio=1.0, kind=kind
    )
    n = 4000
    x = grf.sample(0, n).reshape(n, -1)
    emp = x.T @ x / n
    # Monte Carlo sd of a second-moment estimate: sqrt((C_ij^2 + C_ii C_jj) / n)
    C = grf.cov
    se = np.sqrt((C**2 + np.outer(np.diag(C), np.diag(C))) / n)
    assert np.all(np.abs(emp - C) < 6 * se)
    # the grand mean has variance mean(C) / n <= sd^2 / n
    assert abs(x.mean()) < 6 * 1.5 / np.sqrt(n)


def test_cov_properties(global_grid):
    grf = GaussianRandomField(global_grid, length_scale_km=2000.0, land_sea_ratio=1.0)
    C = grf.cov
    assert C.shape == (global_grid.size, global_grid.size) and C.dtype == np.float64
    np.testing.assert_array_equal(C, C.T)
    assert np.linalg.eigvalsh(C).min() > 0
    np.testing.assert_allclose(np.diag(C), 1.0, atol=1e-6)
    # periodic: the first and last longitude of a row are 30 degrees apart, not 330
    i0, i1 = 3 * 12, 3 * 12 + 11  # equator row
    j = 3 * 12 + 1
    assert C[i0, i1] == pytest.approx(C[i0, j], rel=1e-9)


def test_land_sea_sd(small_grid):
    ocean = Grid(lat=np.linspace(-40.0, -30.0, 3), lon=np.linspace(-140.0, -130.0, 3))
    grf = GaussianRandomField(ocean, sd=1.0, land_sea_ratio=3.0)
    np.testing.assert_allclose(grf.sd, 1.0)  # South Pacific: all sea
    land = GaussianRandomField(small_grid, sd=1.0, land_sea_ratio=3.0)
    assert land.sd.max() == pytest.approx(3.0)  # interior of North America
    np.testing.assert_allclose(np.sqrt(np.diag(land.cov)), land.sd.ravel(), rtol=1e-6)


def test_distances_and_correlation(global_grid):
    d_gc = pairwise_distance_km(global_grid, "great_circle")
    d_ch = pairwise_distance_km(global_grid, "chordal")
    # equator neighbours 30 degrees apart: great circle = R * pi / 6
    i = 3 * 12
    assert d_gc[i, i + 1] == pytest.approx(6371.0 * np.pi / 6, rel=1e-9)
    assert d_ch[i, i + 1] == pytest.approx(2 * 6371.0 * np.sin(np.pi / 12), rel=1e-9)
    assert np.all(d_ch <= d_gc + 1e-6)
    assert correlation(0.0, 100.0) == 1.0
    assert correlation(1e6, 100.0, "sqexp") == pytest.approx(0.0)


def test_reproducible_and_dataarray(small_grid):
    grf = GaussianRandomField(small_grid, land_sea_ratio=1.0)
    np.testing.assert_array_equal(grf.sample(7, 3), grf.sample(7, 3))
    assert not np.array_equal(grf.sample(7, 1), grf.sample(8, 1))
    da = grf.sample_dataarray(7, 2, time=np.array(["2014-01-01", "2014-01-02"], "datetime64[ns]"))
    assert da.dims == ("time", "lat", "lon") and da.attrs["units"] == "K"
    np.testing.assert_allclose(da.values, grf.sample(7, 2), rtol=1e-6)


def test_gaussian_posterior_matches_information_form(small_grid):
    grf = GaussianRandomField(small_grid, length_scale_km=700.0, land_sea_ratio=1.0)
    rng = np.random.default_rng(1)
    lat = rng.uniform(31, 54, 12)
    lon = rng.uniform(-119, -86, 12)
    H = as_matrix(bilinear_stencil(small_grid, lat, lon), small_grid.size)
    m = rng.standard_normal(small_grid.size)
    r = rng.uniform(0.1, 0.5, 12)
    y = rng.standard_normal(12)
    mean, cov = gaussian_posterior(m, grf.cov, H, y, r)
    Pinv = np.linalg.inv(grf.cov)
    cov_info = np.linalg.inv(Pinv + H.T @ (H / r[:, None]))
    mean_info = cov_info @ (Pinv @ m + H.T @ (y / r))
    np.testing.assert_allclose(cov, cov_info, atol=1e-6)
    np.testing.assert_allclose(mean, mean_info, atol=1e-5)
    assert np.all(np.diag(cov) <= np.diag(grf.cov) + 1e-12)


def test_gaussian_posterior_scalar_var_and_errors():
    P = np.eye(2)
    H = np.array([[1.0, 0.0]])
    mean, cov = gaussian_posterior(np.zeros(2), P, H, [2.0], 1.0)
    np.testing.assert_allclose(mean, [1.0, 0.0])
    np.testing.assert_allclose(cov, [[0.5, 0.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="expected \\(1, 3\\)"):
        gaussian_posterior(np.zeros(3), np.eye(3), H, [1.0], 1.0)
    with pytest.raises(ValueError, match="obs_var"):
        gaussian_posterior(np.zeros(2), P, H, [1.0], 0.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(length_scale_km=0.0), "length_scale_km"),
        (dict(sd=-1.0), "sd=-1.0"),
        (dict(kind="cauchy"), "kind='cauchy'"),
        (dict(distance="manhattan"), "distance"),
    ],
    ids=["length", "sd", "kind", "distance"],
)
def test_grf_errors(small_grid, kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussianRandomField(small_grid, **kwargs)
