"""Tiny synthetic priors and observations with exact answers, for tests of bayesda and of code
built on it (as ``xarray.testing`` or weatherbench2's mock data).

* :func:`make_linear_prior`: a linear decoder ``g(z) = W z + b`` with a correlated
  representation error, on :func:`tiny_grid` (4 x 5) unless a grid is given;
* :func:`make_obs`: a reproducible observation table;
* :func:`dense_posterior`: the closed-form Gaussian posterior of the whole field, the
  reference every sampler test compares with, and :func:`assert_matches_closed_form`,
  which compares a sampled posterior with it within Monte Carlo error;
* :func:`grf_prior`, :func:`obs_at`, :func:`obs_of`: a linear prior holding a whole Gaussian
  random field, and observations of a given or a sampled truth;
* :func:`colocated_obs` and :func:`learned_posterior`: reports in groups at one place and
  the exact posterior of the learned-error model there (a mixture over its error scales);
* :data:`TINY_VAE`, :data:`TINY_VAE_GRID`, :func:`vae_params`: a VAE small enough to
  initialise in a test, and :func:`save_tiny_model`, a hash-verified model directory of it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.linalg

from bayesda.geo.grid import Grid
from bayesda.obs.operator import as_matrix, bilinear_stencil
from bayesda.prior.generative import linear_prior
from bayesda.prior.representation import RepresentationError
from bayesda.prior.vae import VAE, VAEConfig
from bayesda.sim.grf import GaussianRandomField

__all__ = [
    "TINY_VAE",
    "TINY_VAE_GRID",
    "assert_matches_closed_form",
    "colocated_obs",
    "dense_posterior",
    "grf_prior",
    "learned_posterior",
    "make_linear_prior",
    "make_obs",
    "obs_at",
    "obs_of",
    "save_tiny_model",
    "tiny_grid",
    "vae_params",
]

TINY_VAE = VAEConfig(nlat=5, nlon=7, latent_dim=3, channels=(4,))
TINY_VAE_GRID = Grid(lat=np.linspace(40.0, 50.0, 5), lon=np.linspace(-10.0, 2.0, 7))


def tiny_grid() -> Grid:
    """A 4 x 5 regional grid over North America (30-45 N, 110-90 W)."""
    return Grid(lat=np.linspace(30.0, 45.0, 4), lon=np.linspace(-110.0, -90.0, 5))


def make_linear_prior(
    *, grid: Grid | None = None, latent_dim: int = 3, rank: int = 2, seed: int = 0
):
    """``g(z) = W z + b`` with a non-zero low-rank + diagonal representation error."""
    grid = grid or tiny_grid()
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(*grid.shape, latent_dim)).astype(np.float32)
    b = 0.5 * rng.normal(size=grid.shape).astype(np.float32)
    F = (0.4 * rng.normal(size=(rank, *grid.shape))).astype(np.float32)
    d = np.full(grid.shape, 0.1, np.float32)
    return linear_prior(W, b, grid, RepresentationError(F, d), name="tiny-linear")


def make_obs(
    grid: Grid, n: int, *, at_nodes: bool = False, sigma: float = 0.5, seed: int = 1
) -> pd.DataFrame:
    """``n`` observations; ``at_nodes`` puts them on distinct grid nodes."""
    rng = np.random.default_rng(seed)
    if at_nodes:
        flat = rng.choice(grid.size, size=n, replace=False)
        lat, lon = grid.lat[flat // grid.shape[1]], grid.lon[flat % grid.shape[1]]
    else:
        lat = rng.uniform(grid.lat[0], grid.lat[-1], n)
        lon = rng.uniform(grid.lon[0], grid.lon[-1], n)
    return pd.DataFrame(
        {
            "lat": lat,
            "lon": lon,
            "value": rng.normal(0.0, 2.0, n),
            "sigma": np.full(n, sigma),
            "station_id": [f"S{i:03d}" for i in range(n)],
        }
    )


def dense_posterior(prior, obs: pd.DataFrame):
    """Closed-form Gaussian posterior of ``x = W z + b + r`` given ``y = H x + e``.

    Returns ``(mean [npix], cov [npix, npix])`` in float64.
    """
    grid = prior.grid
    npix = grid.size
    d = prior.latent_dim
    W = np.asarray(prior.decode(np.eye(d, dtype=np.float32)), np.float64).reshape(d, npix).T
    b = np.asarray(prior.decode(np.zeros(d, np.float32)), np.float64).reshape(npix)
    W = W - b[:, None]
    F = np.asarray(prior.repr_error.factor, np.float64).reshape(-1, npix)
    C = F.T @ F + np.diag(np.asarray(prior.repr_error.diag_var, np.float64).reshape(npix))
    P = W @ W.T + C
    H = as_matrix(bilinear_stencil(grid, obs["lat"], obs["lon"]), npix)
    R = np.diag(obs["sigma"].to_numpy(np.float64) ** 2)
    S = H @ P @ H.T + R
    K = np.linalg.solve(S, H @ P).T
    mean = b + K @ (obs["value"].to_numpy(np.float64) - H @ b)
    cov = P - K @ H @ P
    return mean, cov


def assert_matches_closed_form(a, mean, cov, grid, *, k: float = 5.0) -> None:
    """Assert that the field draws of an assimilation match a Gaussian posterior.

    Mean and SD of every pixel within ``k`` Monte Carlo errors (``sd / sqrt(ESS)`` and
    ``1 / sqrt(2 ESS)``, ESS per pixel from ArviZ), correlations within ``k / sqrt(min ESS)``.

    Args:
      a: a :class:`bayesda.inference.result.Assimilation` (``a.field`` ``[chain, draw, ...]``).
      mean: ``[npix]`` exact posterior mean; cov: ``[npix, npix]`` exact covariance.
      grid: the field's grid.
      k: the tolerance in Monte Carlo errors.
    """
    import arviz as az

    field = a.field.reshape(*a.field.shape[:2], -1)
    ess = az.ess(az.convert_to_dataset(field), method="bulk")["x"].values  # per pixel
    sd = np.sqrt(np.diag(cov))
    err = field.reshape(-1, grid.size).mean(0) - mean
    assert np.all(np.abs(err) < k * sd / np.sqrt(ess)), np.max(np.abs(err) / (sd / np.sqrt(ess)))
    # SD: the sample SD's relative MC error is about 1/sqrt(2 ESS).
    sd_hat = field.reshape(-1, grid.size).std(0, ddof=1)
    assert np.all(np.abs(sd_hat / sd - 1) < k / np.sqrt(2 * ess)), np.max(
        np.abs(sd_hat / sd - 1) * np.sqrt(2 * ess)
    )
    # Full covariance: correlations agree to within a loose MC bound.
    corr = cov / np.outer(sd, sd)
    corr_hat = np.corrcoef(field.reshape(-1, grid.size).T)
    assert np.max(np.abs(corr_hat - corr)) < k / np.sqrt(ess.min())


def grf_prior(*, repr_sd: float = 0.3, seed: int = 0):
    """A linear prior holding a whole GRF (``W`` its Cholesky factor) plus a diagonal C.

    Returns ``(prior, grf)`` on a 6 x 8 grid over North America.
    """
    grid = Grid(lat=np.linspace(30.0, 50.0, 6), lon=np.linspace(-120.0, -90.0, 8))
    grf = GaussianRandomField(grid, length_scale_km=800.0, sd=2.0, land_sea_ratio=1.0)
    W = grf.cholesky.reshape(*grid.shape, grid.size)
    re = RepresentationError(
        np.zeros((0, *grid.shape), np.float32), np.full(grid.shape, repr_sd**2, np.float32)
    )
    return linear_prior(W, np.zeros(grid.shape), grid, re, name="grf"), grf


def obs_at(prior, truth, n: int, *, seed: int, sigma: float = 0.5) -> pd.DataFrame:
    """``n`` observations of a given truth at random sites, errors of SD ``sigma``."""
    rng = np.random.default_rng([seed, 3])
    g = prior.grid
    lat = rng.uniform(g.lat[0], g.lat[-1], n)
    lon = rng.uniform(g.lon[0], g.lon[-1], n)
    H = as_matrix(bilinear_stencil(g, lat, lon), g.size)
    y = H @ truth.ravel() + sigma * rng.standard_normal(n)
    return pd.DataFrame({"lat": lat, "lon": lon, "value": y, "sigma": sigma})


def obs_of(prior, grf, n: int, *, seed: int, sigma: float = 0.5, noise_sd=None) -> pd.DataFrame:
    """``n`` observations of a truth drawn from ``grf`` plus the prior's diagonal
    representation error; errors of SD ``noise_sd`` (default ``sigma``), stated as ``sigma``."""
    rng = np.random.default_rng(seed)
    g = prior.grid
    truth = grf.sample(rng, 1)[0] + np.sqrt(prior.repr_error.diag_var) * rng.standard_normal(
        g.shape
    )
    lat = rng.uniform(g.lat[0], g.lat[-1], n)
    lon = rng.uniform(g.lon[0], g.lon[-1], n)
    H = as_matrix(bilinear_stencil(g, lat, lon), g.size)
    y = H @ truth.ravel() + (noise_sd or sigma) * rng.standard_normal(n)
    return pd.DataFrame(
        {
            "station_id": [f"S{i}" for i in range(n)],
            "lat": lat,
            "lon": lon,
            "value": y,
            "sigma": sigma,
        }
    )


def vae_params(seed: int = 0, config: VAEConfig = TINY_VAE) -> dict:
    """Freshly initialised parameters of a VAE (host arrays)."""
    import jax
    import jax.numpy as jnp

    x = jnp.zeros((1, config.nlat, config.nlon))
    return jax.device_get(VAE(config).init(jax.random.key(seed), x, jax.random.key(1))["params"])


def save_tiny_model(path, *, seed: int = 0):
    """A model directory of :data:`TINY_VAE` with random normalisation and a rank-2 ``C``.

    Returns ``(path, params, norm_mean, norm_sd, repr_error)``.
    """
    from bayesda.prior.checkpoint import save_model

    rng = np.random.default_rng(seed)
    params = vae_params(seed)
    mean = rng.normal(size=TINY_VAE_GRID.shape).astype(np.float32)
    sd = rng.uniform(0.5, 2.0, size=TINY_VAE_GRID.shape).astype(np.float32)
    rep = RepresentationError(
        rng.normal(size=(2, *TINY_VAE_GRID.shape)).astype(np.float32),
        rng.uniform(0.1, 0.2, size=TINY_VAE_GRID.shape).astype(np.float32),
    )
    path = save_model(
        path,
        params=params,
        config=TINY_VAE,
        grid=TINY_VAE_GRID,
        norm_mean=mean,
        norm_sd=sd,
        repr_error=rep,
        card={"metrics": {"x": 1.0}},
        model_card="# card\n",
    )
    return path, params, mean, sd, rep


def colocated_obs(grid, n_sites: int, per_site: int, *, sigma: float = 0.5, seed: int = 0):
    """Observations in groups of ``per_site`` reports at the same place (random values).

    With every report of a cell at one point, the learned-error model's cell means and
    within-cell spread are exactly the station-level likelihood (up to a constant)."""
    rng = np.random.default_rng(seed)
    flat = rng.choice(grid.size, size=n_sites, replace=False)
    lat = grid.lat[flat // grid.shape[1]] + rng.uniform(-0.2, 0.2, n_sites) * np.diff(grid.lat)[0]
    lon = grid.lon[flat % grid.shape[1]] + rng.uniform(-0.2, 0.2, n_sites) * np.diff(grid.lon)[0]
    lat = np.clip(lat, grid.lat[0], grid.lat[-1])
    lon = np.clip(lon, grid.lon[0], grid.lon[-1])
    k = np.repeat(np.arange(n_sites), per_site)
    return pd.DataFrame(
        {
            "station_id": [f"S{i:03d}" for i in range(k.size)],
            "lat": lat[k],
            "lon": lon[k],
            "value": rng.normal(0.0, 2.0, k.size),
            "sigma": np.full(k.size, sigma),
        }
    )


def learned_posterior(prior, obs: pd.DataFrame, options, *, n_scale: int = 81):
    """The exact posterior of the learned-error model with a linear decoder, station by
    station (dense Gaussian algebra, independent of :mod:`bayesda.inference.errors`).

    ``x = W z + b0 + b + r``; given the site SD ``tau`` (the model's grid) and the
    representation scale ``lam`` (a fine grid over its LogNormal prior, ``n_scale``
    points), everything is Gaussian; the posterior is the mixture over both, weighted by
    prior times marginal likelihood. Valid where the model's cell means are exact: every
    report of a cell at one point (:func:`colocated_obs`).

    Returns:
      ``(mean [npix], cov [npix, npix], {"repr_scale": mean, "site_sd": mean})``.
    """
    from scipy import stats

    from bayesda.inference.errors import SITE_SD_GRID

    grid = prior.grid
    npix = grid.size
    d = prior.latent_dim
    b0 = np.asarray(prior.decode(np.zeros(d, np.float32)), np.float64).reshape(npix)
    W = np.asarray(prior.decode(np.eye(d, dtype=np.float32)), np.float64).reshape(d, npix).T
    W = W - b0[:, None]
    F = np.asarray(prior.repr_error.factor, np.float64).reshape(-1, npix)
    C = F.T @ F + np.diag(np.asarray(prior.repr_error.diag_var, np.float64).reshape(npix))
    H = as_matrix(bilinear_stencil(grid, obs["lat"], obs["lon"]), npix)
    y = obs["value"].to_numpy(np.float64)
    s2 = np.square(obs["sigma"].to_numpy(np.float64))
    beta2 = options.offset_sd**2
    ones = np.ones(npix)
    # site-SD prior: HalfNormal mass of each grid point's interval
    edges = np.concatenate([[0.0], 0.5 * (SITE_SD_GRID[1:] + SITE_SD_GRID[:-1]), [np.inf]])
    p_tau = np.diff(stats.halfnorm(scale=options.site_sd_scale).cdf(edges))
    # lam: a fine grid in log lam, prior mass by the trapezoid rule
    u = np.linspace(-5.0, 5.0, n_scale) * options.repr_scale_sd
    p_lam = stats.norm(scale=options.repr_scale_sd).pdf(u)
    p_lam /= p_lam.sum()
    logw, means, covs, taus, lams = [], [], [], [], []
    for tau, pt in zip(SITE_SD_GRID, p_tau, strict=True):
        for uu, pl in zip(u, p_lam, strict=True):
            lam = np.exp(uu)
            P = W @ W.T + lam**2 * C + beta2 * np.outer(ones, ones)
            S = H @ P @ H.T + np.diag(s2 + tau**2)
            r = y - H @ b0
            cho = scipy.linalg.cho_factor(S, lower=True)
            a = scipy.linalg.cho_solve(cho, r)
            ll = -0.5 * r @ a - np.sum(np.log(np.diag(cho[0]))) - 0.5 * y.size * np.log(2 * np.pi)
            K = scipy.linalg.cho_solve(cho, H @ P).T  # [npix, n]
            logw.append(np.log(pt) + np.log(pl) + ll)
            means.append(b0 + P @ H.T @ a)
            covs.append(P - K @ H @ P)
            taus.append(tau)
            lams.append(lam)
    logw = np.asarray(logw)
    w = np.exp(logw - logw.max())
    w /= w.sum()
    means, covs = np.asarray(means), np.asarray(covs)
    mean = w @ means
    dev = means - mean
    cov = np.einsum("k,kij->ij", w, covs) + np.einsum("k,ki,kj->ij", w, dev, dev)
    return (
        mean,
        cov,
        {"repr_scale": float(w @ np.asarray(lams)), "site_sd": float(w @ np.asarray(taus))},
    )
