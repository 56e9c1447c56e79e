"""Tests for bayesda.verify.baselines against closed forms computed independently."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayesda.geo.grid import Grid
from bayesda.obs.operator import as_matrix, bilinear_stencil
from bayesda.prior.generative import linear_prior
from bayesda.verify import baselines as B
from bayesda.verify import metrics as M

POSTERIOR_VARS = ["anomaly", "mean", "sd", "q05", "q50", "q95"]


def make_grid(*, nlat=6, nlon=8) -> Grid:
    return Grid(lat=np.linspace(30, 55, nlat), lon=np.linspace(-10, 25, nlon))


def exponential_cov(grid: Grid, *, sd=2.0, length=10.0) -> np.ndarray:
    """Exponential (Matern-1/2) covariance in degree distance: positive definite."""
    lat, lon = np.meshgrid(grid.lat, grid.lon, indexing="ij")
    pts = np.stack([lat.ravel(), lon.ravel()], -1)
    d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    return sd**2 * np.exp(-d / length)


def make_obs(grid: Grid, *, n, seed, truth=None, sigma=0.3):
    rng = np.random.default_rng(seed)
    lat = rng.uniform(grid.lat[0], grid.lat[-1], n)
    lon = rng.uniform(grid.lon[0], grid.lon[-1], n)
    value = np.zeros(n)
    if truth is not None:
        st = bilinear_stencil(grid, lat, lon)
        value = as_matrix(st, grid.size) @ truth.ravel() + sigma * rng.standard_normal(n)
    return pd.DataFrame({"lat": lat, "lon": lon, "value": value, "sigma": np.full(n, sigma)})


def closed_form(cov, grid, obs):
    """Dense Gaussian conditioning, written independently of the module."""
    H = as_matrix(bilinear_stencil(grid, obs["lat"].to_numpy(), obs["lon"].to_numpy()), grid.size)
    R = np.diag(obs["sigma"].to_numpy() ** 2)
    S = H @ cov @ H.T + R
    gain = np.linalg.solve(S, H @ cov).T
    mean = gain @ obs["value"].to_numpy()
    post = cov - gain @ H @ cov
    return mean, post


def check_format(ds: xr.Dataset, grid: Grid, chains: int, draws: int):
    for name in POSTERIOR_VARS:
        assert name in ds, name
        assert ds[name].attrs["units"] == "K"
        assert ds[name].attrs["long_name"]
    assert ds["anomaly"].dims == ("chain", "draw", "lat", "lon")
    assert ds["anomaly"].shape == (chains, draws, *grid.shape)
    assert ds["mean"].dims == ("lat", "lon")
    np.testing.assert_allclose(ds["lat"].values, grid.lat)
    assert "method" in ds.attrs


# --- optimal interpolation -----------------------------------------------------------


def test_oi_with_true_covariance_equals_closed_form():
    grid = make_grid()
    cov = exponential_cov(grid)
    rng = np.random.default_rng(0)
    truth = (np.linalg.cholesky(cov) @ rng.standard_normal(grid.size)).reshape(grid.shape)
    obs = make_obs(grid, n=12, seed=1, truth=truth)
    bg = B.BackgroundCovariance.from_matrix(cov, grid)
    ds = B.optimal_interpolation(bg, obs, n_samples=20)
    mean, post = closed_form(cov, grid, obs)
    np.testing.assert_allclose(ds["mean"].values.ravel(), mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        ds["sd"].values.ravel(), np.sqrt(np.diag(post)), rtol=1e-5, atol=1e-5
    )
    z90 = 1.6448536269514722
    np.testing.assert_allclose(
        ds["q95"].values, ds["mean"].values + z90 * ds["sd"].values, rtol=1e-5
    )
    check_format(ds, grid, 1, 20)
    assert ds.attrs["method"] == "oi" and ds.attrs["n_obs"] == 12


def test_oi_draws_follow_the_exact_posterior():
    grid = make_grid()
    cov = exponential_cov(grid)
    obs = make_obs(grid, n=10, seed=2, truth=np.ones(grid.shape))
    n = 4000
    ds = B.optimal_interpolation(
        B.BackgroundCovariance.from_matrix(cov, grid), obs, n_samples=n, seed=3
    )
    mean, post = closed_form(cov, grid, obs)
    x = ds["anomaly"].values.reshape(n, -1).astype(np.float64)
    se_mean = np.sqrt(np.diag(post) / n)
    assert np.all(np.abs(x.mean(0) - mean) < 6 * se_mean)
    # Variances along random directions and the leading posterior eigenvectors test the
    # whole covariance, not only its diagonal: rel. SE of a sample variance is sqrt(2/n).
    rng = np.random.default_rng(4)
    evecs = np.linalg.eigh(post)[1][:, -3:]
    dirs = np.concatenate([rng.standard_normal((grid.size, 5)), evecs], axis=1)
    for v in dirs.T:
        expected = v @ post @ v
        got = np.var(x @ v, ddof=1)
        assert abs(got / expected - 1) < 6 * np.sqrt(2 / n)


def test_oi_exact_at_a_nearly_perfect_observation():
    grid = make_grid()
    cov = exponential_cov(grid)
    obs = pd.DataFrame(
        {"lat": [grid.lat[2]], "lon": [grid.lon[3]], "value": [1.7], "sigma": [1e-3]}
    )
    ds = B.optimal_interpolation(B.BackgroundCovariance.from_matrix(cov, grid), obs, n_samples=10)
    assert float(ds["mean"][2, 3]) == pytest.approx(1.7, abs=1e-4)
    assert float(ds["sd"][2, 3]) < 2e-3
    assert float(ds["sd"][0, 0]) > 1.0  # far away the prior SD (2 K) is barely reduced


def test_background_from_anomalies_shrinks_toward_diagonal():
    grid = make_grid(nlat=3, nlon=4)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((30, *grid.shape)) + rng.standard_normal((30, 1, 1))  # correlated
    anoms = xr.DataArray(x, dims=("time", "lat", "lon"), coords=grid.coords())
    bg = B.BackgroundCovariance.from_anomalies(anoms, shrinkage=0.1)
    flat = x.reshape(30, -1)
    s = flat.T @ flat / 30
    np.testing.assert_allclose(bg.cov, 0.9 * s + 0.1 * np.diag(np.diag(s)))
    np.testing.assert_allclose(bg.sd, np.sqrt(np.diag(s)).reshape(grid.shape))
    np.testing.assert_allclose(bg.chol @ bg.chol.T, bg.cov, atol=1e-10)
    assert bg.grid == grid and bg.shrinkage == 0.1
    obs = make_obs(grid, n=4, seed=6, truth=flat[0].reshape(grid.shape))
    from_raw = B.optimal_interpolation(anoms, obs, shrinkage=0.1, n_samples=5)
    from_bg = B.optimal_interpolation(bg, obs, n_samples=5)
    np.testing.assert_allclose(from_raw["mean"].values, from_bg["mean"].values)


def test_background_handles_rank_deficient_sample_covariance():
    grid = make_grid()
    x = np.random.default_rng(7).standard_normal((5, *grid.shape))  # 5 times << 48 pixels
    anoms = xr.DataArray(x, dims=("time", "lat", "lon"), coords=grid.coords())
    assert B.BackgroundCovariance.from_anomalies(anoms, shrinkage=0.02).jitter == 0.0
    assert B.BackgroundCovariance.from_anomalies(anoms, shrinkage=0.0).jitter > 0.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cov": np.eye(3)}, r"covariance must be \[48, 48\]"),
        ({"cov": np.triu(np.ones((48, 48)))}, "not symmetric"),
        ({"cov": np.eye(48), "shrinkage": 1.5}, r"shrinkage=1.5 must be in \[0, 1\]"),
    ],
    ids=["shape", "asymmetric", "shrinkage"],
)
def test_background_rejects_bad_matrices(kwargs, match):
    cov = kwargs.pop("cov")
    with pytest.raises(ValueError, match=match):
        B.BackgroundCovariance.from_matrix(cov, make_grid(), **kwargs)


def test_background_rejects_bad_anomalies():
    with pytest.raises(ValueError, match=r"dims \(time, lat, lon\), got \('lat', 'lon'\)"):
        B.BackgroundCovariance.from_anomalies(make_grid().template())


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda o: o.drop(columns="sigma"), r"missing columns \['sigma'\]"),
        (lambda o: o.assign(sigma=0.0), "sigma must be finite and > 0"),
        (lambda o: o.iloc[:0], "obs is empty"),
        (lambda o: o.assign(value=np.nan), "value must be finite"),
    ],
    ids=["missing", "zero-sigma", "empty", "nan-value"],
)
def test_oi_rejects_bad_obs(change, match):
    grid = make_grid()
    bg = B.BackgroundCovariance.from_matrix(exponential_cov(grid), grid)
    with pytest.raises(ValueError, match=match):
        B.optimal_interpolation(bg, change(make_obs(grid, n=3, seed=8)))


# --- climatology ---------------------------------------------------------------------


def test_climatology_baseline_is_zero_mean_with_given_sd():
    grid = make_grid()
    sd = np.linspace(0.5, 3.0, grid.size).reshape(grid.shape)
    n = 2000
    ds = B.climatology_baseline(grid, sd, n_samples=n, seed=9)
    check_format(ds, grid, 1, n)
    np.testing.assert_array_equal(ds["mean"].values, 0.0)
    np.testing.assert_allclose(ds["sd"].values, sd, rtol=1e-6)
    x = ds["anomaly"].values.reshape(n, -1)
    assert np.all(np.abs(x.mean(0)) < 6 * sd.ravel() / np.sqrt(n))
    assert np.all(np.abs(x.std(0) / sd.ravel() - 1) < 6 * np.sqrt(1 / (2 * n)))
    with pytest.raises(ValueError, match=r"sd_field shape \(2, 2\)"):
        B.climatology_baseline(grid, np.ones((2, 2)))


def test_climatological_sd_is_rms_about_zero():
    grid = make_grid(nlat=2, nlon=3)
    x = np.stack([np.full(grid.shape, 3.0), np.full(grid.shape, -4.0)])
    sd = B.climatological_sd(xr.DataArray(x, dims=("time", "lat", "lon"), coords=grid.coords()))
    np.testing.assert_allclose(sd.values, np.sqrt(12.5))
    assert sd.attrs["units"] == "K"


# --- optimisation with restarts ------------------------------------------------------


@pytest.mark.parametrize("vectorize", [False, True], ids=["map", "vmap"])
def test_optimise_restarts_recovers_latent_of_linear_prior(vectorize):
    grid = make_grid()
    d = 4
    rng = np.random.default_rng(10)
    W = rng.standard_normal((*grid.shape, d))
    b = 0.5 * rng.standard_normal(grid.shape)
    prior = linear_prior(W, b, grid)
    z_true = rng.standard_normal(d)
    truth = np.einsum("ijk,k->ij", W, z_true) + b
    ii, jj = np.meshgrid(np.arange(0, 6, 2), np.arange(0, 8, 2), indexing="ij")
    obs = pd.DataFrame(
        {
            "lat": grid.lat[ii.ravel()],
            "lon": grid.lon[jj.ravel()],
            "value": truth[ii, jj].ravel(),
            "sigma": 0.5,
        }
    )
    ds = B.optimise_restarts(
        prior, obs, n_restarts=10, max_steps=2000, abs_tol=0.0, seed=0, vectorize=vectorize
    )
    check_format(ds, grid, 1, 10)
    assert ds.attrs["method"] == "optimise_restarts"
    assert ds.attrs["misfit_max"] < 1e-4
    # every restart lands on the unique minimiser: truth everywhere, not only at the obs
    np.testing.assert_allclose(
        ds["anomaly"].values[0], np.broadcast_to(truth, (10, *grid.shape)), atol=0.05
    )
    assert float(ds["sd"].max()) < 0.05


def test_optimise_restarts_stops_early_and_restarts_differ_when_underdetermined():
    grid = make_grid()
    d = 6
    rng = np.random.default_rng(11)
    prior = linear_prior(rng.standard_normal((*grid.shape, d)), np.zeros(grid.shape), grid)
    obs = pd.DataFrame(
        {
            "lat": [grid.lat[1], grid.lat[4]],
            "lon": [grid.lon[2], grid.lon[6]],
            "value": [1.0, -1.0],
            "sigma": 0.5,
        }
    )
    ds = B.optimise_restarts(prior, obs, n_restarts=5, max_steps=3000, patience=20, seed=1)
    assert ds.attrs["steps"] < 3000
    assert ds.attrs["misfit_max"] < 1e-3
    # 2 obs cannot pin down 6 latents: the restarts fit the obs but disagree elsewhere
    assert float(ds["sd"].max()) > 0.1
    with pytest.raises(ValueError, match="n_restarts=1 must be >= 2"):
        B.optimise_restarts(prior, obs, n_restarts=1)


# --- integration with metrics --------------------------------------------------------


def test_baseline_outputs_verify():
    grid = make_grid()
    cov = exponential_cov(grid)
    rng = np.random.default_rng(12)
    truth = (np.linalg.cholesky(cov) @ rng.standard_normal(grid.size)).reshape(grid.shape)
    obs = make_obs(grid, n=8, seed=13, truth=truth)
    truth_da = M.observed_mask(grid, obs).copy(data=truth).rename("truth")
    oi = B.optimal_interpolation(B.BackgroundCovariance.from_matrix(cov, grid), obs, n_samples=50)
    clim = B.climatology_baseline(grid, np.sqrt(np.diag(cov)).reshape(grid.shape), n_samples=50)
    s_oi, s_clim = M.verify(oi, truth_da, obs), M.verify(clim, truth_da, obs)
    assert float(s_oi["rmse"].sel(region="all")) < float(s_clim["rmse"].sel(region="all"))
