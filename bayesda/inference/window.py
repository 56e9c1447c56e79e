"""A window of analysis times sampled together through the prior's latent dynamics.

Generative story over ``T`` consecutive model times ``t_1 .. t_T`` (one model step apart;
:class:`bayesda.prior.dynamics.LatentDynamics`, anomalies in K)::

    e_k     ~ N(0, I_d)                                   plates "time", "latent"
    z_1     = L e_1                                       L L^T = P (stationary)
    z_{k+1} = A z_k + B e_{k+1}
    x_k     = g(z_k) + r_k,    Cov(r_j, r_k) = rho^|j-k| C   (representation error)
    y_ki    = (H_k x_k)_i + eps_ki,   eps_ki ~ N(0, sigma_ki^2)

The sampler sees the innovations ``e`` (non-centred): with weak data the posterior of ``e`` is
close to ``N(0, I)`` whatever ``A`` is. ``r`` is integrated out of the likelihood exactly,
as in the single-time model (:mod:`bayesda.inference.model`): the observations of all times,
stacked into one vector of ``n`` entries, are

    y | z ~ N(H g(z), S),   S = (rho^|t_i - t_j|)_ij o (H C H^T) + diag(sigma^2),

a Hadamard product of two covariances (positive definite by the Schur product theorem),
factored once per window. All observation arrays are padded to a power of two
(:func:`bayesda.inference.model.pad_length`) with a mask, so that windows with similar numbers
of observations share one compiled program.

Sampling follows the single-time path (:mod:`bayesda.inference.assimilate`): MAP, a Laplace
(inverse) mass matrix, NUTS from :mod:`bayesda.inference.sampler`. The MAP is found by Adam
followed by damped Gauss-Newton steps, and the Hessian is the Gauss-Newton one,
``I + M^T J^T S^{-1} J M`` with ``J`` the decoder's Jacobian at the observations and ``M`` the
(linear) map from innovations to latents: exact for a linear decoder, positive definite
always, and it costs one decoder gradient per observation instead of the ``T d``
Hessian-vector products of a dense Hessian.

Fields. Given a draw of ``z``, the representation errors of all times are drawn jointly from
their exact Gaussian conditional by Matheron's rule, as in :mod:`bayesda.inference.fields`:
``r0`` an AR(1)-in-time draw with spatial covariance ``C``, ``eps0 ~ N(0, diag(sigma^2))``,
``w = S^{-1} (y - H g(z) - H r0 - eps0)`` and ``r_k = r0_k + C H^T (rho^|k - t| o w)``.
Each time's field sample is ``g(z_k) + r_k``.

:func:`assimilate_window` returns one :class:`bayesda.inference.result.Assimilation` per time
of the window (fields, InferenceData, verdict as for one time); a time without observations
of its own gets an empty observation set and its posterior from its neighbours.
"""

from __future__ import annotations

import functools
import math
import time as _time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pandas as pd
import scipy.linalg
from numpyro.infer.util import potential_energy

from bayesda.inference.compiled import CACHE, laplace_draws, spd
from bayesda.inference.model import MIN_PAD, ModelObs, pad_length
from bayesda.inference.prepare import REQUIRED_COLUMNS, ObsData, pad_rows, prepare_obs
from bayesda.inference.result import Assimilation, inference_data
from bayesda.inference.sampler import run_nuts
from bayesda.obs.operator import Stencil, as_sparse
from bayesda.prior.dynamics import LatentDynamics
from bayesda.settings import WINDOW, WINDOW_TARGET_ACCEPT, ModelOptions, SamplerSettings

__all__ = [
    "ADAM_STEPS",
    "GN_STEPS",
    "STATED",
    "WINDOW",
    "WINDOW_TARGET_ACCEPT",
    "WindowObs",
    "assimilate_window",
    "condition_window_error",
    "latent_path",
    "prepare_window",
    "window_model",
    "window_times",
]

