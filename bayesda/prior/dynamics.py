"""Linear latent dynamics: how the latent state of a prior moves from one time to the next.

A window of analysis times shares information through a first-order autoregression of the
latent state and of the representation error, both learned from consecutive training fields
(6-hourly on NCEP)::

    z_1     ~ N(0, P)                                   P = A P A^T + Q  (stationary)
    z_{t+1} = A z_t + B e_t,        e_t ~ N(0, I_d),    Q = B B^T
    r_{t+1} = rho r_t + sqrt(1 - rho^2) eta_t,          eta_t ~ N(0, C)

``A`` is the least-squares (optionally ridge) regression of the encoded latent at ``t + 1``
on the one at ``t`` over every pair of consecutive training fields; ``Q`` is the covariance
of its residuals and ``P`` the stationary covariance the pair implies (the discrete Lyapunov
equation), so that every time of a window has the same marginal as every other. ``rho`` is
the lag-one correlation of the decoder's residual fields ``x - g(encode_mean(x))`` over one
step: the part of the field the decoder cannot represent is correlated in time too, and a
window that treated it as independent between times would count a station's repeated
reports as independent evidence. ``r`` keeps its spatial covariance ``C``
(:mod:`bayesda.prior.representation`) at every time; the joint covariance over a window is
the separable ``rho^|j - k| C``.

Calibration. The encoder was trained on some of the training fields; fields it has not seen
move between times less predictably than its training fields do, and their residuals are
larger and more persistent (NCEP validation blocks: ``rho`` 0.70 against 0.54; latent
forecast errors 1.2-1.6 times the variance the fitted model predicts at 6-24 h, against 1.0
on the fields ``A`` was fitted to). Like the representation error, which is estimated on
validation fields, the dynamics are calibrated on fields held back from the fit:
:func:`calibrate` chooses a damping ``lambda`` and a scale ``s``,

    A' = lambda A,    P' = s P,    Q' = P' - A' P' A'^T,

by the log-likelihood of their forecasts 1 .. k steps ahead, and :func:`fit_dynamics` takes
``rho`` from their consecutive pairs (``calibrate=``). Damping keeps the marginal (up to
``s``) and shortens the memory; it is the one-parameter answer to a latent that is not
exactly first-order Markov.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import scipy.linalg

__all__ = [
    "DYNAMICS_FILE",
    "LatentDynamics",
    "calibrate",
    "check_stable",
    "consecutive_pairs",
    "damped",
    "fit_dynamics",
    "fit_transition",
    "forecast_loglik",
    "load_dynamics",
    "replace_section",
    "representation_correlation",
    "save_dynamics",
    "stationary_covariance",
]

DYNAMICS_FILE = "dynamics.npz"


class LatentDynamics(NamedTuple):
    """A linear-Gaussian transition of the latent state and of the representation error.

    Attributes:
      transition: ``[d, d]`` ``A``.
      noise: ``[d, d]`` lower-triangular ``B`` with ``B B^T = Q``, the one-step innovation
        covariance.
      stationary: ``[d, d]`` ``P``, the stationary covariance (``P = A P A^T + Q``).
      repr_corr: ``rho`` in [0, 1), the lag-one (one step) correlation of the
        representation error.
      step_hours: the time step, hours.
    """

    transition: np.ndarray
    noise: np.ndarray
    stationary: np.ndarray
    repr_corr: float
    step_hours: float

    @property
    def latent_dim(self) -> int:
        return int(self.transition.shape[0])

    @property
    def step(self) -> np.timedelta64:
        """The time step as a ``numpy.timedelta64`` (seconds)."""
        return np.timedelta64(int(round(self.step_hours * 3600)), "s")

    @property
    def spectral_radius(self) -> float:
        return float(np.max(np.abs(np.linalg.eigvals(self.transition))))

    def initial_factor(self) -> np.ndarray:
        """``[d, d]`` lower Cholesky factor of ``P`` (``z_1 = L e_1``)."""
        return np.linalg.cholesky(_sym(self.stationary))

    def forecast(self, z: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean ``A^k z`` ``[..., d]`` and covariance ``P - A^k P A^kT`` ``[d, d]`` after
        ``k`` steps from a known latent ``z``."""
        Ak = np.linalg.matrix_power(self.transition.astype(np.float64), int(steps))
        mean = np.asarray(z, np.float64) @ Ak.T
        return mean, _sym(self.stationary - Ak @ self.stationary @ Ak.T)


