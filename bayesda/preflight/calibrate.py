"""Calibration that checks itself: withheld observations, and a refitted error model.

Every run can check its own spread against observations it did not use. The observations
are split at random into ``k`` folds; each fold is predicted from the others and scored.
The prediction is the linearised (Laplace) posterior predictive of :mod:`bayesda.preflight.qc`,
exact for a linear decoder and close for the shipped one::

    y ~ N(m, K),    K(b, a) = G G^T + b^2 H C H^T + a^2 diag(sigma^2),
    y_f | y_-f ~ N(m_f + K_f,-f K_-f^-1 (y_-f - m_-f),  K_ff - K_f,-f K_-f^-1 K_-f,f),

(``G`` the observed decoder's Jacobian at the analysis, ``C`` the representation error,
``sigma`` the stated observation errors). The check reports the 90% predictive coverage,
the CRPS (closed form for a Gaussian, Gneiting & Raftery 2007) and the mean squared
standardised residual of the withheld observations.

``calibrate="auto"`` fits **two** scales by the withheld observations' log predictive
density: ``b`` for the representation error (``C -> b^2 C``: the field's own small-scale
variance, which reaches every grid point) and ``a`` for the observation error
(``sigma -> a sigma``: the instruments and siting, which stay at the stations). They are
told apart by how the withheld residuals co-vary: ``C`` is spatially correlated (and
shared by observations in one grid cell), the observation error is not. Their
uncertainty is a bootstrap over the withheld observations (the pointwise densities are
resampled and the maximiser recomputed), reported as 90% intervals.

``calibrate="single"`` is the earlier one-scale fit (``sigma -> s sigma``, ``C -> s^2 C``).
Under a change of source it under-covers at unobserved grid points
(``analysis/source_shift/results/source_shift.md``): a field with more small-scale variance
than ``C``
allows (``b`` about 2) but stations as accurate as stated (``a`` about 1) is fitted by
the compromise ``s`` about 1.4, too small for grid points far from any station.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.optimize
from scipy import stats

from bayesda.inference.fields import repr_covariance_at_obs
from bayesda.obs.operator import bilinear_stencil
from bayesda.preflight.qc import linearise, observed_jacobian
from bayesda.runtime.threads import single_blas

__all__ = [
    "MIN_INDEPENDENT_FOLDS",
    "MIN_SITES",
    "MODES",
    "NEGLIGIBLE_SHARE",
    "CalibrationCheck",
    "HoldoutPieces",
    "bound_problem",
    "calibrate",
    "fit_scale",
    "fit_scales",
    "holdout_check",
    "holdout_folds",
    "holdout_pieces",
    "information_problem",
    "rescale_prior",
]

MODES = ("off", "auto", "single")
SCALE_GRID = np.exp(np.linspace(np.log(0.25), np.log(8.0), 141))
PAIR_GRID = np.exp(np.linspace(np.log(0.25), np.log(8.0), 41))
Z90 = stats.norm.ppf(0.95)
MIN_SITES = 8
"""Distinct observation sites below which the withheld-observation check is too little
information to fit scales on (``--calibrate auto``/``single`` refuse and keep the prior's).

Measured (``analysis/calibrate_enough/calibrate_enough.py``, 30 trials per cell, exact
Gaussian posterior of a synthetic GRF prior, 90% coverage of the truth at the grid nodes):
with the bound rule, the fit is never worse than the model's scales by more than one
standard error from 8 sites on, and helps where the errors are mis-stated (representation
error x2: +0.008 +- 0.005 at 8 sites, +0.017 +- 0.007 at 12; observation error x2: +0.021
+- 0.010 at 8, +0.033 +- 0.011 at 12); at 5 sites it helps nowhere and costs 0.008 +- 0.007
with the representation error x2; a fit always applied costs up to 0.046 +- 0.014 (8
sites, matched errors). See docs/guarantees.md."""
MIN_INDEPENDENT_FOLDS = 3
"""Folds whose sites appear in no other fold, below which the check is not independent."""
BOUND_STEPS = 1
"""A fitted scale within this many grid steps of the search grid's ends is on the bound."""


class CalibrationCheck(NamedTuple):
    """Scores of the withheld observations.

    Attributes:
      n: number of withheld observations scored (all of them, once each).
      folds: ``k``.
      coverage_90: fraction inside their 90% predictive interval.
      crps: mean CRPS, K.
      z2: mean squared standardised residual (1 when calibrated).
      scale: the representation-error scale ``b`` the predictions used.
      scale_obs: the observation-error scale ``a`` the predictions used.
    """

    n: int
    folds: int
    coverage_90: float
    crps: float
    z2: float
    scale: float
    scale_obs: float

    def to_dict(self) -> dict:
        return {
            k: (float(v) if isinstance(v, float | np.floating) else v)
            for k, v in self._asdict().items()
        }


class HoldoutPieces(NamedTuple):
    """What every prediction needs: ``y [n]``, the linearisation, ``HCH^T [n, n]``,
    ``sigma^2 [n]`` (see :func:`holdout_pieces`)."""

    y: np.ndarray
    lin: object
    rep: np.ndarray
    obs_var: np.ndarray


def holdout_pieces(prior, obs: pd.DataFrame) -> HoldoutPieces:
    """The observations, the prior linearised at their analysis (one Gauss-Newton step from
    ``z = 0``), the representation error's covariance and the stated error variances at them:
    what the withheld-observation fits (:func:`holdout_check`, :func:`fit_scales`,
    :func:`bound_problem`) predict each fold from.

    Args:
      prior: the :class:`bayesda.prior.generative.GenerativePrior`.
      obs: one analysis time's anomalies (lat, lon, value, sigma).
    """
    y = obs["value"].to_numpy(np.float64)
    sigma = obs["sigma"].to_numpy(np.float64)
    stencil = bilinear_stencil(prior.grid, obs["lat"].to_numpy(), obs["lon"].to_numpy())
    rep = repr_covariance_at_obs(stencil, prior.repr_error)
    jac_fn = observed_jacobian(prior)
    lin = linearise(prior, stencil, jac_fn=jac_fn)
    # one Gauss-Newton step: linearise at the (linearised) analysis of all observations
    R = rep + np.diag(sigma**2)
    z1 = lin.G.T @ np.linalg.solve(lin.G @ lin.G.T + R, y - lin.m)
    return HoldoutPieces(y, linearise(prior, stencil, z1, jac_fn), rep, sigma**2)


def holdout_folds(n: int, k: int, seed: int) -> np.ndarray:
    """The fold (``0 .. k-1``) of each of ``n`` observations in the withheld-observation fits.

    A seeded random permutation dealt round-robin into ``k`` folds (fewer, at least 2, when
    ``n < 2 k``), so every fold of :func:`holdout_check` and :func:`fit_scales` is the same
    for the same ``n``, ``k`` and ``seed``.
    """
    if n < 2 * k:
        k = max(2, n // 2)
    perm = np.random.default_rng([seed, 5]).permutation(n)
    fold = np.empty(n, int)
    fold[perm] = np.arange(n) % k
    return fold


def _predict(p: HoldoutPieces, fold, scale, scale_obs):
    """Pointwise ``(mean, sd, residual)`` of each observation from the folds it is not in."""
    GGt = p.lin.G @ p.lin.G.T
    K = GGt + scale**2 * p.rep + np.diag(scale_obs**2 * p.obs_var)
    r = p.y - p.lin.m
    mean, var = np.empty_like(r), np.empty_like(r)
    for f in np.unique(fold):
        te, tr = fold == f, fold != f
        cho = np.linalg.cholesky(K[np.ix_(tr, tr)])
        a = scipy.linalg.solve_triangular(cho, K[np.ix_(tr, te)], lower=True)  # [ntr, nte]
        b = scipy.linalg.solve_triangular(cho, r[tr], lower=True)
        mean[te] = a.T @ b
        var[te] = np.diag(K[np.ix_(te, te)]) - np.sum(a**2, 0)
    return mean, np.sqrt(np.maximum(var, 1e-12)), r


def _lpd(p: HoldoutPieces, fold, scale, scale_obs) -> np.ndarray:
    mu, sd, r = _predict(p, fold, scale, scale_obs)
    return stats.norm.logpdf(r, mu, sd)


def _crps_gaussian(x, mu, sd):
    z = (x - mu) / sd
    return sd * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi))