ADAM_STEPS = 150
"""Adam steps of the MAP search before the Gauss-Newton steps."""
GN_STEPS = 4
"""Damped Gauss-Newton steps of the MAP search (each tries steps of 1, 1/2, 1/4, 1/10)."""
_GN_SCALES = (1.0, 0.5, 0.25, 0.1, 0.0)

STATED = ModelOptions(errors="stated")
"""The model options of a window: the stated-error model (observation errors as stated, the
model's representation error ``C``), whose likelihood the window stacks over its times.

The default sampler settings of a window are :data:`bayesda.settings.WINDOW`: the default's
with a target acceptance of :data:`bayesda.settings.WINDOW_TARGET_ACCEPT` (0.6), at which a
window's NUTS trees take as many leapfrog steps as a single time's."""


def window_times(time, n_times: int, step_hours: float) -> np.ndarray:
    """The ``n_times`` model times of the window centred on ``time`` (``n_times`` odd).

    Raises:
      ValueError: ``n_times`` is even or < 1.
    """
    if n_times < 1 or n_times % 2 == 0:
        raise ValueError(f"the window needs an odd number of times >= 1, got {n_times}")
    t = np.datetime64(pd.Timestamp(time), "s")
    step = np.timedelta64(int(round(step_hours * 3600)), "s")
    half = n_times // 2
    return (t + np.arange(-half, half + 1) * step).astype("datetime64[ns]")


class WindowObs(NamedTuple):
    """The observations of a window, stacked over times and padded to a fixed length ``m``.

    Attributes:
      times: ``[T]`` the window's times (datetime64, or None for untimed tests).
      per_time: each time's :class:`~bayesda.inference.prepare.ObsData`, or None when the
        time has no observation.
      stencil: the stacked bilinear stencil of all ``n`` observations (unpadded).
      tindex: ``[m]`` int32 time index of each entry (0 on padding).
      idx, weight: ``[m, 4]`` padded stencil (index 0, weight 0 on padding).
      y: ``[m]`` observed anomalies, K (0 on padding).
      sigma: ``[m]`` observation error SD, K (1 on padding).
      mask: ``[m]`` True for real observations.
      scale_tril: ``[m, m]`` lower Cholesky factor of ``S`` (identity on padding).
      repr_corr: ``rho``, the lag-one correlation ``S`` was built with.
    """

    times: Any
    per_time: list
    stencil: Stencil
    tindex: np.ndarray
    idx: np.ndarray
    weight: np.ndarray
    y: np.ndarray
    sigma: np.ndarray
    mask: np.ndarray
    scale_tril: np.ndarray
    repr_corr: float

    @property
    def n(self) -> int:
        return int(self.mask.sum())

    @property
    def n_times(self) -> int:
        return len(self.per_time)

    def n_by_time(self) -> list[int]:
        return [0 if o is None else o.n for o in self.per_time]

    def arrays(self) -> tuple:
        """The device arrays the model takes: ``(idx, weight, tindex, y, mask, scale_tril)``."""
        return tuple(
            jnp.asarray(a)
            for a in (self.idx, self.weight, self.tindex, self.y, self.mask, self.scale_tril)
        )


def _as_frames(obs_by_time, times) -> list:
    if isinstance(obs_by_time, Mapping):
        keyed = {np.datetime64(pd.Timestamp(k), "ns"): v for k, v in obs_by_time.items()}
        unknown = sorted(set(keyed) - {np.datetime64(t, "ns") for t in times})
        if unknown:
            raise ValueError(
                f"observations at {[str(u)[:19] for u in unknown]} are not window times "
                f"{[str(t)[:19] for t in times]}"
            )
        return [keyed.get(np.datetime64(t, "ns")) for t in times]
    frames = list(obs_by_time)
    if len(frames) != len(times):
        raise ValueError(f"{len(frames)} observation tables for {len(times)} window times")
    return frames


def _lag_matrix(tindex: np.ndarray, rho: float) -> np.ndarray:
    lag = np.abs(tindex[:, None] - tindex[None, :]).astype(np.float64)
    return rho**lag


