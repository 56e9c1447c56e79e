"""Tiny synthetic priors and observations with exact answers, for tests of bayesda and of code
built on it (as ``xarray.testing`` or weatherbench2's mock data).

* :func:`make_linear_prior`: a linear decoder ``g(z) = W z + b`` with a correlated
  representation error, on :func:`tiny_grid` (4 x 5) unless a grid is given;
* :func:`make_obs`: a reproducible observation table;
* :func:`dense_posterior`: the closed-form Gaussian posterior of the whole field, the
  reference every sampler test compares with.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayesda.geo.grid import Grid
from bayesda.obs.operator import as_matrix, bilinear_stencil
from bayesda.prior import linear_prior
from bayesda.representation import RepresentationError

__all__ = ["dense_posterior", "make_linear_prior", "make_obs", "tiny_grid"]


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
