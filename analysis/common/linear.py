"""Closed-form Gaussian posteriors of the decoder linearised at ``z = 0``, and shifted truths.

Used by the source-shift, climate-offset and elevation studies: for the shipped NCEP decoder
(in effect PPCA) the linearised posterior is what MAP + Laplace computes, without sampling.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage

from bayesda.sim.grf import GaussianRandomField
from bayesda.verify import metrics

SHIFTS = ("none", "finer", "coarser")


def shift_times(times: np.ndarray, n_times: int) -> np.ndarray:
    """Indices of the source-shift studies' held-out times: ``n_times`` spread over the test
    blocks, offset from the gross-error study's so the experiments share no case."""
    from bayesda.data.split import block_split

    _, test = block_split(times)
    test_idx = np.flatnonzero(test)
    return test_idx[np.linspace(7, test_idx.size - 8, n_times).astype(int)]


def shift_cases(prior, data, k: int, case: int, shifts, networks, field: GaussianRandomField):
    """One held-out time ``k`` of the source-shift studies: ``(shift, n, truth, obs)`` for each
    shifted truth and station-like network of ``n`` observations (sigma 0.5 K)."""
    from bayesda.obs.table import pseudo_obs

    base = prior.climatology.to_anomaly(data["tas"].isel(time=int(k))).drop_vars("time")
    for shift in shifts:
        truth = shifted_truth(base, shift, 1000 + case, field)
        for n in networks:
            yield shift, n, truth, pseudo_obs(truth, n, network="station", sigma=0.5, seed=case)


def shifted_truth(truth, shift: str, seed: int, field: GaussianRandomField):
    """The truth of another source (see the module docstring)."""
    if shift == "none":
        return truth
    if shift == "finer":
        return truth + field.sample(seed, 1)[0].astype(np.float32)
    if shift == "coarser":
        return truth.copy(data=scipy.ndimage.uniform_filter(truth.values, size=3, mode="nearest"))
    raise ValueError(f"shift={shift!r}; expected one of {SHIFTS}")


class LinearisedPosterior:
    """The Gaussian posterior of the field under the decoder linearised at ``z = 0``.

    ``x = g(0) + J z + r``, ``z ~ N(0, I)``, ``r ~ N(0, b^2 C)``, ``y = H x + e``,
    ``e ~ N(0, a^2 diag(sigma^2))``: the prior covariance ``P = J J^T + a^2 C`` and the
    Kalman update give the posterior mean and SD of every pixel in closed form. For the
    shipped decoder (in effect PPCA) this is what MAP + Laplace computes, without sampling
    (cross-checked against ``--engine laplace`` on a few times).
    """

    def __init__(self, prior):
        import jax
        import jax.numpy as jnp

        d = prior.latent_dim
        z0 = jnp.zeros(d, jnp.float32)
        self.b = np.asarray(prior.decode(z0), np.float64).ravel()
        J = np.asarray(jax.jacrev(lambda z: prior.decode(z).reshape(-1))(z0), np.float64)
        self.JJt = J @ J.T
        npix = self.b.size
        re = prior.repr_error
        F = np.asarray(re.factor, np.float64).reshape(re.rank, npix)
        self.C = F.T @ F + np.diag(np.asarray(re.diag_var, np.float64).ravel())
        self.grid = prior.grid

    def __call__(self, obs, scale: float = 1.0, scale_obs: float | None = None):
        from bayesda.obs.operator import as_matrix, bilinear_stencil

        H = as_matrix(bilinear_stencil(self.grid, obs["lat"], obs["lon"]), self.b.size)
        P = self.JJt + scale**2 * self.C
        PHt = P @ H.T
        a = scale if scale_obs is None else scale_obs
        S = H @ PHt + np.diag(a**2 * obs["sigma"].to_numpy(np.float64) ** 2)
        w = np.linalg.solve(S, np.c_[obs["value"].to_numpy(np.float64) - H @ self.b, PHt.T])
        mean = self.b + PHt @ w[:, 0]
        var = np.diag(P) - np.sum(PHt * w[:, 1:].T, axis=1)
        shape = self.grid.shape
        return mean.reshape(shape), np.sqrt(np.maximum(var, 0.0)).reshape(shape)


def gaussian_scores(mean, sd, truth, obs) -> dict:
    """RMSE, CRPS, 90% coverage and spread/skill of a Gaussian field posterior at the
    unobserved grid points (those not nearest to an observation) of ``truth``'s grid."""
    mask = ~metrics.observed_mask(truth_grid(truth), obs)
    m = truth.copy(data=mean.astype(np.float64))
    s = truth.copy(data=sd.astype(np.float64))
    rmse = float(metrics.rmse(m, truth, mask=mask))
    spread = float(np.sqrt(metrics.spatial_mean(s**2, mask=mask)))
    return {
        "rmse": rmse,
        "crps": float(metrics.crps_gaussian(m, s, truth, mask=mask)),
        "coverage_90": float(metrics.coverage_gaussian(m, s, truth, 0.9, mask=mask)),
        "spread_skill": spread / rmse,
    }


def truth_grid(truth):
    """The :class:`bayesda.geo.grid.Grid` of a ``(lat, lon)`` DataArray."""
    from bayesda.geo.grid import Grid

    return Grid.from_xarray(truth)