def prepare_window(
    prior, obs_by_time, times: Sequence | None = None, *, repr_corr: float | None = None
) -> WindowObs:
    """Check the observations of every window time and stack them for the model.

    Args:
      prior: the :class:`~bayesda.prior.generative.GenerativePrior`.
      obs_by_time: a sequence of tables, one per window time (None or empty: no
        observations then), or a mapping ``time -> table``; columns as for
        :func:`bayesda.inference.prepare.prepare_obs` (lat, lon, value in K, sigma in K).
      times: the window's times (required with a mapping; else optional labels).
      repr_corr: ``rho`` (default: ``prior.dynamics.repr_corr``).

    Raises:
      ValueError: no observation at any time, a bad table (see ``prepare_obs``), or
        observations at a time outside the window.
    """
    if times is None:
        if isinstance(obs_by_time, Mapping):
            raise ValueError("pass times= with a mapping of observations")
        times = [None] * len(obs_by_time)
    frames = _as_frames(obs_by_time, list(times))
    rho = float(prior.dynamics.repr_corr if repr_corr is None else repr_corr)
    per_time: list[ObsData | None] = []
    for frame in frames:
        if frame is None or len(frame) == 0:
            per_time.append(None)
            continue
        frame = frame.drop(columns=["time"], errors="ignore")
        per_time.append(prepare_obs(prior, frame, pad=True, options=STATED))
    live = [(k, o) for k, o in enumerate(per_time) if o is not None]
    if not live:
        raise ValueError(f"no observation at any of the {len(frames)} window times")
    idx = np.concatenate([o.stencil.idx for _, o in live])
    weight = np.concatenate([o.stencil.weight for _, o in live])
    tindex = np.concatenate([np.full(o.n, k, np.int32) for k, o in live])
    y = np.concatenate([o.arrays.y[: o.n] for _, o in live]).astype(np.float32)
    sigma = np.concatenate([o.arrays.sigma[: o.n] for _, o in live]).astype(np.float64)
    stencil = Stencil(idx.astype(np.int32), weight.astype(np.float32))
    n = stencil.n
    m = pad_length(n)
    cov = _lag_matrix(tindex, rho) * prior.repr_error.covariance_at_obs(stencil)
    chol = np.linalg.cholesky(cov + np.diag(sigma**2)).astype(np.float32)
    scale_tril = np.eye(m, dtype=np.float32)
    scale_tril[:n, :n] = chol
    return WindowObs(
        times=None if times[0] is None else np.asarray(times, "datetime64[ns]"),
        per_time=per_time,
        stencil=stencil,
        tindex=pad_rows(tindex, m, 0),
        idx=pad_rows(stencil.idx, m, 0),
        weight=pad_rows(stencil.weight, m, 0.0),
        y=pad_rows(y, m, 0.0),
        sigma=pad_rows(sigma.astype(np.float32), m, 1.0),
        mask=np.arange(m) < n,
        scale_tril=scale_tril,
        repr_corr=rho,
    )


def latent_path(e, transition, noise, initial):
    """``[T, d]`` latents from innovations ``e [T, d]``: ``z_1 = L e_1``,
    ``z_{k+1} = A z_k + B e_{k+1}`` (JAX or NumPy inputs; JAX output)."""
    z1 = initial @ e[0]

    def step(z, ek):
        nxt = transition @ z + noise @ ek
        return nxt, nxt

    _, rest = jax.lax.scan(step, z1, e[1:])
    return jnp.concatenate([z1[None], rest], axis=0)


def _observed(fields, tindex, idx, weight):
    """``H g(z)`` of the stacked observations: fields ``[T, nlat, nlon]`` -> ``[m]``."""
    flat = fields.reshape(fields.shape[0], -1)
    return (flat[tindex[:, None], idx] * weight).sum(-1)


