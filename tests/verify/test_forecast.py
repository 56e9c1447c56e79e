"""Forecast skill of latent dynamics (bayesda.verify.forecast) on a process they describe."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import xarray as xr

from bayesda.geo.grid import Grid
from bayesda.prior.generative import linear_prior
from bayesda.prior.representation import RepresentationError
from bayesda.testing import make_dynamics
from bayesda.verify.forecast import forecast_skill

GRID = Grid(lat=np.linspace(30, 45, 4), lon=np.linspace(-10, 10, 5))


def _world(n=1200, seed=0):
    """A linear prior with an exact encoder, and fields that follow its dynamics."""
    d = 3
    rng = np.random.default_rng(seed)
    W = np.linalg.qr(rng.standard_normal((GRID.size, d)))[0] * 3.0  # orthogonal columns
    rep = RepresentationError(
        np.zeros((0, *GRID.shape), np.float32), np.full(GRID.shape, 0.25, np.float32)
    )
    prior = linear_prior(W.reshape(*GRID.shape, d), np.zeros(GRID.shape), GRID, rep)
    pinv = jnp.asarray(np.linalg.pinv(W), jnp.float32)
    prior = dataclasses.replace(
        prior,
        encode=lambda x: (x.reshape(*x.shape[:-2], -1) @ pinv.T, jnp.zeros(x.shape[:-2] + (d,))),
        dynamics=make_dynamics(d, radius=0.9, repr_corr=0.5),
    )
    dyn = prior.dynamics
    z = np.empty((n, d))
    r = np.empty((n, GRID.size))
    z[0] = dyn.initial_factor() @ rng.standard_normal(d)
    r[0] = 0.5 * rng.standard_normal(GRID.size)
    for t in range(1, n):
        z[t] = dyn.transition @ z[t - 1] + dyn.noise @ rng.standard_normal(d)
        r[t] = 0.5 * r[t - 1] + np.sqrt(0.75) * 0.5 * rng.standard_normal(GRID.size)
    # r is not orthogonal to W, so the encoder sees a little of it: close enough here
    x = (z @ W.T + r).reshape(n, *GRID.shape).astype(np.float32)
    time = np.datetime64("2013-01-01") + np.arange(n) * np.timedelta64(6, "h")
    da = xr.DataArray(x, dims=("time", "lat", "lon"), coords={"time": time, **GRID.coords()})
    return prior, da


def test_dynamics_beat_persistence_and_climatology_and_are_calibrated():
    prior, fields = _world()
    out = forecast_skill(
        prior,
        prior.dynamics,
        fields.isel(time=slice(800, None)),
        fields.isel(time=slice(0, 800)),
        leads=(1, 4),
    )
    assert set(out) == {"6h", "24h"} and out["6h"]["n_pairs"] == 399
    for lead in ("6h", "24h"):
        row = out[lead]
        best_other = min(row["persistence"]["crps"], row["climatology"]["crps"])
        assert row["dynamics"]["crps"] < best_other - 2 * row["dynamics"]["crps_se"]
        assert abs(row["dynamics"]["spread_skill"] - 1) < 0.12
        assert abs(row["climatology"]["spread_skill"] - 1) < 0.12
    assert out["6h"]["persistence"]["crps"] < out["6h"]["climatology"]["crps"]
    # the forecast loses skill with lead
    assert out["6h"]["dynamics"]["crps"] < out["24h"]["dynamics"]["crps"]
