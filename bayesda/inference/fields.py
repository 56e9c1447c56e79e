"""Posterior fields, including the representation error, as xarray and netCDF outputs.

The field users see is ``x = g(z) + r``, not the decoder output ``g(z)`` alone: the truth
differs from anything the decoder can produce by the representation error
``r ~ N(0, C)``, ``C = F^T F + diag(d)`` (see :mod:`bayesda.prior.representation`). Given a
posterior draw of ``z``, ``r`` is still Gaussian and its conditional is exact:

    r | z, y ~ N( C H^T S^{-1} (y - H g(z)),  C - C H^T S^{-1} H C ),
    S = diag(sigma^2) + H C H^T       ([n_obs, n_obs]),

and we sample it without forming any ``[n_pix, n_pix]`` matrix by Matheron's rule
(perturbed-observation conditioning; Wilson et al. 2020, "Efficiently sampling functions
from Gaussian process posteriors"):

    r0 ~ N(0, C),   e0 ~ N(0, diag(sigma^2)),
    r  = r0 + C H^T S^{-1} (y - H g(z) - H r0 - e0).

``r0`` costs one draw of the low-rank factor and one of the diagonal, ``C H^T =
F^T (H F^T)^T + diag(d) H^T`` is sparse plus low rank, and ``S`` needs one Cholesky of an
``[n_obs, n_obs]`` matrix shared by all draws. ``S`` here is exact (it includes the small
off-diagonal part of ``H diag(d) H^T`` between observations that share a grid node, which
the sampler's likelihood drops; see :mod:`bayesda.inference.model`). Each field sample is
``g(z_s) + r_s``; with ``infer_sigma`` each draw uses its own ``sigma_scale``.
"""

from __future__ import annotations

import datetime as _dt
import os
import tempfile
from pathlib import Path

import numpy as np
import scipy.linalg
import scipy.sparse
import xarray as xr

from bayesda.obs.operator import Stencil, as_sparse, interpolate
from bayesda.prior.representation import RepresentationError
from bayesda.verify.metrics import QUANTILES

__all__ = [
    "DEFAULT_THRESHOLDS",
    "QUANTILES",
    "climatology_at",
    "condition_representation_error",
    "observe",
    "posterior_dataset",
    "repr_covariance_at_obs",
    "write_netcdf",
]

DEFAULT_THRESHOLDS = (-5.0, 0.0, 5.0)


def _sparse_h(stencil: Stencil, npix: int) -> scipy.sparse.csr_matrix:
    return as_sparse(stencil, npix)


def repr_covariance_at_obs(stencil: Stencil, repr_error: RepresentationError) -> np.ndarray:
    """``H C H^T`` exactly (:meth:`RepresentationError.covariance_at_obs`)."""
    return repr_error.covariance_at_obs(stencil)


def condition_representation_error(
    rng: np.random.Generator,
    residual: np.ndarray,
    obs_sigma: np.ndarray,
    stencil: Stencil,
    repr_error: RepresentationError,
) -> np.ndarray:
    """Draw ``r | z, y`` by Matheron's rule for each of ``s`` decoder draws.

    Args:
      rng: the random generator (one per call; fix its seed for reproducibility).
      residual: ``[s, n]`` observation residuals ``y - H g(z_s)``, K.
      obs_sigma: ``[n]`` or ``[s, n]`` observation error SD, K.
      stencil: the observations' bilinear stencil (``n`` points).
      repr_error: the representation error covariance ``C``.

    Returns:
      ``[s, nlat, nlon]`` samples of ``r`` from its exact Gaussian conditional, K.
    """
    residual = np.asarray(residual, np.float64)
    s, n = residual.shape
    if n != stencil.n:
        raise ValueError(f"residual has {n} observations but the stencil has {stencil.n}")
    shape = repr_error.diag_var.shape
    npix = int(np.prod(shape))
    F = np.asarray(repr_error.factor, np.float64).reshape(repr_error.rank, npix)  # [k, npix]
    d = np.asarray(repr_error.diag_var, np.float64).reshape(npix)
    H = _sparse_h(stencil, npix)
    A = np.asarray(H @ F.T)  # [n, k]
    sig2 = np.broadcast_to(np.square(np.asarray(obs_sigma, np.float64)), (s, n))

    # r0 ~ N(0, C) and its image at the observations.
    u = rng.standard_normal((s, repr_error.rank))
    r0 = u @ F + np.sqrt(d) * rng.standard_normal((s, npix))  # [s, npix]
    e0 = np.sqrt(sig2) * rng.standard_normal((s, n))
    innov = residual - np.asarray(H @ r0.T).T - e0  # [s, n]

    common = repr_covariance_at_obs(stencil, repr_error)
    if np.all(sig2 == sig2[:1]):
        cho = scipy.linalg.cho_factor(common + np.diag(sig2[0]), lower=True)
        w = scipy.linalg.cho_solve(cho, innov.T).T  # [s, n]
    else:
        w = np.stack([np.linalg.solve(common + np.diag(sig2[i]), innov[i]) for i in range(s)])
    # C H^T w = F^T (A^T w) + d * (H^T w)
    update = (w @ A) @ F + d * np.asarray(H.T @ w.T).T
    return (r0 + update).reshape(s, *shape).astype(np.float32)