def window_model(
    decode: Callable,
    latent_dim: int,
    n_times: int,
    transition,
    noise,
    initial,
    idx,
    weight,
    tindex,
    y=None,
    mask=None,
    scale_tril=None,
):
    """NumPyro model of a window of point observations (module docstring).

    Args:
      decode: pure ``z [..., d] -> field [..., nlat, nlon]`` (K), parameters bound.
      latent_dim, n_times: ``d`` and ``T``.
      transition, noise, initial: ``A``, ``B``, ``L`` ``[d, d]``.
      idx, weight: ``[m, 4]`` stacked stencils; tindex: ``[m]`` time of each entry.
      y: ``[m]`` observed anomalies, K, or None for the prior predictive.
      mask: ``[m]`` bool, False on padding.
      scale_tril: ``[m, m]`` Cholesky factor of ``S`` (identity on padding).

    Sample sites: ``e`` ``[T, d]`` (innovations), observed ``y`` ``[m]``.
    """
    with numpyro.plate("time", n_times, dim=-2), numpyro.plate("latent", latent_dim, dim=-1):
        e = numpyro.sample("e", dist.Normal(0.0, 1.0))
    z = latent_path(e, transition, noise, initial)
    mu = _observed(decode(z), tindex, idx, weight)
    m = idx.shape[0]
    if mask is None:
        mask = jnp.ones(m, dtype=bool)
    maskf = mask.astype(mu.dtype)
    y_obs = None if y is None else jnp.where(mask, y, 0.0)
    # padding entries are standard normals observed at 0: remove their constant
    numpyro.factor("padding", 0.5 * math.log(2 * math.pi) * (m - maskf.sum()))
    numpyro.sample("y", dist.MultivariateNormal(mu * maskf, scale_tril=scale_tril), obs=y_obs)


class _WindowFns(NamedTuple):
    potential: Callable
    find_map: Callable
    path: Callable


def _build(decode: Callable, latent_dim: int, n_times: int) -> _WindowFns:
    model = functools.partial(window_model, decode, latent_dim, n_times)
    shape = (n_times, latent_dim)

    def potential(flat, args):
        return potential_energy(model, args, {}, {"e": flat.reshape(shape)})

    def gn_hessian(flat, args):
        A, B, L, idx, weight, tindex, _, mask, chol = args
        path = lambda f: latent_path(f.reshape(shape), A, B, L).reshape(-1)  # noqa: E731
        Mpath = jax.jacfwd(path)(flat)  # [T d, T d], linear in flat
        z = path(flat).reshape(shape)

        # one reverse pass per observation, each through its own time's decoder (the
        # decoder's custom VJP rules out forward mode)
        def row(zi, ii, wi):
            return jax.grad(lambda zz: (decode(zz).reshape(-1)[ii] * wi).sum())(zi)

        rows = jax.vmap(row)(z[tindex], idx, weight) * mask[:, None]  # [m, d]
        m = idx.shape[0]
        Jz = jnp.zeros((m, n_times, latent_dim), rows.dtype).at[jnp.arange(m), tindex].set(rows)
        W = jax.scipy.linalg.solve_triangular(chol, Jz.reshape(m, -1) @ Mpath, lower=True)
        return jnp.eye(flat.size, dtype=flat.dtype) + W.T @ W

    opt = optax.adam(0.05)

    @jax.jit
    def find_map(flat, args):
        grad = jax.grad(potential)

        def adam(carry, _):
            x, state = carry
            upd, state = opt.update(grad(x, args), state)
            return (optax.apply_updates(x, upd), state), None

        (x, _), _ = jax.lax.scan(adam, (flat, opt.init(flat)), None, length=ADAM_STEPS)
        scales = jnp.asarray(_GN_SCALES, flat.dtype)
        # Gauss-Newton steps with the Hessian of the Adam point, each damped by the best of a
        # few step lengths: the decoder is close to linear where the posterior lives, so one
        # Hessian serves every step (they cost one decoder gradient per observation)
        hess0 = gn_hessian(x, args)

        def gauss_newton(x, _):
            step = jnp.linalg.solve(hess0, grad(x, args))
            cands = x[None] - scales[:, None] * step[None]
            values = jax.vmap(lambda c: potential(c, args))(cands)
            values = jnp.where(jnp.isfinite(values), values, jnp.inf)
            return cands[jnp.argmin(values)], None

        x, _ = jax.lax.scan(gauss_newton, x, None, length=GN_STEPS)
        return x, gn_hessian(x, args), potential(x, args)

    @jax.jit
    def path(e, A, B, L):
        return jax.vmap(lambda f: latent_path(f.reshape(shape), A, B, L))(e)

    return _WindowFns(potential, find_map, path)


_FNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _window_fns(prior, n_times: int) -> _WindowFns:
    """The compiled functions of ``prior``'s decoder for windows of ``n_times`` (built once:
    the potential object keys the NUTS program of :mod:`bayesda.inference.sampler`)."""
    per_decoder = _FNS.setdefault(prior.decode, {})
    key = (int(prior.latent_dim), int(n_times))
    if key not in per_decoder:
        per_decoder[key] = _build(prior.decode, prior.latent_dim, n_times)
    return per_decoder[key]


def _dynamics_of(prior, dynamics: LatentDynamics | None) -> LatentDynamics:
    dyn = dynamics if dynamics is not None else getattr(prior, "dynamics", None)
    if dyn is None:
        raise ValueError(
            f"prior {prior.name!r} has no latent dynamics; fit them "
            "(bayesda.prior.dynamics.fit_dynamics) and store them in the model directory "
            "(bayesda.prior.checkpoint.update_card(..., dynamics=...)) or pass dynamics="
        )
    if dyn.latent_dim != prior.latent_dim:
        raise ValueError(
            f"the dynamics are for a latent of dimension {dyn.latent_dim}, the prior has "
            f"{prior.latent_dim} (a preflight step that adds latent modes, such as --offset, "
            "does not combine with a window)"
        )
    return dyn


def condition_window_error(
    rng: np.random.Generator,
    residual: np.ndarray,
    obs: WindowObs,
    repr_error,
    want: Sequence[int],
    *,
    chunk: int = 500,
) -> dict[int, np.ndarray]:
    """Draw the representation errors ``r_k | z, y`` of the window times ``want`` jointly.

    Matheron's rule over the whole window (module docstring): exact draws from the Gaussian
    conditional of ``r_1..r_T`` given the residuals ``y - H g(z)`` of every time.

    Args:
      rng: the random generator.
      residual: ``[s, n]`` residuals of the ``n`` stacked observations for ``s`` draws, K.
      obs: the window's observations.
      repr_error: the spatial covariance ``C``
        (:class:`bayesda.prior.representation.RepresentationError`).
      want: the time indices to return.
      chunk: draws per batch (bounds memory).

    Returns:
      ``{k: [s, nlat, nlon]}`` float32, K.
    """
    residual = np.asarray(residual, np.float64)
    s, n = residual.shape
    if n != obs.n:
        raise ValueError(f"residual has {n} observations but the window has {obs.n}")
    T, rho = obs.n_times, obs.repr_corr
    shape = repr_error.diag_var.shape
    npix = int(np.prod(shape))
    F = np.asarray(repr_error.factor, np.float64).reshape(repr_error.rank, npix)
    d = np.asarray(repr_error.diag_var, np.float64).reshape(npix)
    tidx = obs.tindex[:n]
    H = as_sparse(obs.stencil, npix)  # [n, npix]
    Fobs = np.asarray(H @ F.T)  # [n, rank]
    sel_of = [(k, np.flatnonzero(tidx == k)) for k in range(T)]
    by_time = [(k, sel, H[sel]) for k, sel in sel_of if sel.size]
    chol = obs.scale_tril[:n, :n].astype(np.float64)
    sig = obs.sigma[:n].astype(np.float64)
    lag = rho ** np.abs(np.arange(T)[:, None] - tidx[None, :]).astype(np.float64)  # [T, n]
    out = {k: np.empty((s, *shape), np.float32) for k in want}
    innov_scale = math.sqrt(max(1.0 - rho * rho, 0.0))
    for lo in range(0, s, chunk):
        b = min(chunk, s - lo)
        # r0 ~ AR(1) in time with spatial covariance C, at every window time
        r0 = np.empty((T, b, npix))
        for k in range(T):
            fresh = rng.standard_normal((b, repr_error.rank)) @ F
            fresh += np.sqrt(d) * rng.standard_normal((b, npix))
            r0[k] = fresh if k == 0 else rho * r0[k - 1] + innov_scale * fresh
        hr0 = np.empty((b, n))
        for k, sel, Hk in by_time:
            hr0[:, sel] = np.asarray(Hk @ r0[k].T).T
        innov = residual[lo : lo + b] - hr0 - sig * rng.standard_normal((b, n))
        wv = scipy.linalg.cho_solve((chol, True), innov.T).T  # [b, n] = S^{-1} innov
        for k in want:
            wk = wv * lag[k]  # [b, n]: rho^|k - t_i| w_i
            # C H^T wk = F^T (H F^T)^T wk + d * H^T wk
            upd = (wk @ Fobs) @ F + d * np.asarray(H.T @ wk.T).T
            out[k][lo : lo + b] = (r0[k] + upd).reshape(b, *shape)
    return out


