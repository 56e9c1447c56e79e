"""Space-time optimal interpolation (bayesda.verify.baselines.spacetime_oi) against closed forms."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayesda.geo.grid import Grid
from bayesda.obs.operator import as_matrix, bilinear_stencil
from bayesda.verify import baselines as B

GRID = Grid(lat=np.linspace(30, 45, 4), lon=np.linspace(-10, 10, 5))


def _series(n=400, seed=0, gap_at=None):
    """An AR(1)-in-time field with a smooth spatial covariance, 6-hourly."""
    rng = np.random.default_rng(seed)
    lat, lon = np.meshgrid(GRID.lat, GRID.lon, indexing="ij")
    pts = np.stack([lat.ravel(), lon.ravel()], -1)
    cov = 4.0 * np.exp(-np.linalg.norm(pts[:, None] - pts[None], axis=-1) / 10.0)
    L = np.linalg.cholesky(cov)
    x = np.empty((n, GRID.size))
    x[0] = L @ rng.standard_normal(GRID.size)
    for t in range(1, n):
        x[t] = 0.8 * x[t - 1] + 0.6 * L @ rng.standard_normal(GRID.size)
    time = np.datetime64("2013-01-01") + np.arange(n) * np.timedelta64(6, "h")
    if gap_at is not None:
        time[gap_at:] += np.timedelta64(7, "D")
    return xr.DataArray(
        x.reshape(n, *GRID.shape).astype(np.float32),
        dims=("time", "lat", "lon"),
        coords={"time": time, **GRID.coords()},
    )


def _obs(n, seed, sigma=0.5):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "lat": rng.uniform(30, 45, n),
            "lon": rng.uniform(-10, 10, n),
            "value": rng.normal(0, 2, n),
            "sigma": sigma,
        }
    )


def test_one_time_is_optimal_interpolation():
    train = _series()
    obs = _obs(6, 1)
    st = B.SpaceTimeCovariance.from_anomalies(train, 1, step_hours=6, shrinkage=0.1)
    bg = B.BackgroundCovariance.from_anomalies(train, shrinkage=0.1)
    a = B.spacetime_oi(st, [obs], 0)
    b = B.optimal_interpolation(bg, obs)
    np.testing.assert_allclose(a["mean"], b["mean"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(a["sd"], b["sd"], rtol=1e-4, atol=1e-4)


def test_window_matches_the_dense_lagged_covariance():
    train = _series()
    alpha, T, target = 0.05, 3, 1
    cov = B.SpaceTimeCovariance.from_anomalies(train, T, step_hours=6, shrinkage=alpha)
    X = np.concatenate([cov.at(k) for k in range(T)], axis=1).astype(np.float64)  # [n, T p]
    full = X.T @ X / X.shape[0]
    full = (1 - alpha) * full + alpha * np.diag(np.diag(full))
    obs = [_obs(5, 2), None, _obs(4, 3)]  # nothing observed at the analysed time
    p = GRID.size
    H = np.zeros((9, T * p))
    H[:5, :p] = as_matrix(bilinear_stencil(GRID, obs[0]["lat"], obs[0]["lon"]), p)
    H[5:, 2 * p :] = as_matrix(bilinear_stencil(GRID, obs[2]["lat"], obs[2]["lon"]), p)
    y = np.concatenate([obs[0]["value"], obs[2]["value"]])
    S = H @ full @ H.T + 0.25 * np.eye(9)
    K = np.linalg.solve(S, H @ full).T
    mean = (K @ y)[target * p : (target + 1) * p]
    post = full - K @ H @ full
    sd = np.sqrt(np.diag(post)[target * p : (target + 1) * p])
    ds = B.spacetime_oi(cov, obs, target, n_samples=4000, seed=0)
    np.testing.assert_allclose(ds["mean"].values.ravel(), mean, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ds["sd"].values.ravel(), sd, rtol=1e-4, atol=1e-4)
    # the Matheron draws have that mean and SD too (MC error: sd / sqrt(4000) ~ 1.6% of sd)
    draws = ds["anomaly"].values.reshape(4000, -1)
    assert np.all(np.abs(draws.mean(0) - mean) < 5 * sd / np.sqrt(4000))
    assert np.all(np.abs(draws.std(0) / sd - 1) < 5 / np.sqrt(2 * 4000))
    # the neighbours' observations inform the unobserved time: sharper than the prior
    assert np.all(sd < np.sqrt(cov.variance[target]))


def test_windows_do_not_straddle_a_gap():
    whole = B.SpaceTimeCovariance.from_anomalies(_series(100), 5, step_hours=6)
    gapped = B.SpaceTimeCovariance.from_anomalies(_series(100, gap_at=50), 5, step_hours=6)
    assert whole.starts.size == 96 and gapped.starts.size == 92


def test_bad_input():
    cov = B.SpaceTimeCovariance.from_anomalies(_series(50), 3, step_hours=6)
    with pytest.raises(ValueError, match="2 observation tables for a window of 3"):
        B.spacetime_oi(cov, [_obs(3, 0), None], 0)
    with pytest.raises(ValueError, match="no observation at any"):
        B.spacetime_oi(cov, [None, None, None], 0)
    with pytest.raises(ValueError, match="target=3"):
        B.spacetime_oi(cov, [_obs(3, 0), None, None], 3)
    with pytest.raises(ValueError, match="shrinkage"):
        B.SpaceTimeCovariance.from_anomalies(_series(50), 3, step_hours=6, shrinkage=0.0)