@single_blas
def holdout_check(
    prior,
    obs: pd.DataFrame,
    *,
    folds: int = 5,
    seed: int = 0,
    scale: float = 1.0,
    scale_obs: float | None = None,
    _pieces_cache=None,
) -> CalibrationCheck:
    """Predict each fold of withheld observations from the rest and score them.

    Args:
      prior: the :class:`bayesda.prior.generative.GenerativePrior`.
      obs: one analysis time's anomalies (lat, lon, value, sigma).
      folds: ``k`` of the random k-fold split.
      seed: seed of the split.
      scale: representation-error scale ``b`` (1: the model as shipped).
      scale_obs: observation-error scale ``a`` (default: ``scale``, one scale for both).
    """
    p = _pieces_cache or holdout_pieces(prior, obs)
    scale_obs = scale if scale_obs is None else scale_obs
    fold = holdout_folds(p.y.size, folds, seed)
    mu, sd, r = _predict(p, fold, scale, scale_obs)
    z = (r - mu) / sd
    return CalibrationCheck(
        n=int(p.y.size),
        folds=int(fold.max() + 1),
        coverage_90=float(np.mean(np.abs(z) <= Z90)),
        crps=float(np.mean(_crps_gaussian(r, mu, sd))),
        z2=float(np.mean(z**2)),
        scale=float(scale),
        scale_obs=float(scale_obs),
    )