def _empty_obs(prior) -> ObsData:
    """The observations of a time that has none (all padding)."""
    m = MIN_PAD
    rank = min(prior.repr_error.rank, m)
    frame = pd.DataFrame({c: pd.Series(dtype=np.float64) for c in REQUIRED_COLUMNS})
    arrays = ModelObs(
        idx=np.zeros((m, 4), np.int32),
        weight=np.zeros((m, 4), np.float32),
        y=np.zeros(m, np.float32),
        sigma=np.ones(m, np.float32),
        mask=np.zeros(m, bool),
        repr_factor=np.zeros((m, rank), np.float32),
        repr_diag=np.zeros(m, np.float32),
    )
    stencil = Stencil(np.zeros((0, 4), np.int32), np.zeros((0, 4), np.float32))
    return ObsData(frame=frame, stencil=stencil, arrays=arrays)


def _time_idata(samples, stats, obs: ObsData | None, mu, settings, rng):
    """A time's InferenceData. With observations, as the single-time stated-error one: each
    station's marginal log density per draw (``N(mu_i, sigma_i^2 + (H C H^T)_ii)``, given
    that time's latent) and replicate observations with the correlated representation
    error."""
    import arviz as az

    if obs is None:
        return az.from_dict(
            posterior=samples,
            sample_stats=stats or None,
            coords={"latent": np.arange(samples["z"].shape[-1])},
            dims={"z": ["latent"]},
            attrs={
                "inference_library": "numpyro",
                "method": settings["method"],
                "max_tree_depth": int(settings["max_tree_depth"]),
            },
        )
    from scipy import stats as sps

    a, n = obs.arrays, obs.n
    A = a.repr_factor[:n].astype(np.float64)
    D = a.repr_diag[:n].astype(np.float64)
    sig = a.sigma[:n].astype(np.float64)
    y = a.y[:n].astype(np.float64)
    ll = sps.norm.logpdf(y, loc=mu, scale=np.sqrt(sig**2 + D + np.sum(A**2, -1)))
    corr = rng.standard_normal((*mu.shape[:2], A.shape[1])) @ A.T if A.shape[1] else 0.0
    pp = mu + corr + np.sqrt(sig**2 + D) * rng.standard_normal(mu.shape)
    return inference_data(
        samples,
        stats,
        obs,
        ll,
        pp,
        max_tree_depth=settings["max_tree_depth"],
        method=settings["method"],
    )