def observe(field: np.ndarray, stencil: Stencil) -> np.ndarray:
    """``H field`` for ``[..., nlat, nlon]`` fields (NumPy)."""
    return np.asarray(interpolate(np.asarray(field), stencil))


def _attrs(units: str, long_name: str, **extra) -> dict:
    return {"units": units, "long_name": long_name, **extra}


def posterior_dataset(
    assimilation,
    prior,
    *,
    thresholds=DEFAULT_THRESHOLDS,
    climatology=None,
    time=None,
) -> xr.Dataset:
    """The posterior of the anomaly field as a CF-annotated :class:`xarray.Dataset`.

    Args:
      assimilation: a :class:`bayesda.inference.assimilate.Assimilation`.
      prior: the :class:`bayesda.prior.generative.GenerativePrior` it used.
      thresholds: anomaly thresholds (K) for the exceedance probabilities ``p_exceed``.
      climatology: object with ``.mean(time) -> (lat, lon) DataArray`` (K) to add absolute
        temperature ``tas``; default ``prior.climatology``.
      time: the analysis time (needed for ``tas``); default ``assimilation.time``.

    Returns:
      Dataset with ``anomaly (chain, draw, lat, lon)``, ``mean``, ``sd``, ``q05``, ``q50``,
      ``q95`` ``(lat, lon)``, ``p_exceed (threshold, lat, lon)``, and, with a climatology
      and a time, ``tas (chain, draw, lat, lon)`` and ``tas_mean (lat, lon)``.
    """
    from bayesda._version import __version__

    grid = prior.grid
    field = np.asarray(assimilation.field, np.float32)  # [chain, draw, lat, lon]
    nchain, ndraw = field.shape[:2]
    coords = {**grid.coords(), "chain": np.arange(nchain), "draw": np.arange(ndraw)}
    thresholds = np.asarray(thresholds, np.float32)
    flat = field.reshape(-1, *grid.shape)
    qs = np.quantile(flat, list(QUANTILES.values()), axis=0).astype(np.float32)
    data = {
        "anomaly": (
            ("chain", "draw", "lat", "lon"),
            field,
            _attrs("K", "posterior samples of the temperature anomaly"),
        ),
        "mean": (("lat", "lon"), flat.mean(0), _attrs("K", "posterior mean temperature anomaly")),
        "sd": (
            ("lat", "lon"),
            flat.std(0, ddof=1),
            _attrs("K", "posterior standard deviation of the temperature anomaly"),
        ),
        "p_exceed": (
            ("threshold", "lat", "lon"),
            (flat[None] > thresholds[:, None, None, None]).mean(1).astype(np.float32),
            _attrs("1", "posterior probability that the anomaly exceeds the threshold"),
        ),
    }
    for name, q in QUANTILES.items():
        i = list(QUANTILES).index(name)
        data[name] = (
            ("lat", "lon"),
            qs[i],
            _attrs("K", f"posterior {int(q * 100)}% quantile of the temperature anomaly"),
        )
    time = time if time is not None else getattr(assimilation, "time", None)
    climatology = climatology if climatology is not None else prior.climatology
    if climatology is not None and time is not None:
        clim = climatology_at(climatology, time, grid)
        data["tas"] = (
            ("chain", "draw", "lat", "lon"),
            field + clim,
            _attrs(
                "K",
                "posterior samples of near-surface air temperature",
                standard_name="air_temperature",
            ),
        )
        data["tas_mean"] = (
            ("lat", "lon"),
            flat.mean(0) + clim,
            _attrs(
                "K", "posterior mean near-surface air temperature", standard_name="air_temperature"
            ),
        )
    coords["threshold"] = xr.DataArray(
        thresholds, dims="threshold", attrs=_attrs("K", "anomaly threshold")
    )
    ds = xr.Dataset(
        {k: xr.DataArray(v[1], dims=v[0], attrs=v[2]) for k, v in data.items()}, coords=coords
    )
    settings = getattr(assimilation, "settings", {}) or {}
    ds.attrs = {
        "title": "bayesda posterior of near-surface temperature anomaly",
        "Conventions": "CF-1.10",
        "bayesda_version": __version__,
        "model_name": prior.name,
        "latent_dim": int(prior.latent_dim),
        "n_obs": int(assimilation.obs.n),
        "time": "" if time is None else str(np.datetime64(time, "s")),
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "field": "decoder output plus representation error conditioned on the observations "
        "(Matheron's rule)",
        **{f"sampler_{k}": _attr_value(v) for k, v in settings.items()},
    }
    return ds