def _boot_weights(n: int, n_boot: int, seed: int) -> np.ndarray:
    """``[n_boot, n]`` multiplicities of a nonparametric bootstrap of ``n`` points."""
    idx = np.random.default_rng([seed, 7]).integers(0, n, size=(n_boot, n))
    return np.stack([np.bincount(i, minlength=n) for i in idx]).astype(np.float64)


@single_blas
def fit_scale(
    prior,
    obs: pd.DataFrame,
    *,
    folds: int = 5,
    seed: int = 0,
    n_boot: int = 400,
    _pieces_cache=None,
) -> dict:
    """One scale ``s`` for both errors (``sigma -> s sigma``, ``C -> s^2 C``), maximising
    the withheld observations' log predictive density (``calibrate="single"``).

    Returns:
      ``{"scale", "scale_q05", "scale_q95", "log_density_gain"}``: the maximiser on a
      log-spaced grid in [0.25, 8], a bootstrap 90% interval over the withheld observations,
      and the gain in total log density over ``s = 1`` (nats).
    """
    p = _pieces_cache or holdout_pieces(prior, obs)
    fold = holdout_folds(p.y.size, folds, seed)
    lpd = np.stack([_lpd(p, fold, a, a) for a in SCALE_GRID])  # [grid, n]
    total = lpd.sum(1)
    best = int(np.argmax(total))
    boot = SCALE_GRID[np.argmax(lpd @ _boot_weights(p.y.size, n_boot, seed).T, axis=0)]
    one = int(np.argmin(np.abs(np.log(SCALE_GRID))))
    return {
        "scale": float(SCALE_GRID[best]),
        "scale_q05": float(np.quantile(boot, 0.05)),
        "scale_q95": float(np.quantile(boot, 0.95)),
        "log_density_gain": float(total[best] - total[one]),
    }


