"""Synthetic truth: Gaussian random fields on the sphere and their exact posterior.

A :class:`GaussianRandomField` is a zero-mean Gaussian field on a grid with an isotropic
correlation in distance on the sphere and a land/sea variance pattern; it gives exactly
known priors for testing assimilation (with a linear-Gaussian prior, the posterior is known
in closed form: :func:`gaussian_posterior`).

Kernels and distances: :mod:`bayesda.geo.kernels` (re-exported here).
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.linalg
import xarray as xr

from bayesda.geo.grid import Grid
from bayesda.geo.kernels import (  # noqa: F401  (their home is bayesda.geo.kernels)
    DISTANCES,
    EARTH_RADIUS_KM,
    JITTER,
    KINDS,
    correlation,
    pairwise_distance_km,
)

__all__ = [
    "DISTANCES",
    "EARTH_RADIUS_KM",
    "GaussianRandomField",
    "JITTER",
    "KINDS",
    "correlation",
    "gaussian_posterior",
    "pairwise_distance_km",
]


class GaussianRandomField:
    """A zero-mean Gaussian random field on a grid, with more variance over land.

    The covariance between nodes ``i`` and ``j`` is ``s_i s_j rho(d_ij)`` with ``rho`` the
    correlation of :func:`correlation` and the SD map
    ``s = sd * (1 + (land_sea_ratio - 1) * land_fraction)``: ``sd`` over sea,
    ``land_sea_ratio * sd`` over land (:func:`bayesda.geo.landmask.land_fraction`; not
    computed when the ratio is 1). Immutable; ``cov`` and its Cholesky factor are computed
    on first use and cached.

    Args:
      grid: the grid.
      length_scale_km: correlation length scale, km, > 0.
      sd: standard deviation over sea, K, > 0.
      land_sea_ratio: SD over land divided by SD over sea, > 0.
      kind: ``"matern32"`` or ``"sqexp"``.
      distance: ``"chordal"`` (default, positive definite on the sphere) or
        ``"great_circle"``.
    """

    def __init__(
        self,
        grid: Grid,
        *,
        length_scale_km: float = 1000.0,
        sd: float = 1.0,
        land_sea_ratio: float = 2.0,
        kind: str = "matern32",
        distance: str = "chordal",
    ):
        if not length_scale_km > 0:
            raise ValueError(f"{length_scale_km=} must be > 0")
        if not sd > 0:
            raise ValueError(f"{sd=} must be > 0")
        if not land_sea_ratio > 0:
            raise ValueError(f"{land_sea_ratio=} must be > 0")
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r}; expected one of {KINDS}")
        if distance not in DISTANCES:
            raise ValueError(f"distance={distance!r}; expected one of {DISTANCES}")
        self._grid = grid
        self._params = {
            "length_scale_km": float(length_scale_km),
            "sd": float(sd),
            "land_sea_ratio": float(land_sea_ratio),
            "kind": kind,
            "distance": distance,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"GaussianRandomField(grid={self._grid.shape}, {args})"

    @property
    def grid(self) -> Grid:
        return self._grid

    @property
    def params(self) -> dict:
        """The constructor's parameters (``sd`` is the scalar sea SD)."""
        return dict(self._params)

    @property
    def length_scale_km(self) -> float:
        return self._params["length_scale_km"]

    @property
    def kind(self) -> str:
        return self._params["kind"]

    @property
    def land_sea_ratio(self) -> float:
        return self._params["land_sea_ratio"]

    @functools.cached_property
    def sd(self) -> np.ndarray:
        """``[nlat, nlon]`` standard deviation map of the field (without jitter), K."""
        sea, ratio = self._params["sd"], self._params["land_sea_ratio"]
        if ratio == 1.0:
            out = np.full(self.grid.shape, sea)
        else:
            from bayesda.geo.landmask import land_fraction

            out = sea * (1.0 + (ratio - 1.0) * land_fraction(self.grid))
        out.setflags(write=False)
        return out

    @property
    def npix(self) -> int:
        return self.grid.size

    @functools.cached_property
    def cov(self) -> np.ndarray:
        """``[npix, npix]`` float64 covariance over (lat, lon) raveled in C order, K^2."""
        s = self.sd.ravel()
        dist = pairwise_distance_km(self.grid, self._params["distance"])
        rho = correlation(dist, self.length_scale_km, self.kind)
        c = s[:, None] * s[None, :] * rho
        c[np.diag_indices_from(c)] += JITTER * float(np.max(s) ** 2)
        c.setflags(write=False)
        return c

    @functools.cached_property
    def cholesky(self) -> np.ndarray:
        """Lower Cholesky factor ``L`` of :attr:`cov` (``cov = L L^T``)."""
        return np.linalg.cholesky(self.cov)

    def sample(self, seed: int | np.random.Generator, n: int = 1) -> np.ndarray:
        """``[n, nlat, nlon]`` float64 independent draws, ``x = L e`` with ``e ~ N(0, I)``.

        Args:
          seed: an int seed or a :class:`numpy.random.Generator`.
          n: number of draws.
        """
        if int(n) != n or n < 1:
            raise ValueError(f"n={n!r} must be a positive integer")
        rng = np.random.default_rng(seed)
        e = rng.standard_normal((int(n), self.npix))
        return (e @ self.cholesky.T).reshape(int(n), *self.grid.shape)

    def sample_dataarray(
        self, seed: int | np.random.Generator, n: int = 1, *, time=None
    ) -> xr.DataArray:
        """Draws as a float32 DataArray: dims ``(sample, lat, lon)``, or ``(time, lat, lon)``
        when ``time`` (``[n]`` datetime64) is given. Values are anomalies in K."""
        x = self.sample(seed, n).astype(np.float32)
        if time is not None:
            time = np.atleast_1d(np.asarray(time, "datetime64[ns]"))
            if time.size != x.shape[0]:
                raise ValueError(f"{time.size} times for n={x.shape[0]} draws")
            lead = {"time": time}
        else:
            lead = {"sample": np.arange(x.shape[0])}
        dim = next(iter(lead))
        return xr.DataArray(
            x,
            dims=(dim, "lat", "lon"),
            coords={**lead, **self.grid.coords()},
            name="anomaly",
            attrs={
                "units": "K",
                "long_name": "synthetic temperature anomaly",
                **{f"grf_{k}": v for k, v in self._params.items()},
            },
        )