def _sym(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64)
    return 0.5 * (a + a.T)


def consecutive_pairs(times, step_hours: float, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(i, j)`` with ``times[j] - times[i]`` exactly one step, both in ``mask``.

    Args:
      times: ``[n]`` datetime64, strictly increasing.
      step_hours: the step, hours (> 0).
      mask: optional ``[n]`` bool; only times where it is True take part (e.g. the training
        split: a pair never straddles a held-out block).

    Returns:
      ``(i, j)``, int arrays of equal length.
    """
    t = np.asarray(times).astype("datetime64[s]")
    if t.ndim != 1:
        raise ValueError(f"times must be 1-D, got shape {t.shape}")
    if not step_hours > 0:
        raise ValueError(f"{step_hours=} must be > 0")
    if np.any(np.diff(t) <= np.timedelta64(0, "s")):
        raise ValueError("times must be strictly increasing")
    keep = np.ones(t.size, bool) if mask is None else np.asarray(mask, bool)
    if keep.shape != t.shape:
        raise ValueError(f"mask has shape {keep.shape}, times {t.shape}")
    step = np.timedelta64(int(round(step_hours * 3600)), "s")
    j = np.searchsorted(t, t + step)
    ok = (j < t.size) & keep
    ok[ok] &= (t[j[ok]] == t[ok] + step) & keep[j[ok]]
    i = np.flatnonzero(ok)
    return i, j[i]


def fit_transition(
    z_now: np.ndarray, z_next: np.ndarray, *, ridge: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares (ridge) fit of ``z_next = A z_now + noise``.

    ``A^T = (X^T X + ridge n I)^{-1} X^T Y`` with ``X = z_now``, ``Y = z_next`` (``n`` pairs),
    no intercept (the latent has mean zero); ``Q`` is the residuals' second moment.

    Args:
      z_now, z_next: ``[n, d]`` latents at consecutive times.
      ridge: penalty per pair (>= 0); shrinks ``A`` toward 0 (and toward stability).

    Returns:
      ``(A [d, d], Q [d, d])`` in float64.
    """
    x = np.asarray(z_now, np.float64)
    y = np.asarray(z_next, np.float64)
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"z_now {x.shape} and z_next {y.shape} must be equal [n, d] arrays")
    n, d = x.shape
    if n <= d:
        raise ValueError(f"need more pairs than latent dimensions, got {n} pairs for d={d}")
    if ridge < 0:
        raise ValueError(f"{ridge=} must be >= 0")
    gram = x.T @ x + ridge * n * np.eye(d)
    A = np.linalg.solve(gram, x.T @ y).T
    res = y - x @ A.T
    return A, _sym(res.T @ res / n)


def check_stable(A: np.ndarray, *, margin: float = 1e-3) -> float:
    """The spectral radius of ``A``; raises when it is not below ``1 - margin``.

    Raises:
      ValueError: an unstable (or marginally stable) transition: no stationary covariance.
    """
    radius = float(np.max(np.abs(np.linalg.eigvals(np.asarray(A, np.float64)))))
    if not radius < 1.0 - margin:
        raise ValueError(
            f"the latent transition is not stable: spectral radius {radius:.4f} >= "
            f"{1 - margin}; fit it with a ridge penalty (ridge > 0) or on more pairs"
        )
    return radius


def stationary_covariance(A: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """``P`` with ``P = A P A^T + Q`` (:func:`scipy.linalg.solve_discrete_lyapunov`)."""
    check_stable(A)
    return _sym(scipy.linalg.solve_discrete_lyapunov(np.asarray(A, np.float64), Q))


def representation_correlation(
    residuals: np.ndarray, pairs: tuple[np.ndarray, np.ndarray]
) -> float:
    """Lag-one correlation of residual fields over the given pairs of times.

    ``rho = sum_pairs <r_i, r_j> / sqrt(sum |r_i|^2 sum |r_j|^2)``, all pixels pooled
    (the separable model has one ``rho`` for every pixel); clipped to [0, 0.99].

    Args:
      residuals: ``[n, ...]`` residual fields ``x - g(encode_mean(x))``, K.
      pairs: ``(i, j)`` from :func:`consecutive_pairs`.
    """
    i, j = pairs
    if len(i) == 0:
        raise ValueError("no pair of consecutive times to estimate the correlation from")
    r = np.asarray(residuals, np.float64).reshape(len(residuals), -1)
    a, b = r[i], r[j]
    rho = float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)))
    return float(np.clip(rho, 0.0, 0.99))


