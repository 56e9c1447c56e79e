"""Calibration that checks itself: withheld observations, and a rescaled error model.

Every run can check its own spread against observations it did not use. The observations
are split at random into ``k`` folds; each fold is predicted from the others and scored.
The prediction is the linearised (Laplace) posterior predictive of :mod:`bayesda.qc`,
exact for a linear decoder and close for the shipped one::

    y ~ N(m, K(a)),    K(a) = G G^T + a^2 R,    R = H C H^T + diag(sigma^2),
    y_f | y_-f ~ N(m_f + K_f,-f K_-f^-1 (y_-f - m_-f),  K_ff - K_f,-f K_-f^-1 K_-f,f),

(``G`` the observed decoder's Jacobian at the analysis, ``C`` the representation error).
The check reports the 90% predictive coverage, the CRPS (closed form for a Gaussian,
Gneiting & Raftery 2007) and the mean squared standardised residual of the withheld
observations.

``calibrate="auto"`` rescales observation *and* representation error by one factor ``a``
(``sigma -> a sigma``, ``C -> a^2 C``): the one that maximises the withheld observations'
log predictive density. Its uncertainty is a bootstrap over the withheld observations (the
pointwise densities are resampled and the maximiser recomputed), reported as a 90% interval.
``a`` is the answer to "is the error model learnt on the training source right for this
source?": about 1 when nothing has changed, above 1 when the new source holds more
small-scale variance than the decoder's representation error allows (a finer dataset,
station siting), below 1 when it is smoother.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from bayesda.operators import bilinear_stencil
from bayesda.posterior import repr_covariance_at_obs
from bayesda.qc import linearise, observed_jacobian

__all__ = ["CalibrationCheck", "holdout_check", "fit_scale", "rescale_prior", "calibrate"]

SCALE_GRID = np.exp(np.linspace(np.log(0.25), np.log(8.0), 141))
Z90 = stats.norm.ppf(0.95)


class CalibrationCheck(NamedTuple):
    """Scores of the withheld observations.

    Attributes:
      n: number of withheld observations scored (all of them, once each).
      folds: ``k``.
      coverage_90: fraction inside their 90% predictive interval.
      crps: mean CRPS, K.
      z2: mean squared standardised residual (1 when calibrated).
      scale: the error scale ``a`` the predictions used.
    """

    n: int
    folds: int
    coverage_90: float
    crps: float
    z2: float
    scale: float

    def to_dict(self) -> dict:
        return {
            k: (float(v) if isinstance(v, float | np.floating) else v)
            for k, v in self._asdict().items()
        }


def _pieces(prior, obs: pd.DataFrame):
    y = obs["value"].to_numpy(np.float64)
    sigma = obs["sigma"].to_numpy(np.float64)
    stencil = bilinear_stencil(prior.grid, obs["lat"].to_numpy(), obs["lon"].to_numpy())
    R = repr_covariance_at_obs(stencil, prior.repr_error) + np.diag(sigma**2)
    jac_fn = observed_jacobian(prior)
    lin = linearise(prior, stencil, jac_fn=jac_fn)
    # one Gauss-Newton step: linearise at the (linearised) analysis of all observations
    z1 = lin.G.T @ np.linalg.solve(lin.G @ lin.G.T + R, y - lin.m)
    return y, linearise(prior, stencil, z1, jac_fn), R


def _folds(n: int, k: int, seed: int) -> np.ndarray:
    if n < 2 * k:
        k = max(2, n // 2)
    perm = np.random.default_rng([seed, 5]).permutation(n)
    fold = np.empty(n, int)
    fold[perm] = np.arange(n) % k
    return fold


def _predict(y, lin, R, fold, scale):
    """Pointwise ``(mean, sd)`` of each observation from the folds it is not in."""
    K = lin.G @ lin.G.T + scale**2 * R
    r = y - lin.m
    mean, var = np.empty_like(y), np.empty_like(y)
    for f in np.unique(fold):
        te, tr = fold == f, fold != f
        cho = np.linalg.cholesky(K[np.ix_(tr, tr)])
        a = np.linalg.solve(cho, K[np.ix_(tr, te)])  # [ntr, nte]
        b = np.linalg.solve(cho, r[tr])
        mean[te] = a.T @ b
        var[te] = np.diag(K[np.ix_(te, te)]) - np.sum(a**2, 0)
    return mean, np.sqrt(np.maximum(var, 1e-12)), r


def _crps_gaussian(x, mu, sd):
    z = (x - mu) / sd
    return sd * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi))


def holdout_check(
    prior,
    obs: pd.DataFrame,
    *,
    folds: int = 5,
    seed: int = 0,
    scale: float = 1.0,
    _pieces_cache=None,
) -> CalibrationCheck:
    """Predict each fold of withheld observations from the rest and score them.

    Args:
      prior: the :class:`bayesda.prior.GenerativePrior`.
      obs: one analysis time's anomalies (lat, lon, value, sigma).
      folds: ``k`` of the random k-fold split.
      seed: seed of the split.
      scale: error scale ``a`` (1: the model as shipped).
    """
    y, lin, R = _pieces_cache or _pieces(prior, obs)
    fold = _folds(y.size, folds, seed)
    mu, sd, r = _predict(y, lin, R, fold, scale)
    z = (r - mu) / sd
    return CalibrationCheck(
        n=int(y.size),
        folds=int(fold.max() + 1),
        coverage_90=float(np.mean(np.abs(z) <= Z90)),
        crps=float(np.mean(_crps_gaussian(r, mu, sd))),
        z2=float(np.mean(z**2)),
        scale=float(scale),
    )


def fit_scale(
    prior,
    obs: pd.DataFrame,
    *,
    folds: int = 5,
    seed: int = 0,
    n_boot: int = 400,
    _pieces_cache=None,
) -> dict:
    """The error scale ``a`` maximising the withheld observations' log predictive density.

    Returns:
      ``{"scale", "scale_q05", "scale_q95", "log_density_gain"}``: the maximiser on a
      log-spaced grid in [0.25, 8], a bootstrap 90% interval over the withheld observations,
      and the gain in total log density over ``a = 1`` (nats).
    """
    y, lin, R = _pieces_cache or _pieces(prior, obs)
    fold = _folds(y.size, folds, seed)
    lpd = np.empty((SCALE_GRID.size, y.size))
    for j, a in enumerate(SCALE_GRID):
        mu, sd, r = _predict(y, lin, R, fold, a)
        lpd[j] = stats.norm.logpdf(r, mu, sd)
    total = lpd.sum(1)
    best = int(np.argmax(total))
    rng = np.random.default_rng([seed, 7])
    idx = rng.integers(0, y.size, size=(n_boot, y.size))
    boot = SCALE_GRID[np.argmax(lpd[:, idx].sum(-1), axis=0)]  # [n_boot]
    one = int(np.argmin(np.abs(np.log(SCALE_GRID))))
    return {
        "scale": float(SCALE_GRID[best]),
        "scale_q05": float(np.quantile(boot, 0.05)),
        "scale_q95": float(np.quantile(boot, 0.95)),
        "log_density_gain": float(total[best] - total[one]),
    }


def rescale_prior(prior, scale: float):
    """A copy of ``prior`` whose representation error covariance is ``scale^2 C``."""
    re = prior.repr_error
    new = re._replace(
        factor=(re.factor * scale).astype(re.factor.dtype),
        diag_var=(re.diag_var * scale**2).astype(re.diag_var.dtype),
        spec=None,
    )
    return dataclasses.replace(prior, repr_error=new, name=f"{prior.name} (errors x{scale:.3g})")


def calibrate(
    prior, obs: pd.DataFrame, mode: str = "off", *, folds: int = 5, seed: int = 0
) -> tuple:
    """Check calibration on withheld observations and, with ``mode="auto"``, rescale.

    Args:
      prior: the prior.
      obs: one analysis time's anomalies.
      mode: ``"off"`` (check only) or ``"auto"`` (check, fit ``a``, rescale, check again).
      folds, seed: the k-fold split.

    Returns:
      ``(prior, obs, report)``: the prior and table to assimilate with (rescaled when
      ``auto``: ``sigma`` times ``a``, ``C`` times ``a^2``), and a JSON-able report with the
      check before (``check``) and, for ``auto``, the fit (``fit``) and the check after
      (``check_calibrated``).
    """
    if mode not in ("off", "auto"):
        raise ValueError(f"calibrate={mode!r}; expected 'off' or 'auto'")
    pieces = _pieces(prior, obs)
    check = holdout_check(prior, obs, folds=folds, seed=seed, _pieces_cache=pieces)
    report = {"mode": mode, "check": check.to_dict()}
    if mode == "off":
        return prior, obs, report
    fit = fit_scale(prior, obs, folds=folds, seed=seed, _pieces_cache=pieces)
    a = fit["scale"]
    new_obs = obs.copy()
    new_obs["sigma"] = obs["sigma"].to_numpy(np.float64) * a
    new_obs.attrs = dict(obs.attrs)
    new_prior = rescale_prior(prior, a)
    report["fit"] = fit
    report["check_calibrated"] = holdout_check(
        prior, obs, folds=folds, seed=seed, scale=a, _pieces_cache=pieces
    ).to_dict()
    return new_prior, new_obs, report
