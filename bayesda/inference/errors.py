"""Observation errors the model learns from the data: site error, representation scale, offset.

Real stations see what a 2.5-degree cell cannot (a valley, a coast, a city), their stated
errors are rarely right, and a network or a period can sit off the climatology the prior
learnt. With ``ModelOptions(errors="learned")`` (the default) the model says so and learns
each from the observations, carrying its uncertainty into the field::

    z  ~ N(0, I_d)                          latent
    lam ~ LogNormal(0, repr_scale_sd)       scale of the representation error C
    b  ~ N(0, offset_sd^2)                  large-scale (uniform) offset, K
    tau ~ HalfNormal(site_sd_scale)          site representativeness SD, K (on a grid)
    x  = g(z) + b + r,   r ~ N(0, lam^2 C)
    y_i = (H x)_i + e_i, e_i ~ N(0, sigma_i^2 + tau^2)

Cost. Stations are grouped into the grid cells they lie in (nearest node). A cell's mean
``ybar_c`` of ``n_c`` reports has error variance ``(mean sigma^2 + tau^2) / n_c``, its
operator is the mean of its stations' bilinear rows (exact: ``H`` is linear), and the
spread of the reports within a cell (:attr:`LearnedErrors.scatter`, optional) is direct
evidence about ``tau``. The likelihood of the ``m`` cell means integrates ``r`` out:
``ybar ~ N(H_c (g(z) + b), D_tau + lam^2 M)``, ``M = H_c C H_c^T``. ``tau`` lives on a
small grid (:data:`SITE_SD_GRID`) and is summed out; for each grid value the generalised
eigenproblem of ``(M, D_tau)`` is solved once per analysis time (:func:`learned_errors`),
after which every evaluation of the density, for any ``lam``, costs ``O(K m^2)`` and no
factorisation: ``m`` is at most the number of grid cells, whatever the number of stations.
(Factoring ``S`` in every leapfrog step cost 28 ms at ``m = 400``; the eigenbasis 0.2 ms.)

After sampling, :func:`site_sd_weights` gives each draw's conditional distribution over the
``tau`` grid, and :func:`condition_learned` draws ``r`` by Matheron's rule for a given
``(lam, tau)``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import special, stats

from bayesda.obs.operator import Stencil, as_sparse, bilinear_stencil, nearest_index

__all__ = [
    "SITE_SD_GRID",
    "STENCIL_WIDTH",
    "Cells",
    "LearnedErrors",
    "cells_of",
    "condition_learned",
    "learned_errors",
    "kept_site_values",
    "learned_loglik",
    "prune_site_grid",
    "refined_site_grid",
    "site_sd_prior",
    "site_sd_weights",
]

SITE_SD_GRID = np.array(
    [0.0, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0, 1.25, 1.5, 1.8, 2.2, 2.7, 3.3, 4.2, 6.0]
)
"""The values of the site representativeness SD ``tau`` (K) summed over.