def fit_dynamics(
    latents: np.ndarray,
    times,
    *,
    step_hours: float,
    mask=None,
    residuals: np.ndarray | None = None,
    ridge: float = 0.0,
    calibrate=None,
    damping: float = 1.0,
    scale: float = 1.0,
) -> LatentDynamics:
    """Fit :class:`LatentDynamics` to encoded fields at (some) consecutive times.

    Args:
      latents: ``[n, d]`` encoder means of the fields.
      times: ``[n]`` their times, strictly increasing.
      step_hours: the model time step, hours.
      mask: ``[n]`` bool, the times to learn from (the training split); pairs use only these.
      residuals: ``[n, nlat, nlon]`` decoder residuals ``x - g(z)`` of the same fields, for
        ``rho`` (None: ``rho = 0``, a representation error independent in time).
      ridge: ridge penalty of :func:`fit_transition`.
      calibrate: ``[n]`` bool, fields the encoder was not trained on (the validation blocks
        of the training split): ``rho`` comes from their consecutive pairs (None: from
        ``mask``).
      damping, scale: ``lambda`` and ``s`` of :func:`damped` (module docstring; chosen by
        :func:`calibrate`).

    Returns:
      The fitted dynamics.

    Raises:
      ValueError: too few pairs, or an unstable transition.
    """
    pairs = consecutive_pairs(times, step_hours, mask)
    z = np.asarray(latents, np.float64)
    A, Q = fit_transition(z[pairs[0]], z[pairs[1]], ridge=ridge)
    P = stationary_covariance(A, Q)
    rho_pairs = pairs
    if calibrate is not None:
        held = np.asarray(calibrate, bool)
        if held.shape != (z.shape[0],):
            raise ValueError(f"calibrate must be an [n] mask, got shape {held.shape}")
        rho_pairs = consecutive_pairs(times, step_hours, held)
    rho = 0.0 if residuals is None else representation_correlation(residuals, rho_pairs)
    return damped(_dynamics(A, P, rho, step_hours), damping, scale)


def _dynamics(A, P, rho, step_hours) -> LatentDynamics:
    A = np.asarray(A, np.float64)
    P = _sym(P)
    Q = _sym(P - A @ P @ A.T)
    return LatentDynamics(
        transition=A.astype(np.float32),
        noise=np.linalg.cholesky(Q).astype(np.float32),
        stationary=P.astype(np.float32),
        repr_corr=float(rho),
        step_hours=float(step_hours),
    )


def damped(dynamics: LatentDynamics, damping: float, scale: float = 1.0) -> LatentDynamics:
    """``A' = damping A``, ``P' = scale P``, ``Q' = P' - A' P' A'^T`` (module docstring).

    Raises:
      ValueError: ``damping`` outside (0, 1] or ``scale`` <= 0.
    """
    if not (0.0 < damping <= 1.0 and scale > 0.0):
        raise ValueError(f"need 0 < {damping=} <= 1 and {scale=} > 0")
    A = damping * np.asarray(dynamics.transition, np.float64)
    P = scale * np.asarray(dynamics.stationary, np.float64)
    return _dynamics(A, P, dynamics.repr_corr, dynamics.step_hours)


def forecast_loglik(
    dynamics: LatentDynamics, latents: np.ndarray, times, mask, leads: Sequence[int]
) -> float:
    """Mean log density (nats per pair, summed over ``leads``) of ``z_{t+k} | z_t`` under
    the dynamics, over the pairs ``k`` steps apart within ``mask``."""
    z = np.asarray(latents, np.float64)
    total = 0.0
    for k in leads:
        i, j = consecutive_pairs(times, k * dynamics.step_hours, mask)
        if i.size == 0:
            raise ValueError(f"no pair {k * dynamics.step_hours:g} h apart to score")
        mean, cov = dynamics.forecast(z[i], k)
        L = np.linalg.cholesky(cov)
        w = scipy.linalg.solve_triangular(L, (z[j] - mean).T, lower=True)
        total += float(
            -0.5 * np.mean(np.sum(w**2, axis=0))
            - np.sum(np.log(np.diag(L)))
            - 0.5 * z.shape[1] * np.log(2 * np.pi)
        )
    return total


