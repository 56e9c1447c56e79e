"""Quality control of observations: a background check and a gross-error model.

Both work in the *linearised* model around a latent point ``z0`` (the prior mean, then the
analysis), which for the shipped decoder (in effect probabilistic PCA) is close to exact::

    y = H g(z) + H r + e  ~=  m + G z + H r + e,    G = d(H g)/dz at z0,  m = H g(z0) - G z0
    y ~ N(m, K),    K = G G^T + R,    R = H C H^T + diag(sigma^2)      (the prior predictive)

* **Background check** (:func:`background_check`): an observation whose departure from the
  prior predictive mean exceeds ``k`` prior-predictive SDs is rejected before anything else
  (``k = 5`` by default: a Gaussian exceeds it once in 1.7 million draws).
* **Gross-error model** (:func:`gross_error_weights`): each observation is good with
  probability ``1 - p`` or wrong with probability ``p``; a wrong one has the same mean and a
  much broader error, ``N(0, v_i + B^2)`` with ``B = gross_sd``::

      p(y_i | x) = (1 - p) N(y_i; (Hx)_i, v_i) + p N(y_i; (Hx)_i, v_i + B^2).

  The posterior probability that observation ``i`` is wrong is evaluated at its
  *cross-validated* departure ``d_i = y_i - E[y_i | y_-i]`` and variance
  ``v_i = Var[y_i | y_-i]`` (leave-one-out in closed form from ``K^-1``), so an outlier
  cannot hide by pulling the analysis towards itself::

      P_i = p N(d_i; 0, v_i + B^2) / (p N(d_i; 0, v_i + B^2) + (1 - p) N(d_i; 0, v_i)).

  As in variational quality control (Andersson & Jarvinen 1999, QJRMS 125, 697-722), the
  mixture enters the Gaussian likelihood as per-observation weights ``w_i = 1 - P_i``:
  the error variance of observation ``i`` becomes ``sigma_i^2 / w_i``; an observation
  flagged as wrong (``P_i > 0.5``) is rejected (``w_i = 1e-4``). Weights and
  probabilities are iterated to a fixed point (an EM algorithm for the mixture), and the
  linearisation point moves to the weighted analysis (Gauss-Newton). The sampler, the
  Laplace approximation *and* the Matheron conditioning of the representation error then
  all use the same effective ``sigma``, so a rejected observation cannot come back through
  the representation error. What this does not do: sample the indicators jointly with
  ``z`` (the weights are fixed at the EM fixed point, an empirical-Bayes choice).

:func:`quality_control` runs both on a table and returns it with the columns
``sigma_stated`` (the error the user gave), ``sigma`` (the effective one), ``p_gross``,
``departure``, ``departure_sd`` and ``qc`` (``"ok"``, ``"background"`` or ``"gross"``).
:func:`studentt_effective_sigma` (in :mod:`bayesda.inference.fields`, re-exported here) is the same
idea for the Student-t likelihood, draw by draw.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from bayesda.inference.fields import repr_covariance_at_obs, studentt_effective_sigma
from bayesda.inference.model import pad_length
from bayesda.obs.operator import Stencil, bilinear_stencil
from bayesda.runtime.threads import single_blas

__all__ = [
    "QCSettings",
    "Linearisation",
    "linearise",
    "observed_jacobian",
    "background_check",
    "flagged_records",
    "gross_error_weights",
    "quality_control",
    "studentt_effective_sigma",
]

MIN_WEIGHT = 1e-4
"""Smallest weight: a rejected observation's SD is inflated 100-fold (e.g. 0.5 K -> 50 K)."""


class QCSettings(NamedTuple):
    """Quality-control settings.

    Attributes:
      background_k: reject departures from the prior predictive beyond this many SDs.
      p_gross: prior probability that an observation is wrong.
      gross_sd: SD ``B`` of a wrong observation's extra error, K.
      flag_above: an observation is flagged when ``P(wrong) > flag_above``.
      iterations: EM / Gauss-Newton iterations.
    """

    background_k: float = 5.0
    p_gross: float = 0.02
    gross_sd: float = 10.0
    flag_above: float = 0.5
    iterations: int = 8


class Linearisation(NamedTuple):
    """``H g(z) ~= m + G z`` near ``z0``: ``m [n]``, ``G [n, d]`` (K)."""

    m: np.ndarray
    G: np.ndarray


