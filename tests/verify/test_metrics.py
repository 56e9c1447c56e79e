"""Tests for bayesda.verify.metrics: each score against an independent or analytic answer."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import integrate, stats

from bayesda.geo.grid import Grid
from bayesda.verify import metrics as M


def make_grid(*, nlat=20, nlon=40) -> Grid:
    return Grid(lat=np.linspace(-70, 70, nlat), lon=np.linspace(-180, 180, nlon, endpoint=False))


def field(grid: Grid, values) -> xr.DataArray:
    return xr.DataArray(np.asarray(values, np.float64), dims=("lat", "lon"), coords=grid.coords())


def members(grid: Grid, values, *, chains=True) -> xr.DataArray:
    values = np.asarray(values, np.float64)
    if chains:
        return xr.DataArray(values, dims=("chain", "draw", "lat", "lon"), coords=grid.coords())
    return xr.DataArray(values, dims=(M.SAMPLE_DIM, "lat", "lon"), coords=grid.coords())


def calibrated_case(*, m, seed, nlat=20, nlon=40, chains=2):
    """Truth and an m-member ensemble drawn from the same N(mu, sd^2) at each point."""
    grid = make_grid(nlat=nlat, nlon=nlon)
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=grid.shape)
    sd = rng.uniform(0.5, 2.0, size=grid.shape)
    truth = mu + sd * rng.standard_normal(grid.shape)
    ens = mu + sd * rng.standard_normal((chains, m // chains, *grid.shape))
    return grid, field(grid, mu), field(grid, sd), field(grid, truth), members(grid, ens)


def n_eff(grid: Grid) -> float:
    """Effective number of independent points under cos-lat weights."""
    w = np.broadcast_to(grid.lat_weights()[:, None], grid.shape)
    return w.sum() ** 2 / np.sum(w**2)


# --- plumbing ------------------------------------------------------------------------


def test_as_ensemble_stacks_chain_major():
    grid = make_grid(nlat=3, nlon=4)
    vals = np.arange(2 * 3 * 12, dtype=float).reshape(2, 3, 3, 4)
    ens = M.as_ensemble(members(grid, vals))
    assert ens.dims == (M.SAMPLE_DIM, "lat", "lon")
    assert ens.sizes[M.SAMPLE_DIM] == 6
    np.testing.assert_array_equal(ens.values, vals.reshape(6, 3, 4))
    ds = xr.Dataset({"anomaly": members(grid, vals)})
    np.testing.assert_array_equal(M.as_ensemble(ds).values, ens.values)


def test_as_ensemble_errors_name_the_problem():
    grid = make_grid(nlat=3, nlon=4)
    with pytest.raises(ValueError, match="no ensemble dimension"):
        M.as_ensemble(grid.template())
    with pytest.raises(ValueError, match="no variable 'anomaly'"):
        M.as_ensemble(xr.Dataset({"x": grid.template()}))


# --- deterministic scores ------------------------------------------------------------


def test_rmse_and_bias_of_constant_error():
    grid = make_grid()
    truth = field(grid, np.random.default_rng(1).normal(size=grid.shape))
    assert float(M.rmse(truth + 0.7, truth)) == pytest.approx(0.7)
    assert float(M.bias(truth - 0.3, truth)) == pytest.approx(-0.3)
    assert float(M.rmse(truth, truth)) == 0.0


def test_rmse_is_latitude_weighted():
    grid = make_grid(nlat=5, nlon=6)
    err = np.zeros(grid.shape)
    err[0] = 2.0  # error only on the most poleward row
    w = np.cos(np.deg2rad(grid.lat))
    expected = np.sqrt(4.0 * w[0] / w.sum())
    truth = field(grid, np.zeros(grid.shape))
    assert float(M.rmse(truth + err, truth)) == pytest.approx(expected)
    assert float(M.rmse(truth + err, truth)) < np.sqrt(np.mean(err**2))


def test_rmse_uses_dataset_mean_and_ensemble_mean():
    grid = make_grid(nlat=4, nlon=5)
    truth = field(grid, np.zeros(grid.shape))
    ens = members(grid, np.stack([np.full((2, *grid.shape), 1.0), np.full((2, *grid.shape), 3.0)]))
    assert float(M.rmse(ens, truth)) == pytest.approx(2.0)
    ds = xr.Dataset({"anomaly": ens, "mean": truth + 0.5})
    assert float(M.rmse(ds, truth)) == pytest.approx(0.5)


def test_mask_restricts_points_and_keeps_other_dims():
    grid = make_grid(nlat=4, nlon=5)
    truth = field(grid, np.zeros(grid.shape))
    err = np.zeros(grid.shape)
    mask = np.zeros(grid.shape, bool)
    mask[:, :2] = True
    err[~mask] = 5.0
    assert float(M.rmse(truth + err, truth, mask=mask)) == 0.0
    assert float(M.rmse(truth + err, truth, mask=~mask)) == pytest.approx(5.0)
    series = xr.concat([truth + 1.0, truth + 2.0], dim="time")
    np.testing.assert_allclose(M.rmse(series, truth).values, [1.0, 2.0])
    pointwise = M.rmse(truth + err, truth, dims=())
    assert pointwise.dims == ("lat", "lon")


def test_mask_errors():
    grid = make_grid(nlat=4, nlon=5)
    truth = grid.template()
    with pytest.raises(ValueError, match=r"mask shape \(3, 5\)"):
        M.rmse(truth, truth, mask=np.ones((3, 5), bool))
    with pytest.raises(ValueError, match="selects no grid points"):
        M.rmse(truth, truth, mask=np.zeros(grid.shape, bool))
    with pytest.raises(ValueError, match="must be boolean"):
        M.rmse(truth, truth, mask=np.ones(grid.shape))
    other = make_grid(nlat=4, nlon=6).template().astype(bool)
    with pytest.raises(ValueError, match="mask lon coordinates differ"):
        M.rmse(truth, truth, mask=other)


# --- CRPS ----------------------------------------------------------------------------


def crps_brute(x, y, fair):
    m = x.size
    pair = np.abs(x[:, None] - x[None, :]).sum()
    return np.mean(np.abs(x - y)) - pair / (2 * m * (m - 1) if fair else 2 * m * m)


@pytest.mark.parametrize("fair", [True, False], ids=["fair", "standard"])
def test_crps_ensemble_matches_pairwise_formula(fair):
    grid = make_grid(nlat=3, nlon=4)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(7, *grid.shape))
    y = rng.normal(size=grid.shape)
    got = M.crps_ensemble(members(grid, x, chains=False), field(grid, y), fair=fair, dims=())
    expected = np.vectorize(lambda i, j: crps_brute(x[:, i, j], y[i, j], fair))(
        *np.indices(grid.shape)
    )
    np.testing.assert_allclose(got.values, expected, rtol=1e-12)


def test_crps_of_single_member_is_absolute_error():
    grid = make_grid(nlat=3, nlon=4)
    truth = field(grid, np.zeros(grid.shape))
    one = members(grid, np.full((1, *grid.shape), -1.5), chains=False)
    assert float(M.crps_ensemble(one, truth, fair=False)) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="needs >= 2 members, got 1"):
        M.crps_ensemble(one, truth)


def test_crps_gaussian_matches_numerical_integral():
    mu, sd, y = 0.3, 1.7, 2.1
    integrand = lambda x: (stats.norm.cdf(x, mu, sd) - (x >= y)) ** 2  # noqa: E731
    expected = integrate.quad(integrand, -30, y)[0] + integrate.quad(integrand, y, 30)[0]
    grid = make_grid(nlat=2, nlon=2)
    got = M.crps_gaussian(
        field(grid, np.full(grid.shape, mu)),
        field(grid, np.full(grid.shape, sd)),
        field(grid, np.full(grid.shape, y)),
    )
    assert float(got) == pytest.approx(expected, rel=1e-6)
    zero_sd = M.crps_gaussian(
        field(grid, np.full(grid.shape, mu)),
        field(grid, np.zeros(grid.shape)),
        field(grid, np.full(grid.shape, y)),
    )
    assert float(zero_sd) == pytest.approx(abs(y - mu))
    with pytest.raises(ValueError, match="sd must be >= 0"):
        M.crps_gaussian(
            field(grid, np.zeros(grid.shape)),
            field(grid, -np.ones(grid.shape)),
            field(grid, np.zeros(grid.shape)),
        )


def test_crps_ensemble_converges_to_gaussian_closed_form():
    grid, mu, sd, truth, ens = calibrated_case(m=200, seed=3)
    diff = M.crps_ensemble(ens, truth, dims=()) - M.crps_gaussian(mu, sd, truth, dims=())
    # The fair estimator is unbiased: the spatial mean of the pointwise differences is 0
    # up to Monte Carlo error (points are independent here).
    mean_diff = float(M.spatial_mean(diff))
    se = float(diff.std()) / np.sqrt(n_eff(grid))
    assert abs(mean_diff) < 6 * se


def test_crps_ensemble_standard_is_biased_high_for_small_ensembles():
    grid, mu, sd, truth, ens = calibrated_case(m=4, seed=4)
    fair = float(M.crps_ensemble(ens, truth, fair=True))
    std = float(M.crps_ensemble(ens, truth, fair=False))
    assert std > fair


# --- spread / skill ------------------------------------------------------------------


def test_spread_skill_ratio_is_one_for_calibrated_small_ensemble():
    grid, mu, sd, truth, ens = calibrated_case(m=6, seed=5, nlat=50, nlon=100)
    ss = M.spread_skill(ens, truth)
    # Relative SE of the ratio ~ 0.5*sqrt(2/(m-1) + 2)/sqrt(n_eff) ~ 0.012 here; the
    # uncorrected ratio would be sqrt(6/7) = 0.926.
    se = 0.5 * np.sqrt(2 / 5 + 2) / np.sqrt(n_eff(grid))
    assert abs(float(ss["ratio"]) - 1.0) < 4 * se
    uncorrected = float(ss["spread"] / ss["skill"])
    assert abs(uncorrected - np.sqrt(6 / 7)) < 4 * se
    assert ss.attrs["n_members"] == 6


def test_spread_skill_detects_under_dispersion():
    grid, mu, sd, truth, ens = calibrated_case(m=100, seed=6)
    narrow = mu + 0.5 * (ens - mu)
    assert float(M.spread_skill(narrow, truth)["ratio"]) == pytest.approx(0.5, abs=0.05)


# --- coverage ------------------------------------------------------------------------


@pytest.mark.parametrize("level", [0.5, 0.9])
def test_coverage_is_nominal_for_calibrated_ensemble(level):
    grid, mu, sd, truth, ens = calibrated_case(m=1000, seed=7, nlat=40, nlon=80)
    se = np.sqrt(level * (1 - level) / n_eff(grid))
    assert abs(float(M.coverage(ens, truth, level)) - level) < 4 * se
    assert abs(float(M.coverage_gaussian(mu, sd, truth, level)) - level) < 4 * se


def test_coverage_of_small_calibrated_ensemble_follows_order_statistics():
    # m = 10, numpy's linear quantiles: q05 sits at order statistic 1.45, q95 at 9.55 (1-based)
    # and a calibrated truth's rank is uniform, so coverage = (9.55 - 1.45) / 11.
    grid, mu, sd, truth, ens = calibrated_case(m=10, seed=13, nlat=40, nlon=80)
    expected = (9.55 - 1.45) / 11
    se = np.sqrt(expected * (1 - expected) / n_eff(grid))
    assert abs(float(M.coverage(ens, truth, 0.9)) - expected) < 4 * se


def test_coverage_levels_dim_and_monotone():
    grid, mu, sd, truth, ens = calibrated_case(m=200, seed=8)
    lv = [0.1, 0.5, 0.9]
    cov = M.coverage(ens, truth, lv)
    assert cov.dims == (M.LEVEL_DIM,)
    np.testing.assert_allclose(cov[M.LEVEL_DIM].values, lv)
    assert np.all(np.diff(cov.values) > 0)
    gcov = M.coverage_gaussian(mu, sd, truth, lv)
    assert gcov.dims == (M.LEVEL_DIM,)


def test_coverage_rejects_bad_level():
    grid, mu, sd, truth, ens = calibrated_case(m=10, seed=9, nlat=3, nlon=3)
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\), got 90"):
        M.coverage(ens, truth, 90)


def test_coverage_of_exact_interval_edges_is_inclusive():
    grid = make_grid(nlat=3, nlon=4)
    truth = field(grid, np.ones(grid.shape))
    ens = members(grid, np.ones((2, 5, *grid.shape)))
    assert float(M.coverage(ens, truth, 0.9)) == pytest.approx(1.0)


# --- rank histogram ------------------------------------------------------------------


def test_rank_histogram_flat_for_calibrated_ensemble():
    grid, mu, sd, truth, ens = calibrated_case(m=10, seed=10, nlat=40, nlon=80)
    hist = M.rank_histogram(ens, truth)
    assert hist.sizes["rank"] == 11  # ranks 0..m
    assert float(hist.sum()) == pytest.approx(1.0)
    # Binomial SE of each bin frequency under flatness, effective n from the weights.
    k = hist.sizes["rank"]
    se = np.sqrt((1 / k) * (1 - 1 / k) / n_eff(grid))
    assert np.all(np.abs(hist.values - 1 / k) < 5 * se)


def test_rank_histogram_u_shaped_when_under_dispersed_and_binned():
    grid, mu, sd, truth, ens = calibrated_case(m=40, seed=11)
    narrow = mu + 0.3 * (ens - mu)
    hist = M.rank_histogram(narrow, truth, n_bins=5)
    assert hist.sizes["rank"] == 5
    np.testing.assert_array_equal(hist["rank"].values, [0, 9, 17, 25, 33])
    assert hist.values[0] > 0.25 and hist.values[-1] > 0.25 and hist.values[2] < 0.1


def test_rank_histogram_breaks_ties_randomly():
    grid = make_grid(nlat=20, nlon=20)
    truth = field(grid, np.zeros(grid.shape))
    ens = members(grid, np.zeros((1, 3, *grid.shape)))
    hist = M.rank_histogram(ens, truth)
    se = np.sqrt(0.25 * 0.75 / n_eff(grid))
    np.testing.assert_allclose(hist.values, 0.25, atol=5 * se)
    with pytest.raises(ValueError, match=r"n_bins must be in \[1, 4\], got 9"):
        M.rank_histogram(ens, truth, n_bins=9)


# --- observed mask and verify --------------------------------------------------------


def make_obs(lat, lon):
    n = len(lat)
    return pd.DataFrame({"lat": lat, "lon": lon, "value": np.zeros(n), "sigma": np.full(n, 0.5)})


def test_observed_mask_marks_nearest_node():
    grid = Grid(lat=np.array([0.0, 10.0, 20.0]), lon=np.array([0.0, 10.0, 20.0, 30.0]))
    obs = make_obs([1.0, 9.0, 9.5], [1.0, 28.0, 27.0])
    mask = M.observed_mask(grid, obs)
    assert mask.dims == ("lat", "lon") and mask.dtype == bool
    expected = np.zeros(grid.shape, bool)
    expected[0, 0] = expected[1, 3] = True
    np.testing.assert_array_equal(mask.values, expected)
    assert not M.observed_mask(grid, make_obs([], [])).any()
    with pytest.raises(ValueError, match=r"missing columns \['lon'\]"):
        M.observed_mask(grid, pd.DataFrame({"lat": [1.0]}))


def test_verify_scores_calibrated_posterior():
    grid, mu, sd, truth, ens = calibrated_case(m=400, seed=12, nlat=30, nlon=60)
    posterior = xr.Dataset({"anomaly": ens, "mean": mu, "sd": sd})
    # Make observed points perfect in the mean so that the two regions differ.
    obs = make_obs(grid.lat[::3], grid.lon[: grid.lat[::3].size])
    observed = M.observed_mask(grid, obs)
    out = M.verify(posterior, truth, obs)
    assert list(out["region"].values) == ["unobserved", "all"]
    for name in ["rmse", "bias", "crps", "spread", "spread_skill", "coverage_50", "coverage_90"]:
        assert out[name].dims == ("region",), name
    assert out.attrs["n_obs"] == len(obs)
    assert out.attrs["n_observed_points"] == int(observed.sum())
    se90 = np.sqrt(0.09 / n_eff(grid))
    assert abs(float(out["coverage_90"].sel(region="all")) - 0.9) < 5 * se90
    assert abs(float(out["spread_skill"].sel(region="all")) - 1.0) < 0.06
    np.testing.assert_allclose(
        float(out["rmse"].sel(region="unobserved")), float(M.rmse(mu, truth, mask=~observed))
    )
