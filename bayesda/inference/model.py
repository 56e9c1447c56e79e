"""The NumPyro assimilation model: latent ``z``, frozen decoder, point observations.

Generative story (all temperatures are anomalies in K)::

    z   ~ N(0, I_d)                                   plate "latent"
    x   = g(z) + r,          r ~ N(0, C)              C = F^T F + diag(d)  (representation error)
    y_i = (H x)_i + e_i,     e_i ~ N(0, sigma_i^2)    plate "obs"

``r`` is integrated out of the likelihood, which gives

    y | z ~ N(H g(z), diag(sigma^2) + H C H^T),   H C H^T ~= A A^T + diag(D),

which the model evaluates in one of two ways. When ``C`` has a correlated part, the caller
passes ``scale_tril``, the Cholesky factor of the exact ``diag(sigma^2) + H C H^T``
computed once per analysis time, and the density costs ``O(n^2)`` per evaluation whatever
the rank of ``C`` (the shipped NCEP model: rank 400). Otherwise (per-pixel ``C``, or with
``infer_sigma``, whose scale changes the covariance) it is
``A A^T + diag(D)`` with ``(A, D) = RepresentationError.at_obs(stencil)`` (low rank plus
diagonal, ``O(n rank^2)``; see :class:`bayesda.prior.representation.RepresentationError` for the
small part of ``H diag(d) H^T`` that ``D`` drops). A correlated part says the decoder's
error is shared by neighbours, so they do not count as independent evidence. Which
structure is honest is measured, not assumed
(``analysis/repr_error/results/repr_error_structure.md``,
validation blocks): an empirical rank-16 ``F`` from a few hundred residual fields made 90%
intervals too narrow (0.74-0.76 at 200 observations); a stationary Matern-3/2 correlation
fitted to the residuals' correlogram kept them at 0.85-0.89 and cut the CRPS, so the model
ships with it.

With ``ModelOptions(errors="learned")`` (the default) the observation errors are learnt
from the data instead (:mod:`bayesda.inference.errors`): a site representativeness SD
``tau`` (summed over a grid), the scale ``lam`` of ``C`` and a uniform offset ``b``::

    lam ~ LogNormal(0, repr_scale_sd),  b ~ N(0, offset_sd^2),  tau ~ HalfNormal(site_sd_scale)
    ybar_c | z, lam, b, tau ~ N(H_c (g(z) + b), D_tau + lam^2 H_c C H_c^T)   (cell means)

Options of the stated-error model (``errors="stated"``):

* ``infer_sigma=True``: a common scale ``s`` multiplies every ``sigma_i``, with
  ``s ~ LogNormal(0, 0.5)``: median 1 (the stated errors are the best guess), 90% prior
  mass in [0.44, 2.3], positive and scale-free, so the data can inflate or shrink the
  stated errors by about a factor of two but not explain away the signal.
* ``likelihood="studentt"``: independent Student-t with ``df`` degrees of freedom, scale
  ``sqrt(s^2 sigma_i^2 + var_repr_i)`` (the marginal representation variance). Robust to
  gross errors; it *drops* the representation error's correlation between observations.
* Padding: all observation arrays may be padded to a fixed length with ``mask=False`` on
  the padding, so that a new number of observations does not trigger a new XLA compile
  (see :func:`pad_length`). Padded entries contribute exactly zero to the log density.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from bayesda.inference.errors import learned_loglik
from bayesda.obs.operator import apply_stencil
from bayesda.settings import LIKELIHOODS, ModelOptions

__all__ = [
    "LIKELIHOODS",
    "MIN_PAD",
    "SIGMA_SCALE_PRIOR",
    "ModelObs",
    "assimilation_model",
    "observed_mean",
    "pad_length",
]

SIGMA_SCALE_PRIOR = (0.0, 0.5)  # LogNormal(loc, scale) of the common obs-error scale
MIN_PAD = 32


def pad_length(n: int, minimum: int = MIN_PAD) -> int:
    """The padded number of observations: the next power of two, at least ``minimum``."""
    if n < 1:
        raise ValueError(f"need at least one observation, got {n=}")
    return max(minimum, 1 << (int(n) - 1).bit_length())


def observed_mean(field, obs_idx, obs_weight):
    """``H field``: ``[..., nlat, nlon]`` -> ``[..., n]`` (``operators.apply_stencil``)."""
    return apply_stencil(field, obs_idx, obs_weight)


class ModelObs(NamedTuple):
    """One time's observations as the model takes them, padded to ``m`` rows.

    Rows are stations with stated errors, or grid cells (the means of the stations in each)
    with learned errors. Built by :func:`bayesda.inference.prepare.prepare_obs`; a pytree,
    so a batch of times is the same type with a leading axis.

    Attributes:
      idx: ``[m, w]`` int32 flat grid indices of each row's stencil (``w`` = 4 for a
        station's bilinear row, :data:`bayesda.inference.errors.STENCIL_WIDTH` for a cell).
      weight: ``[m, w]`` stencil weights (0 on padding).
      y: ``[m]`` observed anomalies (cell means), K (0 on padding).
      sigma: ``[m]`` stated error SD of each row, K (1 on padding).
      mask: ``[m]`` bool, False on padding.
      repr_factor: ``[m, rank]`` low-rank factor ``A`` of ``H C H^T`` at the rows, K.
      repr_diag: ``[m]`` diagonal ``D`` of ``H C H^T`` at the rows, K^2.
      scale_tril: ``[m, m]`` lower Cholesky factor of ``diag(sigma^2) + H C H^T``
        (identity on padding), or None (then ``repr_factor``/``repr_diag`` give ``C``).
      errors: the learned-error constants (:class:`bayesda.inference.errors.LearnedErrors`),
        or None for stated errors.
    """

    idx: Any
    weight: Any
    y: Any
    sigma: Any
    mask: Any
    repr_factor: Any
    repr_diag: Any
    scale_tril: Any = None
    errors: Any = None


def assimilation_model(
    decode: Callable,
    latent_dim: int,
    obs: ModelObs,
    *,
    options: ModelOptions | None = None,
    observed: bool = True,
    store_field: bool = False,
):
    """NumPyro model of point observations of a decoded anomaly field.

    Args:
      decode: pure ``z [latent_dim] -> field [nlat, nlon]`` (K), parameters bound.
      latent_dim: ``d``, the dimension of ``z``.
      obs: the time's :class:`ModelObs`.
      options: the :class:`bayesda.settings.ModelOptions` (error model, likelihood, priors;
        default ``ModelOptions()``: learned errors).
      observed: condition on ``obs.y`` (False: the prior predictive of ``y``; stated errors).
      store_field: record the decoded field as the deterministic site ``field``.

    Sample sites: ``z`` ``[d]``; with learned errors ``repr_scale`` ``[]`` and ``offset``
    ``[]`` (when ``offset_sd > 0``) and the factor ``y``; with stated errors optionally
    ``sigma_scale`` ``[]`` and the observed ``y`` ``[m]``.
    """
    options = options or ModelOptions()
    with numpyro.plate("latent", latent_dim):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
    field = decode(z)
    if store_field:
        field = numpyro.deterministic("field", field)
    mu = observed_mean(field, obs.idx, obs.weight)
    if options.errors == "learned":
        _learned_likelihood(mu, obs, options)
    else:
        _stated_likelihood(mu, obs, options, observed)


def _learned_likelihood(mu, obs: ModelObs, options: ModelOptions) -> None:
    lam = numpyro.sample("repr_scale", dist.LogNormal(0.0, options.repr_scale_sd))
    if options.offset_sd > 0:
        mu = mu + numpyro.sample("offset", dist.Normal(0.0, options.offset_sd))
    residual = jnp.where(obs.mask, obs.y - mu, 0.0)
    e = obs.errors
    per_site = learned_loglik(residual, lam, e, obs.mask.sum())
    numpyro.factor("y", jax.nn.logsumexp(per_site + e.log_prior))


def _stated_likelihood(mu, obs: ModelObs, options: ModelOptions, observed: bool) -> None:
    likelihood = options.likelihood
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"{likelihood=} is not one of {LIKELIHOODS}")
    n = obs.idx.shape[0]
    mask = obs.mask
    y = obs.y if observed else None
    sigma = obs.sigma
    if options.infer_sigma:
        scale = numpyro.sample("sigma_scale", dist.LogNormal(*SIGMA_SCALE_PRIOR))
        sigma = sigma * scale
    repr_factor, repr_diag = obs.repr_factor, obs.repr_diag

    if likelihood == "studentt":
        marginal = jnp.sqrt(sigma**2 + repr_diag + jnp.sum(repr_factor**2, axis=-1))
        with numpyro.plate("obs", n), numpyro.handlers.mask(mask=mask):
            numpyro.sample("y", dist.StudentT(options.df, mu, marginal), obs=y)
        return

    maskf = mask.astype(mu.dtype)
    # Padded entries become independent standard normals observed at 0, which adds the
    # constant -log(2 pi)/2 each; the "padding" factor removes it so the density is exact.
    y_obs = None if y is None else jnp.where(mask, y, 0.0)
    if obs.scale_tril is not None:
        if options.infer_sigma:
            raise ValueError("scale_tril fixes the observation errors; it excludes infer_sigma")
        numpyro.factor("padding", 0.5 * math.log(2 * math.pi) * (n - maskf.sum()))
        numpyro.sample(
            "y", dist.MultivariateNormal(mu * maskf, scale_tril=obs.scale_tril), obs=y_obs
        )
        return

    if repr_factor.shape[-1] == 0:
        # No correlated part: the covariance is diagonal and observations are independent.
        with numpyro.plate("obs", n), numpyro.handlers.mask(mask=mask):
            numpyro.sample("y", dist.Normal(mu, jnp.sqrt(sigma**2 + repr_diag)), obs=y)
        return

    loc = mu * maskf
    cov_factor = repr_factor * maskf[:, None]
    cov_diag = jnp.where(mask, sigma**2 + repr_diag, 1.0)
    numpyro.factor("padding", 0.5 * math.log(2 * math.pi) * (n - maskf.sum()))
    numpyro.sample("y", dist.LowRankMultivariateNormal(loc, cov_factor, cov_diag), obs=y_obs)
