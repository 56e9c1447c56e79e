"""A climate that moved: a large-scale offset with its own prior.

The decoder learnt the weather of its training period; a period that is warmer or colder
as a whole (the 1850s, a recent warm year) differs by more than that weather allows, and a
uniform offset is then forced through the decoder's weather modes. Here the field gets a
few smooth large-scale modes ``u_k`` with independent coefficients of their own prior::

    x = g(z) + sum_k c_k u_k + r,    c_k ~ N(0, s^2),    r ~ N(0, C)

``c`` is Gaussian and enters linearly, so it is folded into the representation error:
``C -> C + s^2 U U^T`` (``U`` appended to the low-rank factor). The likelihood integrates it
out and Matheron's rule conditions it exactly on each draw's residual, as for ``r``; the
sampler and the outputs need no change, and the field samples carry the offset's
uncertainty. :func:`estimate_offset` reports the coefficients' posterior in the linearised
model (the run prints it).

Modes (unit amplitude, on the model grid): ``"uniform"``: ``u_0 = 1``; ``"smooth"``: also
``u_1`` and ``u_2`` linear in latitude and longitude, -1 to +1 across the domain (a
large-scale gradient). ``sd`` is ``s``, K.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from bayesda.obs.operator import as_matrix, bilinear_stencil

__all__ = [
    "KINDS",
    "add_offset",
    "estimate_offset",
    "offset_modes",
    "outside_training_period",
    "training_period",
]

KINDS = ("none", "uniform", "smooth")


def _check(kind: str, sd: float) -> None:
    if kind not in KINDS:
        raise ValueError(f"offset={kind!r}; expected one of {KINDS}")
    if not (np.isfinite(sd) and sd > 0):
        raise ValueError(f"offset sd={sd!r} must be a positive number of K (e.g. 2)")


def offset_modes(grid, kind: str = "uniform") -> np.ndarray:
    """``[k, nlat, nlon]`` the offset modes ``u_k`` of ``kind`` on ``grid`` (k = 0 for
    ``"none"``)."""
    _check(kind, 1.0)
    if kind == "none":
        return np.zeros((0, *grid.shape))
    lat, lon = np.meshgrid(np.asarray(grid.lat, float), np.asarray(grid.lon, float), indexing="ij")
    modes = [np.ones(grid.shape)]
    if kind == "smooth":
        for v in (lat, lon):
            span = v.max() - v.min()
            modes.append((2 * (v - v.min()) / span - 1) if span > 0 else np.zeros(grid.shape))
    return np.stack(modes)


def add_offset(prior, kind: str = "uniform", sd: float = 2.0):
    """A copy of ``prior`` whose representation error holds the offset modes, ``C + s^2 U U^T``.

    Args:
      prior: the :class:`bayesda.prior.generative.GenerativePrior`.
      kind: ``"none"`` (``prior`` itself), ``"uniform"`` or ``"smooth"``.
      sd: prior SD ``s`` of each coefficient, K.

    Raises:
      ValueError: an unknown ``kind`` or a non-positive ``sd``.
    """
    _check(kind, sd)
    if kind == "none":
        return prior
    re = prior.repr_error
    extra = (sd * offset_modes(prior.grid, kind)).astype(re.factor.dtype)
    new = re._replace(factor=np.concatenate([re.factor, extra]), spec=None)
    return dataclasses.replace(
        prior, repr_error=new, name=f"{prior.name} (+{kind} offset, sd {sd:g} K)"
    )


def estimate_offset(prior, obs: pd.DataFrame, kind: str = "uniform", sd: float = 2.0) -> dict:
    """Posterior mean and SD of the offset coefficients given ``obs``, linearised model.

    With ``prior`` *without* the offset (``G`` the observed decoder's Jacobian at the
    analysis, ``R = H C H^T + diag(sigma^2)``, ``A = H U``): ``y ~ N(m, K)``,
    ``K = G G^T + R + s^2 A A^T``, ``E[c | y] = s^2 A^T K^-1 (y - m)``,
    ``Var[c | y] = s^2 I - s^4 A^T K^-1 A``.

    Returns:
      ``{"kind", "sd", "mean": [k], "post_sd": [k]}`` (K), JSON-able.
    """
    from bayesda.preflight.calibrate import holdout_pieces

    _check(kind, sd)
    if kind == "none":
        return {"kind": kind, "sd": float(sd), "mean": [], "post_sd": []}
    p = holdout_pieces(prior, obs)
    U = offset_modes(prior.grid, kind).reshape(-1, prior.grid.size)
    H = as_matrix(
        bilinear_stencil(prior.grid, obs["lat"].to_numpy(), obs["lon"].to_numpy()),
        prior.grid.size,
    )
    A = H @ U.T  # [n, k]
    K = p.lin.G @ p.lin.G.T + p.rep + np.diag(p.obs_var) + sd**2 * A @ A.T
    w = np.linalg.solve(K, np.c_[p.y - p.lin.m, A])
    mean = sd**2 * A.T @ w[:, 0]
    cov = sd**2 * np.eye(A.shape[1]) - sd**4 * A.T @ w[:, 1:]
    return {
        "kind": kind,
        "sd": float(sd),
        "mean": [round(float(v), 4) for v in mean],
        "post_sd": [round(float(v), 4) for v in np.sqrt(np.clip(np.diag(cov), 0, None))],
    }


def training_period(prior) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """The first and last time of the fields the prior learnt from, or None if unknown.

    From the model card's ``split.period``, else the climatology's fitted period.
    """
    period = ((getattr(prior, "card", None) or {}).get("split") or {}).get("period")
    if not period:
        clim = getattr(prior, "climatology", None)
        attrs = clim.attrs if clim is not None else {}
        period = [attrs.get("period_start"), attrs.get("period_end")]
    try:
        start, end = (pd.Timestamp(p) for p in period)
    except (TypeError, ValueError):
        return None
    if start is pd.NaT or end is pd.NaT:
        return None
    return start, end


def outside_training_period(prior, times) -> dict | None:
    """Whether analysis ``times`` lie outside the prior's training period.

    Returns:
      None when they are inside it (or the period is unknown), else ``{"start", "end"}``
      (the period, ISO dates), ``{"first", "last"}`` (the times outside it) and
      ``"years"`` (how far the farthest one is from the period, in years).
    """
    period = training_period(prior)
    if period is None or times is None:
        return None
    start, end = period
    t = pd.to_datetime(np.atleast_1d(np.asarray(times, "datetime64[ns]")))
    out = t[(t < start) | (t > end.normalize() + pd.Timedelta(days=1))]
    if out.size == 0:
        return None
    gap = max(
        (start - out.min()).total_seconds() if out.min() < start else 0.0,
        (out.max() - end).total_seconds() if out.max() > end else 0.0,
    )
    return {
        "start": str(start.date()),
        "end": str(end.date()),
        "first": out.min().strftime("%Y-%m-%dT%H:%M"),
        "last": out.max().strftime("%Y-%m-%dT%H:%M"),
        "years": gap / (365.25 * 86400.0),
    }