From 0 (gridded pseudo-observations: the station is the cell) to 6 K (a mountain station in
a 2.5-degree cell); steps of 20-25% in 0.6-3.3 K, where real networks lie (1.1-1.5 K for
METAR stations against the NCEP model), so that the likelihood, which changes with
``log tau``, is resolved evenly. Values whose conditional weight is negligible at the MAP
are dropped before sampling (:func:`prune_site_grid`)."""

PRUNE_NATS = 25.0
"""Grid values of ``tau`` more than this many nats below the best, at the MAP, are dropped:
a relative weight under ``exp(-25) ~ 1e-11``."""

STENCIL_WIDTH = 9
"""Nodes of a cell mean's stencil: the bilinear rows of stations nearest one node touch at
most the 3 x 3 nodes around it."""


def site_sd_prior(scale: float, grid: np.ndarray = SITE_SD_GRID) -> np.ndarray:
    """Log prior weights of the ``tau`` grid: the HalfNormal(``scale``) mass of each point's
    interval (between midpoints; the last one takes the tail).

    Args:
      scale: the HalfNormal scale, K (> 0).
      grid: ascending grid values, K, starting at 0.

    Returns:
      ``[K]`` log weights summing (in probability) to 1.
    """
    if not scale > 0:
        raise ValueError(f"site_sd_scale must be > 0, got {scale}")
    edges = np.concatenate([[0.0], 0.5 * (grid[1:] + grid[:-1]), [np.inf]])
    mass = np.diff(stats.halfnorm(scale=scale).cdf(edges))
    return np.log(np.maximum(mass, 1e-300))


class Cells(NamedTuple):
    """Observations grouped by grid cell (nearest node), on the host.

    Attributes:
      frame: one row per cell: ``lat``, ``lon`` (mean of its stations), ``value`` (mean, K),
        ``sigma2`` (mean stated error variance, K^2), ``count``, ``scatter`` (sum of squared
        deviations from the mean, K^2), ``cell`` (flat node index).
      stencil: ``[m, STENCIL_WIDTH]`` stencil of each cell mean (the mean of its stations'
        bilinear rows; unused entries have weight 0).
      member: ``[n]`` the cell (row of ``frame``) of each station.
    """

    frame: pd.DataFrame
    stencil: Stencil
    member: np.ndarray


def cells_of(grid, obs: pd.DataFrame) -> Cells:
    """Group observations (anomalies with ``lat``, ``lon``, ``value``, ``sigma``) by cell."""
    lat = obs["lat"].to_numpy(np.float64)
    lon = obs["lon"].to_numpy(np.float64)
    value = obs["value"].to_numpy(np.float64)
    sigma2 = np.square(obs["sigma"].to_numpy(np.float64))
    cell = nearest_index(grid, lat, lon)
    keys, member, count = np.unique(cell, return_inverse=True, return_counts=True)
    m = keys.size

    def cell_mean(x):
        return np.bincount(member, weights=x, minlength=m) / count

    mean = cell_mean(value)
    st = bilinear_stencil(grid, lat, lon)
    # merge each cell's stations' rows: weight per (cell, node), averaged over its stations
    rows = np.repeat(member, st.idx.shape[1])
    nodes = st.idx.ravel().astype(np.int64)
    w = st.weight.ravel().astype(np.float64) / count[rows]
    pair, inv = np.unique(rows * grid.size + nodes, return_inverse=True)
    wsum = np.bincount(inv, weights=w)
    pcell, pnode = pair // grid.size, pair % grid.size
    slot = np.arange(pair.size) - np.searchsorted(pcell, pcell)  # position within its cell
    if slot.max() >= STENCIL_WIDTH:
        raise AssertionError(f"a cell mean touches {slot.max() + 1} nodes")
    idx = np.zeros((m, STENCIL_WIDTH), np.int32)
    weight = np.zeros((m, STENCIL_WIDTH), np.float32)
    idx[pcell, slot] = pnode
    weight[pcell, slot] = wsum
    # a station's longitude relative to its node, so that a mean never straddles the seam
    node_lon = grid.lon[keys % grid.shape[1]]
    dlon = (lon - node_lon[member] + 180.0) % 360.0 - 180.0
    frame = pd.DataFrame(
        {
            "cell": keys,
            "lat": cell_mean(lat),
            "lon": (node_lon + cell_mean(dlon) + 180.0) % 360.0 - 180.0,
            "value": mean,
            "sigma2": cell_mean(sigma2),
            "count": count,
            "scatter": np.bincount(member, weights=(value - mean[member]) ** 2, minlength=m),
        }
    )
    return Cells(frame, Stencil(idx, weight), member)


class LearnedErrors(NamedTuple):
    """The per-time constants of the learned-error likelihood, padded to ``m`` cells.

    ``K`` is the number of ``tau`` grid values. For grid value ``k``,
    ``D_k = diag((sigma2_c + tau_k^2) / n_c)`` and ``D_k^{-1/2} M D_k^{-1/2} = V_k W_k V_k^T``;
    ``q = V_k^T D_k^{-1/2}`` whitens the cell residuals, so that
    ``e^T S^{-1} e = sum_j (q e)_j^2 / (1 + lam^2 w_j)`` and
    ``log det S = logdet_d_k + sum_j log(1 + lam^2 w_j)``.

    Attributes:
      q: ``[K, m, m]`` whitening maps (identity on padding).
      w: ``[K, m]`` eigenvalues ``W_k`` (0 on padding).
      logdet_d: ``[K]`` ``log det D_k`` of the real cells.
      log_prior: ``[K]`` log prior weights of the grid values.
      scatter: ``[K]`` log density of the within-cell spreads (0 without that evidence).
      site_sd: ``[K]`` the grid values ``tau_k``, K.
    """

    q: np.ndarray
    w: np.ndarray
    logdet_d: np.ndarray
    log_prior: np.ndarray
    scatter: np.ndarray
    site_sd: np.ndarray


def _scatter_loglik(cells: pd.DataFrame, site_sd: np.ndarray) -> np.ndarray:
    """``[K]`` log density of the within-cell sums of squares: ``SS_c / v_c ~ chi2(n_c - 1)``
    with ``v_c = sigma2_c + tau_k^2`` (exact for equal variances within a cell)."""
    many = cells["count"].to_numpy() > 1
    if not many.any():
        return np.zeros(site_sd.size)
    ss = cells["scatter"].to_numpy(np.float64)[many]
    dof = cells["count"].to_numpy(np.float64)[many] - 1.0
    v = cells["sigma2"].to_numpy(np.float64)[many][None, :] + np.square(site_sd)[:, None]
    x = np.maximum(ss, 1e-12)[None, :] / v
    logpdf = (
        (0.5 * dof - 1.0) * np.log(x) - 0.5 * x - 0.5 * dof * np.log(2.0) - special.gammaln(dof / 2)
    )
    return np.sum(logpdf - np.log(v), axis=1)


def learned_errors(
    cells: Cells,
    repr_error,
    *,
    pad_to: int,
    site_sd_scale: float,
    scatter: bool = True,
    site_sd_grid: np.ndarray = SITE_SD_GRID,
) -> LearnedErrors:
    """The likelihood's constants for one time (see :class:`LearnedErrors`).

    Args:
      cells: the time's observations by cell (:func:`cells_of`).
      repr_error: the prior's :class:`bayesda.prior.representation.RepresentationError`.
      pad_to: the padded number of cells (>= the real number).
      site_sd_scale: the HalfNormal scale of ``tau`` (K).
      scatter: use the within-cell spread as evidence about ``tau``.
      site_sd_grid: the ``tau`` values.
    """
    f = cells.frame
    m = len(f)
    if pad_to < m:
        raise ValueError(f"cannot pad {m} cells to {pad_to}")
    M = repr_error.covariance_at_obs(cells.stencil)  # [m, m] float64
    n = f["count"].to_numpy(np.float64)
    s2 = f["sigma2"].to_numpy(np.float64)
    K = site_sd_grid.size
    q = np.zeros((K, pad_to, pad_to), np.float32)
    w = np.zeros((K, pad_to), np.float32)
    logdet = np.zeros(K)
    for k, tau in enumerate(site_sd_grid):
        d = (s2 + tau**2) / n
        isd = 1.0 / np.sqrt(d)
        vals, vecs = np.linalg.eigh(M * isd[:, None] * isd[None, :])
        q[k, :m, :m] = vecs.T * isd[None, :]
        q[k, m:, m:] = np.eye(pad_to - m)
        w[k, :m] = np.maximum(vals, 0.0)
        logdet[k] = np.sum(np.log(d))
    return LearnedErrors(
        q=q,
        w=w,
        logdet_d=logdet.astype(np.float32),
        log_prior=site_sd_prior(site_sd_scale, site_sd_grid).astype(np.float32),
        scatter=(_scatter_loglik(f, site_sd_grid) if scatter else np.zeros(K)).astype(np.float32),
        site_sd=site_sd_grid.astype(np.float32),
    )


def learned_loglik(residual, repr_scale, errors: LearnedErrors, n_real):
    """``[K]`` log likelihood of the cell residuals for each ``tau`` grid value (JAX or NumPy).

    Args:
      residual: ``[..., m]`` cell means minus ``H_c (g(z) + b)`` (0 on padding), K.
      repr_scale: ``[...]`` ``lam`` (> 0).
      errors: the time's :class:`LearnedErrors`.
      n_real: the number of real cells (for the normalising constant).

    Returns:
      ``[..., K]`` ``log N(residual; 0, D_k + lam^2 M)`` plus the within-cell spread's log
      density. Their log-sum-exp with ``errors.log_prior`` is the likelihood with ``tau``
      summed out.
    """
    xp = _namespace(residual)
    if xp is np:
        u = np.einsum("kij,...j->...ki", errors.q, residual, optimize=True)
    else:
        u = xp.einsum("kij,...j->...ki", errors.q, residual)
    den = 1.0 + xp.asarray(repr_scale)[..., None, None] ** 2 * errors.w
    return (
        -0.5 * xp.sum(u * u / den, axis=-1)
        - 0.5 * xp.sum(xp.log(den), axis=-1)
        - 0.5 * errors.logdet_d
        - 0.5 * n_real * np.log(2.0 * np.pi)
        + errors.scatter
    )


def prune_site_grid(errors: LearnedErrors, loglik: np.ndarray, size: int) -> LearnedErrors:
    """Keep the ``tau`` values whose weight at the MAP is within :data:`PRUNE_NATS` of the
    best, padded to ``size`` entries with weight 0 (so that times share shapes).

    Dropping a mixture component of relative weight below ``exp(-25)`` changes the density
    by less than that fraction; a component of weight 0 (log prior ``-inf``) adds nothing.

    Args:
      errors: the full :class:`LearnedErrors`.
      loglik: ``[K]`` :func:`learned_loglik` at the MAP.
      size: the number of entries to return (>= the number kept).
    """
    score = np.asarray(loglik, np.float64) + np.asarray(errors.log_prior, np.float64)
    keep = np.flatnonzero(score > score.max() - PRUNE_NATS)
    if keep.size > size:
        raise ValueError(f"{keep.size} site-SD values kept, more than size={size}")
    idx = np.concatenate([keep, np.full(size - keep.size, keep[-1])])
    log_prior = np.asarray(errors.log_prior)[idx].copy()
    log_prior[keep.size :] = -np.inf
    return errors._replace(
        q=errors.q[idx],
        w=errors.w[idx],
        logdet_d=errors.logdet_d[idx],
        log_prior=log_prior.astype(np.float32),
        scatter=errors.scatter[idx],
        site_sd=errors.site_sd[idx],
    )


def kept_site_values(errors: LearnedErrors, loglik: np.ndarray) -> int:
    """How many ``tau`` values :func:`prune_site_grid` keeps."""
    score = np.asarray(loglik, np.float64) + np.asarray(errors.log_prior, np.float64)
    return int(np.sum(score > score.max() - PRUNE_NATS))


def refined_site_grid(errors: LearnedErrors, loglik: np.ndarray, size: int) -> np.ndarray:
    """A finer ``tau`` grid of ``size`` values where the weight at the MAP is not negligible.

    Many observations make the conditional of ``tau`` narrower than the grid's 20-25%
    steps (2,705 METAR stations: one grid value held every draw). The grid is a quadrature
    of the prior, so a finer one over the values that matter, from the last negligible
    value below to the first above (whose prior mass collects the tails, which the
    likelihood makes negligible), is the same prior integrated more accurately.
    """
    score = np.asarray(loglik, np.float64) + np.asarray(errors.log_prior, np.float64)
    keep = np.flatnonzero(score > score.max() - PRUNE_NATS)
    grid = np.asarray(errors.site_sd, np.float64)
    lo, hi = grid[max(keep[0] - 1, 0)], grid[min(keep[-1] + 1, grid.size - 1)]
    if lo <= 0.0:
        return np.linspace(0.0, hi, size)
    return np.geomspace(lo, hi, size)


def site_sd_weights(loglik: np.ndarray, log_prior: np.ndarray) -> np.ndarray:
    """``[..., K]`` conditional probabilities of the ``tau`` grid given ``[..., K]`` log
    likelihoods (one row per draw)."""
    a = np.asarray(loglik, np.float64) + np.asarray(log_prior, np.float64)
    a = a - a.max(axis=-1, keepdims=True)
    p = np.exp(a)
    return p / p.sum(axis=-1, keepdims=True)


def condition_learned(
    rng: np.random.Generator,
    residual: np.ndarray,
    repr_scale: np.ndarray,
    site: np.ndarray,
    cells: Cells,
    errors: LearnedErrors,
    repr_error,
) -> np.ndarray:
    """Draw ``r | z, b, lam, tau, y`` by Matheron's rule for each of ``s`` draws.

    ``r = r0 + lam^2 C H^T S^{-1} (e - H r0 - D^{1/2} eps)``, ``r0 ~ N(0, lam^2 C)``, with
    ``S^{-1} = q^T diag(1 / (1 + lam^2 w)) q`` of the draw's ``tau`` grid value.

    Args:
      rng: the random generator.
      residual: ``[s, m]`` cell means minus ``H_c (g(z) + b)`` (real cells only), K.
      repr_scale: ``[s]`` ``lam`` of each draw.
      site: ``[s]`` int index into the ``tau`` grid of each draw.
      cells: the cells (:func:`cells_of`).
      errors: their :class:`LearnedErrors`.
      repr_error: the prior's representation error ``C``.

    Returns:
      ``[s, nlat, nlon]`` draws of ``r``, K (float32).
    """
    residual = np.asarray(residual, np.float64)
    s, m = residual.shape
    shape = repr_error.diag_var.shape
    npix = int(np.prod(shape))
    F = np.asarray(repr_error.factor, np.float64).reshape(repr_error.rank, npix)
    dvar = np.asarray(repr_error.diag_var, np.float64).reshape(npix)
    H = as_sparse(cells.stencil, npix)
    A = np.asarray(H @ F.T)  # [m, rank]
    lam = np.asarray(repr_scale, np.float64)[:, None]
    r0 = lam * (rng.standard_normal((s, repr_error.rank)) @ F)
    r0 += lam * np.sqrt(dvar) * rng.standard_normal((s, npix))
    f = cells.frame
    d = (f["sigma2"].to_numpy()[None, :] + np.square(errors.site_sd[site])[:, None]) / f[
        "count"
    ].to_numpy()[None, :]
    innov = residual - np.asarray(H @ r0.T).T - np.sqrt(d) * rng.standard_normal((s, m))
    sol = np.empty_like(innov)
    q = errors.q[:, :m, :m].astype(np.float64)
    w = errors.w[:, :m].astype(np.float64)
    for k in np.unique(site):
        sel = site == k
        u = innov[sel] @ q[k].T  # [s_k, m]
        sol[sel] = (u / (1.0 + lam[sel] ** 2 * w[k][None, :])) @ q[k]
    sol *= lam**2
    update = (sol @ A) @ F + dvar * np.asarray(H.T @ sol.T).T
    return (r0 + update).reshape(s, *shape).astype(np.float32)


def _namespace(x):
    """``jax.numpy`` for JAX arrays and tracers, else ``numpy``."""
    if isinstance(x, np.ndarray | np.generic | float | int):
        return np
    import jax.numpy as jnp

    return jnp