def assimilate_window(
    prior,
    obs_by_time,
    times: Sequence | None = None,
    *,
    seed: int = 0,
    sampler: SamplerSettings | None = None,
    options: ModelOptions | None = None,
    dynamics: LatentDynamics | None = None,
    want: Sequence[int] | None = None,
    progress_bar: bool = False,
) -> list[Assimilation]:
    """Sample the joint posterior of the fields at every time of a window.

    Args:
      prior: the :class:`~bayesda.prior.generative.GenerativePrior`, with latent
        ``dynamics`` (or pass ``dynamics=``).
      obs_by_time: one observation table per window time (None or empty for a time
        without observations), or a mapping ``time -> table``; see :func:`prepare_window`.
      times: the window's times, one model step apart (:func:`window_times`); recorded in
        the results.
      seed: the only source of randomness.
      sampler: as for :func:`bayesda.assimilate` (default :data:`WINDOW`: 4 x (500 + 500)
        draws at a target acceptance of :data:`WINDOW_TARGET_ACCEPT`).
      options: the model options; a window takes the stated-error model with the normal
        likelihood and known errors (the default here: ``ModelOptions(errors="stated")``;
        the learned errors of :mod:`bayesda.inference.errors` are a single-time model).
      dynamics: the latent dynamics (default ``prior.dynamics``).
      want: indices of the times whose fields and results to build (default: all).
      progress_bar: show NUTS progress.

    Returns:
      One :class:`~bayesda.inference.result.Assimilation` per wanted time, in window order.
      Each has that time's latent and field samples, an InferenceData whose sampler
      statistics are the whole window's, and ``settings["window"]`` (the window's times,
      its observations per time and ``rho``). Timings other than ``fields`` are the
      window's, divided evenly over the wanted times.

    Raises:
      ValueError: no dynamics, a latent dimension that does not match them, options a
        window does not support, or no observation in the window.
    """
    s = sampler or WINDOW
    opts = options or STATED
    if opts.errors != "stated" or opts.likelihood != "normal" or opts.infer_sigma:
        raise ValueError(
            "a window takes the stated-error model with the normal likelihood and known "
            f"observation errors (ModelOptions(errors='stated')), got {opts}"
        )
    dyn = _dynamics_of(prior, dynamics)
    t_start = _time.perf_counter()
    obs = prepare_window(prior, obs_by_time, times, repr_corr=dyn.repr_corr)
    T, d = obs.n_times, prior.latent_dim
    want = list(range(T)) if want is None else [int(k) for k in want]
    if not want or min(want) < 0 or max(want) >= T:
        raise ValueError(f"want={want} must name times of the window (0..{T - 1})")
    fns = _window_fns(prior, T)
    mats = tuple(
        jnp.asarray(a, jnp.float32) for a in (dyn.transition, dyn.noise, dyn.initial_factor())
    )
    args = (*mats, *obs.arrays())
    key_init, key_mcmc, _ = jax.random.split(jax.random.PRNGKey(seed), 3)
    t_prep = _time.perf_counter() - t_start
    flat0 = jnp.zeros(T * d, jnp.float32)

    t0 = _time.perf_counter()
    need_map = s.method == "laplace" or s.init == "map" or s.mass != "diag"
    x_map = hess = None
    if need_map:
        x_map, hess, _ = fns.find_map(flat0, args)
        x_map = np.asarray(x_map)
        if not np.all(np.isfinite(x_map)):
            raise FloatingPointError("window MAP diverged (non-finite); try init='prior'")
        hess = spd(np.asarray(hess, np.float64))
    t_map = _time.perf_counter() - t0
    settings = dict(
        s.to_dict(),
        likelihood=opts.likelihood,
        infer_sigma=False,
        df=opts.df,
        n_pad=int(obs.mask.size),
        window={
            "n_times": T,
            "times": None if obs.times is None else [str(t)[:19] for t in obs.times],
            "n_obs": obs.n_by_time(),
            "repr_corr": obs.repr_corr,
            "step_hours": dyn.step_hours,
        },
    )
    nc = s.num_chains
    if s.method == "laplace":
        draws = laplace_draws(key_mcmc, x_map, hess, (nc * s.num_samples,))
        flat = np.asarray(draws).reshape(nc, s.num_samples, -1)
        stats: dict = {}
        timing = {"warmup": 0.0, "sampling": 0.0}
        grads = {"map": ADAM_STEPS + GN_STEPS * 7, "warmup": 0, "sampling": 0}
    else:
        if s.init == "map":
            x0 = np.asarray(laplace_draws(key_init, x_map, hess, (nc,)), np.float32)
        elif s.init == "prior":
            x0 = np.asarray(jax.random.normal(key_init, (nc, T * d)), np.float32)
        else:
            x0 = np.zeros((nc, T * d), np.float32)
        if s.mass == "diag":
            inv_mass = np.ones((nc, T * d), np.float32)
        else:
            assert hess is not None  # the Laplace mass needs the MAP's Hessian
            inv_mass = np.repeat(np.linalg.inv(hess)[None].astype(np.float32), nc, 0)
        batched = jax.tree.map(lambda a: np.repeat(np.asarray(a)[None], nc, 0), args)
        out = run_nuts(
            fns.potential,
            batched,
            np.asarray(jax.random.split(key_mcmc, nc)),
            x0,
            inv_mass,
            s,
            progress_bar=progress_bar,
            desc=f"NUTS window of {T} times x {nc} chains",
            step_size_groups=np.zeros(nc, np.int64),
        )
        flat = out.x
        steps = out.num_steps.astype(np.int64)
        stats = {
            "diverging": out.diverging.astype(bool),
            "n_steps": steps,
            "tree_depth": np.floor(np.log2(np.maximum(steps, 1))).astype(np.int64) + 1,
            "acceptance_rate": out.accept_prob,
            "energy": out.energy,
            "lp": -out.potential_energy,
            "step_size": out.step_size,
        }
        timing = {k: out.timings[k] for k in ("warmup", "sampling", "cache_hit")}
        grads = {
            "map": ADAM_STEPS + GN_STEPS * 7,
            "warmup": int(out.warmup_steps.sum()),
            "sampling": int(steps.sum()),
        }
    nd = flat.shape[1]
    z = np.asarray(fns.path(jnp.asarray(flat.reshape(nc * nd, -1)), *mats))  # [s, T, d]
    z = z.reshape(nc, nd, T, d).astype(np.float32)

    t0 = _time.perf_counter()
    decoded = {
        k: CACHE.decode_all(prior, z[:, :, k].reshape(-1, d)).reshape(nc, nd, *prior.grid.shape)
        for k in range(T)
    }
    n = obs.n
    mu = np.empty((nc * nd, n))
    for k in range(T):
        sel = obs.tindex[:n] == k
        if sel.any():
            flat_dec = decoded[k].reshape(nc * nd, -1).astype(np.float64)
            st = obs.stencil
            mu[:, sel] = (flat_dec[:, st.idx[sel]] * st.weight[sel]).sum(-1)
    rng = np.random.default_rng([seed, 20260, 28])
    r = condition_window_error(rng, obs.y[:n] - mu, obs, prior.repr_error, want)
    t_fields = _time.perf_counter() - t0
    wall = _time.perf_counter() - t_start
    results = []
    for k in want:
        field = decoded[k] + r[k].reshape(decoded[k].shape)
        o = obs.per_time[k]
        sel = obs.tindex[:n] == k
        idata = _time_idata(
            {"z": z[:, :, k]}, stats, o, mu[:, sel].reshape(nc, nd, -1), settings, rng
        )
        results.append(
            Assimilation(
                z=z[:, :, k],
                decoded=decoded[k],
                field=field,
                sigma_scale=np.ones((nc, nd), np.float32),
                idata=idata,
                timings={
                    "prepare": t_prep / len(want),
                    "map": t_map / len(want),
                    **{
                        k2: (v / len(want) if isinstance(v, float) else v)
                        for k2, v in timing.items()
                    },
                    "fields": t_fields / len(want),
                    "wall": wall / len(want),
                },
                grad_evals=grads,
                obs=o if o is not None else _empty_obs(prior),
                time=None if obs.times is None else obs.times[k],
                settings={**settings, "seed": seed, "window_index": k},
                prior=prior,
            )
        )
    return results