@single_blas
def fit_scales(
    prior,
    obs: pd.DataFrame,
    *,
    folds: int = 5,
    seed: int = 0,
    n_boot: int = 400,
    _pieces_cache=None,
) -> dict:
    """Representation- and observation-error scales ``(b, a)`` maximising the withheld
    observations' log predictive density (``calibrate="auto"``).

    The total log density is evaluated on a 41 x 41 log-spaced grid over [0.25, 8]^2
    (steps of 9%); the maximiser is refined from the best node by L-BFGS-B in
    ``(log b, log a)``. Each bootstrap resample of the withheld observations takes the
    best grid node of its own total.

    Returns:
      ``{"scale", "scale_q05", "scale_q95", "scale_obs", "scale_obs_q05",
      "scale_obs_q95", "log_density_gain"}``: ``scale`` is ``b`` (representation error),
      ``scale_obs`` is ``a`` (observation error), each with a bootstrap 90% interval, and
      the gain in total log density over ``b = a = 1`` (nats).
    """
    p = _pieces_cache or holdout_pieces(prior, obs)
    fold = holdout_folds(p.y.size, folds, seed)
    g = PAIR_GRID
    lpd = np.stack([_lpd(p, fold, b, a) for b in g for a in g])  # [grid^2, n], b major
    total = lpd.sum(1)
    best = int(np.argmax(total))

    def objective(log_ba):
        return -float(_lpd(p, fold, *np.exp(log_ba)).sum())

    lo, hi = np.log(g[0]), np.log(g[-1])
    start = np.log([g[best // g.size], g[best % g.size]])
    res = scipy.optimize.minimize(objective, start, method="L-BFGS-B", bounds=[(lo, hi)] * 2)
    log_b, log_a = res.x if -res.fun >= total[best] else start
    boot = np.argmax(lpd @ _boot_weights(p.y.size, n_boot, seed).T, axis=0)  # [n_boot]
    b_boot, a_boot = g[boot // g.size], g[boot % g.size]
    b, a = float(np.exp(log_b)), float(np.exp(log_a))
    # the intervals are resolved to the grid's step; they always hold the refined maximiser
    return {
        "scale": b,
        "scale_q05": min(b, float(np.quantile(b_boot, 0.05))),
        "scale_q95": max(b, float(np.quantile(b_boot, 0.95))),
        "scale_obs": a,
        "scale_obs_q05": min(a, float(np.quantile(a_boot, 0.05))),
        "scale_obs_q95": max(a, float(np.quantile(a_boot, 0.95))),
        "log_density_gain": float(
            -objective(np.array([log_b, log_a])) - _lpd(p, fold, 1.0, 1.0).sum()
        ),
    }


def _sites(obs: pd.DataFrame) -> np.ndarray:
    """``[n]`` an integer per observation naming its site (same place to about 10 m)."""
    key = np.round(obs["lat"].to_numpy(np.float64), 4) + 1j * np.round(
        obs["lon"].to_numpy(np.float64), 4
    )
    return np.unique(key, return_inverse=True)[1].reshape(-1)


def information_problem(
    obs: pd.DataFrame, *, folds: int = 5, seed: int = 0, min_sites: int | None = None
) -> str | None:
    """Why the withheld-observation check holds too little information to fit scales on,
    or None when it holds enough.

    Too little: fewer than :data:`MIN_SITES` distinct sites (observations at one place, to
    about 10 m, count once: one station repeated, or every station at one place, is one
    site); fewer than :data:`MIN_INDEPENDENT_FOLDS` folds whose sites appear in no other fold
    (a withheld observation predicted from a copy of itself); or values that are all the
    same (a constant, a placeholder, a unit error). ``min_sites`` overrides
    :data:`MIN_SITES`.
    """
    min_sites = MIN_SITES if min_sites is None else min_sites
    n = len(obs)
    site = _sites(obs) if n else np.zeros(0, int)
    n_sites = int(site.max() + 1) if n else 0
    if n_sites < max(min_sites, 1):
        return (
            f"{n} observation(s) at {n_sites} distinct site(s); the withheld-observation "
            f"check needs at least {min_sites} sites to fit error scales on"
        )
    values = obs["value"].to_numpy(np.float64)
    if np.ptp(values) <= 1e-9 * max(1.0, float(np.abs(values).max())):
        return f"all {n} observation values are the same ({values[0]:g} K)"
    fold = holdout_folds(n, folds, seed)
    independent = sum(
        not np.intersect1d(site[fold == f], site[fold != f]).size for f in np.unique(fold)
    )
    if independent < MIN_INDEPENDENT_FOLDS:
        return (
            f"only {independent} of {int(fold.max() + 1)} withheld folds share no site with "
            f"the others (repeated stations); the check needs {MIN_INDEPENDENT_FOLDS}"
        )
    return None


NEGLIGIBLE_SHARE = 0.05
"""A scale on the search grid's bound is harmless when its error term, at the bound and at
1, is below this share of the withheld observations' predictive variance."""


def bound_problem(fit: dict, grid: np.ndarray, p: HoldoutPieces, fold: np.ndarray) -> str | None:
    """Why a fit is refused because a scale sits on the search grid's bound, or None.

    A scale within :data:`BOUND_STEPS` steps of the grid's ends is not determined by the
    withheld observations (the optimum is at or beyond the bound). It is refused unless
    its error term is negligible either way: below :data:`NEGLIGIBLE_SHARE` of the
    withheld predictive variance (at scale 1) both at the bound and at 1, as for a
    representation error of 0.01 K that no data can see.
    """
    lo, hi = grid[BOUND_STEPS], grid[-1 - BOUND_STEPS]
    _, sd, _ = _predict(p, fold, 1.0, 1.0)
    pred_var = float(np.mean(sd**2))
    parts = (
        ("scale", "representation-error", float(np.mean(np.diag(p.rep)))),
        ("scale_obs", "observation-error", float(np.mean(p.obs_var))),
    )
    for key, what, var in parts:
        v = fit[key]
        if lo < v < hi:
            continue
        share = max(v, 1.0) ** 2 * var / pred_var
        if share < NEGLIGIBLE_SHARE:
            continue
        return (
            f"the fitted {what} scale x{v:.2f} is on the search grid's bound "
            f"[{grid[0]:.2f}, {grid[-1]:.0f}]: the withheld observations do not determine it"
        )
    return None


def rescale_prior(prior, scale: float):
    """A copy of ``prior`` whose representation error covariance is ``scale^2 C``."""
    re = prior.repr_error
    new = re._replace(
        factor=(re.factor * scale).astype(re.factor.dtype),
        diag_var=(re.diag_var * scale**2).astype(re.diag_var.dtype),
        spec=None,
    )
    return dataclasses.replace(
        prior, repr_error=new, name=f"{prior.name} (repr. error x{scale:.3g})"
    )


@single_blas
def calibrate(
    prior, obs: pd.DataFrame, mode: str = "off", *, folds: int = 5, seed: int = 0
) -> tuple:
    """Check calibration on withheld observations and, unless ``mode="off"``, refit.

    Args:
      prior: the prior.
      obs: one analysis time's anomalies.
      mode: ``"off"`` (check only), ``"auto"`` (check, fit the representation-error scale
        ``b`` and the observation-error scale ``a`` separately, rescale, check again) or
        ``"single"`` (one scale for both, the earlier fit).
      folds, seed: the k-fold split.

    A fit is refused, and the prior and table returned as they are, when the check holds
    too little information (:func:`information_problem`: too few distinct sites or
    independent folds, or identical values) or when a fitted scale lands on the search
    grid's bound; ``report["refused"]`` then says why (and ``report["insufficient"]`` says
    it in every mode, the check being no more than a hint then).

    Returns:
      ``(prior, obs, report)``: the prior and table to assimilate with (``C`` times ``b^2``,
      ``sigma`` times ``a``), and a JSON-able report with the check before (``check``)
      and, unless ``off`` or refused, the fit (``fit``: ``scale`` is ``b``, ``scale_obs`` is
      ``a``) and the check after (``check_calibrated``); a refused fit has ``refused`` (and,
      when the bound refused it, ``rejected_fit``).

    Raises:
      ValueError: for a ``mode`` not in :data:`MODES`.
    """
    if mode not in MODES:
        raise ValueError(f"calibrate={mode!r}; expected one of {MODES}")
    pieces = holdout_pieces(prior, obs)
    check = holdout_check(prior, obs, folds=folds, seed=seed, _pieces_cache=pieces)
    report = {"mode": mode, "check": check.to_dict()}
    problem = information_problem(obs, folds=folds, seed=seed)
    if problem is not None:
        report["insufficient"] = problem
    if mode == "off":
        return prior, obs, report
    if problem is not None:
        report["refused"] = problem
        return prior, obs, report
    if mode == "single":
        fit = fit_scale(prior, obs, folds=folds, seed=seed, _pieces_cache=pieces)
        fit.update(
            scale_obs=fit["scale"], scale_obs_q05=fit["scale_q05"], scale_obs_q95=fit["scale_q95"]
        )
    else:
        fit = fit_scales(prior, obs, folds=folds, seed=seed, _pieces_cache=pieces)
    b, a = fit["scale"], fit["scale_obs"]
    grid = SCALE_GRID if mode == "single" else PAIR_GRID
    bound = bound_problem(fit, grid, pieces, holdout_folds(pieces.y.size, folds, seed))
    if bound is not None:
        report["refused"] = bound
        report["rejected_fit"] = fit
        return prior, obs, report
    new_obs = obs.copy()
    new_obs["sigma"] = obs["sigma"].to_numpy(np.float64) * a
    new_obs.attrs = dict(obs.attrs)
    report["fit"] = fit
    report["check_calibrated"] = holdout_check(
        prior, obs, folds=folds, seed=seed, scale=b, scale_obs=a, _pieces_cache=pieces
    ).to_dict()
    return rescale_prior(prior, b), new_obs, report