def calibrate(
    dynamics: LatentDynamics,
    latents: np.ndarray,
    times,
    mask,
    *,
    leads: Sequence[int] = (1, 2, 3, 4),
    dampings: Sequence[float] = (1.0, 0.98, 0.96, 0.94, 0.92, 0.9),
    scales: Sequence[float] = (1.0, 1.1, 1.2, 1.3, 1.4),
) -> tuple[float, float, list[dict]]:
    """Choose ``(damping, scale)`` by :func:`forecast_loglik` on held-out fields.

    Args:
      dynamics: fitted on other fields than ``mask`` selects.
      latents, times: encoded fields and their times.
      mask: the held-out fields (e.g. the validation blocks).
      leads: forecast leads scored (up to half a window).
      dampings, scales: the grid.

    Returns:
      ``(damping, scale, table)``: the best pair and every pair's score.
    """
    table = []
    for lam in dampings:
        for s in scales:
            cand = damped(dynamics, lam, s)
            table.append(
                {
                    "damping": float(lam),
                    "scale": float(s),
                    "loglik": forecast_loglik(cand, latents, times, mask, leads),
                }
            )
    best = max(table, key=lambda r: r["loglik"])
    return best["damping"], best["scale"], table


def save_dynamics(path: str | os.PathLike, dynamics: LatentDynamics) -> None:
    """Write ``dynamics`` to an ``.npz`` file (plain arrays)."""
    np.savez(
        path,
        transition=np.asarray(dynamics.transition, np.float32),
        noise=np.asarray(dynamics.noise, np.float32),
        stationary=np.asarray(dynamics.stationary, np.float32),
        repr_corr=np.array(dynamics.repr_corr, np.float64),
        step_hours=np.array(dynamics.step_hours, np.float64),
    )


def load_dynamics(path: str | os.PathLike, latent_dim: int | None = None) -> LatentDynamics:
    """Read :func:`save_dynamics`' file (``allow_pickle=False``) and check it.

    Args:
      path: the ``.npz`` file.
      latent_dim: the prior's latent dimension, to check the shapes against.

    Raises:
      ValueError: missing arrays, wrong shapes, non-finite values, ``rho`` outside [0, 1) or
        an unstable transition.
    """
    with np.load(path, allow_pickle=False) as f:
        try:
            arrays = {k: f[k] for k in ("transition", "noise", "stationary")}
            rho, step = float(f["repr_corr"]), float(f["step_hours"])
        except KeyError as err:
            raise ValueError(f"{path}: missing array {err}") from err
    d = arrays["transition"].shape[0]
    want = (d, d) if latent_dim is None else (latent_dim, latent_dim)
    for name, a in arrays.items():
        if a.shape != want or not np.all(np.isfinite(a)):
            raise ValueError(f"{path}: {name} must be finite with shape {want}, got {a.shape}")
    if not (0.0 <= rho < 1.0 and step > 0):
        raise ValueError(f"{path}: repr_corr={rho} must be in [0, 1), step_hours={step} > 0")
    check_stable(arrays["transition"])
    return LatentDynamics(**arrays, repr_corr=rho, step_hours=step)


def replace_section(markdown: str, title: str, body: str) -> str:
    """``markdown`` with the level-2 section ``## title`` replaced by ``body`` (or appended).

    The section runs to the next line starting with ``## `` (or the end); the other sections
    are kept as they are.
    """
    head = f"## {title}"
    lines = markdown.rstrip("\n").split("\n")
    start = next((k for k, line in enumerate(lines) if line.strip() == head), None)
    section = [head, "", *body.strip("\n").split("\n")]
    if start is None:
        return "\n".join([*lines, "", *section]) + "\n"
    end = next((k for k in range(start + 1, len(lines)) if lines[k].startswith("## ")), len(lines))
    tail = lines[end:]
    return "\n".join([*lines[:start], *section, *([""] + tail if tail else [])]) + "\n"
