"""The learned-error model: cells, the eigenbasis likelihood, and the posterior against the
exact mixture of Gaussians for a linear decoder."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from bayesda.inference.assimilate import assimilate
from bayesda.inference.errors import (
    SITE_SD_GRID,
    cells_of,
    learned_errors,
    learned_loglik,
    site_sd_prior,
)
from bayesda.obs.operator import as_matrix, bilinear_stencil, interpolate
from bayesda.settings import ModelOptions, SamplerSettings
from bayesda.testing import (
    assert_matches_closed_form,
    colocated_obs,
    learned_posterior,
    make_linear_prior,
    make_obs,
)


def _station_loglik(prior, obs, field, lam, tau):
    """Station by station: ``y ~ N(H x, lam^2 H C H^T + diag(sigma^2 + tau^2))``."""
    npix = prior.grid.size
    H = as_matrix(bilinear_stencil(prior.grid, obs["lat"], obs["lon"]), npix)
    F = prior.repr_error.factor.reshape(-1, npix).astype(np.float64)
    C = F.T @ F + np.diag(prior.repr_error.diag_var.reshape(npix).astype(np.float64))
    cov = lam**2 * H @ C @ H.T + np.diag(obs["sigma"].to_numpy() ** 2 + tau**2)
    return stats.multivariate_normal(H @ field.ravel(), cov).logpdf(obs["value"].to_numpy())


def test_cell_likelihood_is_the_station_likelihood_for_colocated_reports():
    # Reports of a cell at one point: the cell means and their spread are sufficient, so the
    # eigenbasis likelihood equals the dense station-level one up to a constant of the data.
    prior = make_linear_prior(latent_dim=3, rank=2)
    obs = colocated_obs(prior.grid, n_sites=6, per_site=3, seed=2)
    obs.loc[::2, "sigma"] = 0.5  # equal within each site (all 0.5 here)
    cells = cells_of(prior.grid, obs)
    assert len(cells.frame) == 6 and (cells.frame["count"] == 3).all()
    e = learned_errors(cells, prior.repr_error, pad_to=32, site_sd_scale=1.5)
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(3):
        field = rng.normal(size=prior.grid.shape)
        lam = float(rng.uniform(0.5, 2.0))
        resid = np.zeros(32)
        resid[:6] = cells.frame["value"].to_numpy() - interpolate(field, cells.stencil)
        cell = learned_loglik(resid, lam, e, 6)
        station = [_station_loglik(prior, obs, field, lam, t) for t in SITE_SD_GRID[1:]]
        diffs.append(cell[1:] - np.asarray(station))
    diffs = np.asarray(diffs)
    np.testing.assert_allclose(diffs, diffs[0, 0], atol=2e-3)  # one constant for all


def test_cell_stencils_average_their_stations_rows():
    prior = make_linear_prior()
    obs = make_obs(prior.grid, 40, seed=3)
    cells = cells_of(prior.grid, obs)
    field = np.random.default_rng(1).normal(size=prior.grid.shape)
    at_stations = interpolate(field, bilinear_stencil(prior.grid, obs["lat"], obs["lon"]))
    want = np.bincount(cells.member, weights=at_stations) / cells.frame["count"].to_numpy()
    np.testing.assert_allclose(interpolate(field, cells.stencil), want, rtol=1e-5)
    np.testing.assert_allclose(cells.stencil.weight.sum(axis=1), 1.0, rtol=1e-6)


def test_site_sd_prior_is_the_half_normal_mass():
    p = np.exp(site_sd_prior(1.5))
    assert p.sum() == pytest.approx(1.0)
    assert p[0] == pytest.approx(stats.halfnorm(scale=1.5).cdf(0.05))
    with pytest.raises(ValueError, match="site_sd_scale must be > 0"):
        site_sd_prior(0.0)


@pytest.mark.parametrize("method", ["nuts", "laplace"])
def test_learned_posterior_matches_the_exact_mixture(method):
    prior = make_linear_prior(latent_dim=3, rank=2)
    obs = colocated_obs(prior.grid, n_sites=8, per_site=3, seed=4)
    options = ModelOptions()
    mean, cov, scales = learned_posterior(prior, obs, options)
    if method == "laplace":
        # Laplace is Gaussian in (z, log lam, b) with tau summed: only roughly the mixture
        a = assimilate(
            prior,
            obs,
            seed=1,
            sampler=SamplerSettings(method="laplace", num_chains=2, num_samples=1000),
            progress_bar=False,
        )
        err = a.field.reshape(-1, prior.grid.size).mean(0) - mean
        assert np.max(np.abs(err) / np.sqrt(np.diag(cov))) < 0.5
        return
    a = assimilate(
        prior,
        obs,
        seed=0,
        sampler=SamplerSettings(num_chains=4, num_warmup=300, num_samples=1000),
        progress_bar=False,
    )
    assert int(a.idata.sample_stats["diverging"].sum()) == 0
    assert_matches_closed_form(a, mean, cov, prior.grid)
    post = a.idata.posterior
    for name in ("repr_scale", "site_sd"):
        draws = post[name].values.ravel()
        mc = draws.std() / np.sqrt(len(draws) / 10)  # a generous autocorrelation allowance
        assert abs(draws.mean() - scales[name]) < 5 * mc + 0.02, (name, draws.mean(), scales)