def observed_jacobian(prior):
    """A jitted ``(z, idx, weight) -> (H g(z) [n], d(H g)/dz [n, d])`` for ``prior``.

    One per decoder (kept while the decoder lives, like the sampler's compiled programs in
    :mod:`bayesda.inference.assimilate`), so priors sharing a decoder
    (:func:`bayesda.preflight.calibrate.
    rescale_prior`) share it; the stencil is an argument, so each padded number of
    observations compiles once.
    """
    return _jacobian_for(prior.decode)


@functools.lru_cache(maxsize=8)
def _jacobian_for(decode):
    def h_of_g(z, idx, weight):
        return (decode(z).reshape(-1)[idx] * weight).sum(-1)

    def value_and_jac(z, idx, weight):
        # reverse mode: the decoder has a custom VJP (no forward mode)
        return h_of_g(z, idx, weight), jax.jacrev(h_of_g)(z, idx, weight)

    return jax.jit(value_and_jac)


def linearise(prior, stencil: Stencil, z0=None, jac_fn=None) -> Linearisation:
    """Linearise the observed decoder ``z -> H g(z)`` at ``z0`` (default 0, the prior mean).

    ``jac_fn`` is :func:`observed_jacobian` of the prior (built here when not given).
    """
    jac_fn = jac_fn or observed_jacobian(prior)
    z0 = np.zeros(prior.latent_dim) if z0 is None else np.asarray(z0, np.float64)
    n = stencil.n
    pad = pad_length(n) - n  # padded like the sampler: one compile per padded length
    idx = np.pad(np.asarray(stencil.idx), ((0, pad), (0, 0)))
    weight = np.pad(np.asarray(stencil.weight, np.float32), ((0, pad), (0, 0)))
    value, G = jac_fn(jnp.asarray(z0, jnp.float32), jnp.asarray(idx), jnp.asarray(weight))
    value, G = np.asarray(value, np.float64)[:n], np.asarray(G, np.float64)[:n]
    return Linearisation(np.asarray(value, np.float64) - G @ z0, G)


def background_check(y, lin: Linearisation, R: np.ndarray, k: float) -> tuple:
    """``(reject [n] bool, departure [n], sd [n])`` against the prior predictive ``N(m, K)``."""
    dep = np.asarray(y, np.float64) - lin.m
    sd = np.sqrt(np.sum(lin.G**2, -1) + np.diag(R))
    return np.abs(dep) > k * sd, dep, sd


def _loo(y, lin: Linearisation, R: np.ndarray, sigma2_extra: np.ndarray):
    """Leave-one-out departures and variances under ``K = G G^T + R + diag(extra)``."""
    K = lin.G @ lin.G.T + R + np.diag(sigma2_extra)
    Kinv = np.linalg.inv(K)
    dep = Kinv @ (np.asarray(y, np.float64) - lin.m) / np.diag(Kinv)
    var = 1.0 / np.diag(Kinv) - sigma2_extra  # the good component: no inflation of obs i
    return dep, np.maximum(var, 1e-12), K


def _norm_logpdf(x, var):
    return -0.5 * (np.log(2 * np.pi * var) + x**2 / var)


def gross_error_weights(
    y,
    lin: Linearisation,
    R: np.ndarray,
    sigma: np.ndarray,
    settings: QCSettings | None = None,
    fixed=None,
) -> dict:
    """Posterior gross-error probabilities and weights at the EM fixed point.

    Args:
      y: ``[n]`` observations, K.
      lin: the linearisation (its point is not updated here).
      R: ``[n, n]`` ``H C H^T + diag(sigma^2)``.
      sigma: ``[n]`` stated observation error SD, K.
      settings: :class:`QCSettings` (default: its defaults).
      fixed: ``[n]`` bool, observations already rejected (weight ``MIN_WEIGHT``).

    Returns:
      ``{"p_gross", "weight", "departure", "departure_sd"}``, each ``[n]``.
    """
    settings = settings or QCSettings()
    sigma2 = np.square(np.asarray(sigma, np.float64))
    n = sigma2.size
    fixed = np.zeros(n, bool) if fixed is None else np.asarray(fixed, bool)
    w = np.where(fixed, MIN_WEIGHT, 1.0)
    p = settings.p_gross
    for _ in range(max(1, settings.iterations)):
        dep, var, _ = _loo(y, lin, R, sigma2 * (1.0 / w - 1.0))
        log_good = np.log1p(-p) + _norm_logpdf(dep, var)
        log_bad = np.log(p) + _norm_logpdf(dep, var + settings.gross_sd**2)
        prob = 1.0 / (1.0 + np.exp(log_good - log_bad))
        prob = np.where(fixed, 1.0, prob)
        w_new = np.maximum(1.0 - prob, MIN_WEIGHT)
        if np.allclose(w_new, w, rtol=1e-4, atol=1e-6):
            w = w_new
            break
        w = w_new
    return {"p_gross": prob, "weight": w, "departure": dep, "departure_sd": np.sqrt(var)}