def climatology_at(climatology, time, grid) -> np.ndarray:
    """``[nlat, nlon]`` climatological mean at ``time`` (float32, K), checked against ``grid``.

    Raises:
      ValueError: the climatology is on another grid.
    """
    clim = np.asarray(climatology.mean(np.datetime64(time)), np.float32)
    if clim.shape != tuple(grid.shape):
        raise ValueError(
            f"climatology grid {clim.shape} does not match the model grid {grid.shape}"
        )
    return clim


def _attr_value(v):
    """netCDF attributes take numbers and strings; booleans become 0/1, the rest str."""
    if isinstance(v, bool | np.bool_):
        return int(v)
    return v if isinstance(v, int | float | str) else str(v)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_netcdf(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` to ``path`` atomically: to a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        ds.to_netcdf(tmp, engine="netcdf4")
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def studentt_effective_sigma(residual, sigma, marginal_var, df: float) -> np.ndarray:
    """Per-draw effective observation SD for the Student-t likelihood, ``[s, n]``.

    A Student-t is a Gaussian scale mixture: ``y_i | z, lam_i ~ N(mu_i, V_i / lam_i)`` with
    ``lam_i ~ Gamma(df/2, df/2)``, ``V_i`` the marginal (observation plus representation)
    variance. Given a draw's residual ``e_i = y_i - mu_i`` the precision weight has the
    conditional mean ``E[lam_i | e_i] = (df + 1) / (df + e_i^2 / V_i)``. Conditioning the
    representation error on observation ``i`` with total variance ``V_i / E[lam_i]`` means an
    observation noise variance ``sigma_i^2 + V_i (1 / E[lam_i] - 1)`` (never below
    ``sigma_i^2``): an observation the t-likelihood discounts is discounted by the Matheron
    step too, instead of being put back as a one-pixel bullseye.

    Args:
      residual: ``[s, n]`` draws of ``y - H g(z)``, K.
      sigma: ``[n]`` or ``[s, n]`` observation error SD, K.
      marginal_var: ``[n]`` or ``[s, n]`` ``V_i``, K^2.
      df: degrees of freedom.
    """
    residual = np.asarray(residual, np.float64)
    V = np.asarray(marginal_var, np.float64)
    lam = (df + 1.0) / (df + residual**2 / V)
    extra = np.maximum(V * (1.0 / lam - 1.0), 0.0)
    return np.sqrt(np.square(np.asarray(sigma, np.float64)) + extra)