def gaussian_posterior(prior_mean, prior_cov, H, y, obs_var) -> tuple[np.ndarray, np.ndarray]:
    """Exact posterior of ``x ~ N(m, P)`` given ``y = H x + e``, ``e ~ N(0, diag(r))``.

    Kalman (covariance) form with ``S = H P H^T + R`` factorised by Cholesky:
    ``mean = m + P H^T S^-1 (y - H m)``, ``cov = P - P H^T S^-1 H P`` (symmetrised).

    Args:
      prior_mean: ``[npix]`` prior mean ``m``.
      prior_cov: ``[npix, npix]`` prior covariance ``P``.
      H: ``[n, npix]`` observation matrix (e.g. :func:`bayesda.obs.operator.as_matrix`).
      y: ``[n]`` observations.
      obs_var: ``[n]`` or scalar observation error variances ``r`` (> 0).

    Returns:
      ``(mean [npix], cov [npix, npix])`` float64.
    """
    m = np.asarray(prior_mean, np.float64)
    P = np.asarray(prior_cov, np.float64)
    H = np.atleast_2d(np.asarray(H, np.float64))
    y = np.atleast_1d(np.asarray(y, np.float64))
    npix, n = m.size, y.size
    if m.ndim != 1 or P.shape != (npix, npix):
        raise ValueError(f"prior_mean {m.shape} and prior_cov {P.shape} do not match")
    if H.shape != (n, npix):
        raise ValueError(f"H has shape {H.shape}, expected ({n}, {npix})")
    r = np.broadcast_to(np.asarray(obs_var, np.float64), (n,))
    if not np.all(np.isfinite(r) & (r > 0)):
        raise ValueError(f"obs_var must be finite and > 0, got min {r.min()}")
    PHt = P @ H.T
    S = H @ PHt + np.diag(r)
    factor = scipy.linalg.cho_factor(S, lower=True)
    gain_t = scipy.linalg.cho_solve(factor, PHt.T)  # S^-1 H P = K^T
    mean = m + gain_t.T @ (y - H @ m)
    cov = P - PHt @ gain_t
    return mean, 0.5 * (cov + cov.T)