def _weighted_analysis(y, lin: Linearisation, R: np.ndarray, extra: np.ndarray) -> np.ndarray:
    """Posterior mean of ``z`` in the linearised model with inflated errors."""
    K = lin.G @ lin.G.T + R + np.diag(extra)
    return lin.G.T @ np.linalg.solve(K, np.asarray(y, np.float64) - lin.m)


@single_blas
def flagged_records(df: pd.DataFrame, columns) -> list[dict]:
    """The reports QC did not pass (``qc != "ok"``), with those of ``columns`` the table has:
    the ``flagged`` list of a QC report."""
    cols = [c for c in columns if c in df.columns]
    return df.loc[df["qc"] != "ok", cols].to_dict(orient="records")


def quality_control(
    prior, obs: pd.DataFrame, settings: QCSettings | None = None, *, outer: int = 3
) -> tuple[pd.DataFrame, dict]:
    """Background check, then the gross-error model, on one analysis time's observations.

    Args:
      prior: the :class:`bayesda.prior.generative.GenerativePrior`.
      obs: anomalies (lat, lon, value, sigma, ...) of one analysis time.
      settings: :class:`QCSettings`.
      outer: Gauss-Newton re-linearisations at the weighted analysis.

    Returns:
      ``(table, report)``: the table with ``sigma`` replaced by the effective SD and the QC
      columns of the module docstring; ``report`` is JSON-able: settings, counts and the
      flagged observations.
    """
    settings = settings or QCSettings()
    df = obs.reset_index(drop=True).copy()
    y = df["value"].to_numpy(np.float64)
    sigma = df["sigma"].to_numpy(np.float64)
    stencil = bilinear_stencil(prior.grid, df["lat"].to_numpy(), df["lon"].to_numpy())
    R = repr_covariance_at_obs(stencil, prior.repr_error) + np.diag(sigma**2)
    jac_fn = observed_jacobian(prior)
    lin = linearise(prior, stencil, jac_fn=jac_fn)
    reject, bdep, bsd = background_check(y, lin, R, settings.background_k)
    z0 = None
    for _ in range(max(1, outer)):
        res = gross_error_weights(y, lin, R, sigma, settings, fixed=reject)
        z0 = _weighted_analysis(y, lin, R, sigma**2 * (1.0 / res["weight"] - 1.0))
        lin = linearise(prior, stencil, z0, jac_fn)
    res = gross_error_weights(y, lin, R, sigma, settings, fixed=reject)
    flagged = res["p_gross"] > settings.flag_above
    # A flagged observation is rejected outright: with P(wrong) = 0.7 the soft weight 0.3
    # would still let a 15 K error pull the field by several K (measured, gross_error.md).
    weight = np.where(flagged | reject, MIN_WEIGHT, res["weight"])
    df["sigma_stated"] = sigma
    df["sigma"] = sigma / np.sqrt(weight)
    df["p_gross"] = res["p_gross"]
    df["departure"] = res["departure"]
    df["departure_sd"] = res["departure_sd"]
    df["qc"] = np.where(reject, "background", np.where(flagged, "gross", "ok"))
    cols = (
        "station_id",
        "lat",
        "lon",
        "value",
        "sigma_stated",
        "p_gross",
        "departure",
        "departure_sd",
        "qc",
    )
    report = {
        "settings": settings._asdict(),
        "n_obs": len(df),
        "n_background": int(reject.sum()),
        "n_gross": int((flagged & ~reject).sum()),
        "flagged": flagged_records(df, cols),
        "background_departure_sd_max": float(np.max(np.abs(bdep) / bsd)),
    }
    df.attrs = dict(obs.attrs)
    return df, report
